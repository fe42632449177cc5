"""Integer primitives of the int8 scheme, bit-exact twins of ``firmware_export/ernn_internal.h``.

Every function here has a C counterpart of the same name with the ``ernn_`` prefix, computing the
same integers. Definitions (``floor`` is the mathematical floor, so negative values round the same
way in C and here, whatever the C compiler does with ``>>`` on negative numbers):

* ``rshift_round(v, n)``  = floor((v + 2^(n-1)) / 2^n), n >= 1: division by 2^n, rounding half up.
* ``requant(x, M, n)``    = saturate_int32(floor((x * M + 2^(n-1)) / 2^n)), in 64-bit arithmetic:
  multiplication by the real number M * 2^-n with one rounding (TFLite's "single rounding" form of
  MultiplyByQuantizedMultiplier). M < 2^31, 1 <= n <= 62, |x| < 2^31, so x*M + 2^(n-1) < 2^63.
* ``lut(x, T)``: a function tabulated on Q3.12 inputs (int16, real x / 4096, range [-8, 8)) at
  257 points 1/16 apart, linearly interpolated: u = x + 32768, i = u >> 8, f = u & 255,
  y = T[i] + floor(((T[i+1] - T[i]) * f + 128) / 256). Output int16, usually Q0.15.

At the end, the row loops the C step functions write inline: ``dot_q`` / ``dot_f`` (one row of a
matrix product) and ``preact_q`` / ``preact_f`` (a recurrent layer's x W + h U pre-activation rows).
Also here, for the quantizer and the simulation alike: ``quantize_input`` / ``dequantize``, the
float <-> int8 conversions of the C helpers ``ernn_quantize_input`` / ``ernn_dequantize_output``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# No fastmath anywhere in the simulation: it must compute what the C computes, nothing else.
JIT = dict(nogil=True, cache=True, error_model="numpy")
INLINE = dict(JIT, inline="always")

INT8_MIN, INT8_MAX = -128, 127
INT16_MIN, INT16_MAX = -32768, 32767
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
LUT_SIZE = 257
Q12 = 4096.0   # Q3.12: gate pre-activations
Q15 = 32768.0  # Q0.15: gate values (sigmoid / tanh outputs)


@njit(**INLINE)
def sat8(v):
    return max(INT8_MIN, min(INT8_MAX, v))


@njit(**INLINE)
def sat16(v):
    return max(INT16_MIN, min(INT16_MAX, v))


@njit(**INLINE)
def sat32(v):
    return max(INT32_MIN, min(INT32_MAX, v))


@njit(**INLINE)
def rshift_round(v, n):
    """floor((v + 2^(n-1)) / 2^n) for int64 ``v``, n >= 1 (Numba's >> on int64 is a floor)."""
    return (np.int64(v) + (np.int64(1) << (n - 1))) >> n


@njit(**INLINE)
def requant(x, m, n):
    """saturate_int32(floor((x * m + 2^(n-1)) / 2^n)) in 64-bit arithmetic."""
    return sat32((np.int64(x) * np.int64(m) + (np.int64(1) << (n - 1))) >> n)


@njit(**INLINE)
def lut(x, table):
    """Table ``table`` (257 int16) at Q3.12 ``x`` (int16 range), linear interpolation."""
    u = np.int64(x) + 32768
    i = u >> 8
    f = u & 255
    lo = np.int64(table[i])
    return lo + (((np.int64(table[i + 1]) - lo) * f + 128) >> 8)


# -- offline (Python) helpers: multipliers, scales, tables --------------------------------------

def multiplier(real: float) -> tuple[int, int]:
    """``(M, n)`` with M * 2^-n ~= ``real`` (> 0), M in [2^30, 2^31) when 1 <= n <= 62 allow it.

    Below 2^-32 the multiplier loses precision (n is capped at 62); zero gives (0, 1)."""
    if not (real >= 0.0 and math.isfinite(real)):
        raise ValueError(f"multiplier must be finite and >= 0, got {real}")
    if real == 0.0:
        return 0, 1
    mantissa, exponent = math.frexp(real)  # real = mantissa * 2^exponent, mantissa in [0.5, 1)
    n = 31 - exponent
    if n < 1:
        raise ValueError(f"multiplier {real} too large (>= 2^30)")
    n = min(n, 62)
    m = int(round(real * 2.0 ** n))
    if m >= 1 << 31:  # rounding carried into the next power of two
        m //= 2
        n -= 1
    return m, n


def multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    pairs = [multiplier(float(r)) for r in np.asarray(reals, dtype=np.float64).reshape(-1)]
    return (np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32))


def table(function) -> np.ndarray:
    """The 257-entry int16 table of ``function`` (float64 -> float64, values in [-1, 1]) for :func:`lut`:
    T[k] = round(32768 * f((256 k - 32768) / 4096)), saturated to int16."""
    x = (np.arange(LUT_SIZE, dtype=np.float64) * 256.0 - 32768.0) / Q12
    return np.clip(np.round(function(x) * Q15), INT16_MIN, INT16_MAX).astype(np.int16)


def asymmetric(lo: float, hi: float) -> tuple[float, int]:
    """int8 ``(scale, zero_point)`` covering [lo, hi] extended to include 0 (TFLite's convention)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-8:
        return 1.0 / 128.0, 0
    scale = (hi - lo) / 255.0
    zero_point = int(np.clip(round(INT8_MIN - lo / scale), INT8_MIN, INT8_MAX))
    return scale, zero_point


def quantize_input(x, scale, zero_point, offset=None, scales=None) -> np.ndarray:
    """float -> int8 as ``ernn_quantize_input``: floor(x / s + 1/2) + zp in float32, saturated; NaN -> zp.
    With per-feature ``offset`` and ``scales`` (a Standardize folded in; non-empty), floor((x - offset[f])
    / scales[f] + 1/2) + zp instead."""
    x = np.asarray(x, dtype=np.float32)
    if scales is not None and np.size(scales):
        t = (x - offset) / scales + np.float32(0.5)
    else:
        t = x / np.float32(scale) + np.float32(0.5)
    t = np.where(np.isnan(t), np.float32(0.0), np.clip(t, np.float32(-1000.0), np.float32(1000.0)))
    return np.clip(np.floor(t).astype(np.int32) + zero_point, -128, 127).astype(np.int8)


def dequantize(q, scale, zero_point) -> np.ndarray:
    """int8 -> float as ``ernn_dequantize_output``: (float)(q - zp) * s."""
    return (np.asarray(q, np.int32) - zero_point).astype(np.float32) * np.float32(scale)


def symmetric_rows(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-row symmetric int8 quantization of ``weights`` (rows, in): ``(int8 (rows, in), scales (rows,))``.

    scale = max|row| / 127 (1 for an all-zero row), q = clip(round(w / scale), -127, 127)."""
    w = np.asarray(weights, dtype=np.float64)
    top = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
    scales = np.where(top > 0, top / 127.0, 1.0)
    q = np.clip(np.round(w / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales


@njit(**INLINE)
def dot_q(acc, v, row):
    """``acc + sum_k v[k] * row[k]`` in int64: one output row of an integer matrix product, the
    loop every integer op of the C runtime runs (exact in any order)."""
    for k in range(v.shape[0]):
        acc += np.int64(v[k]) * np.int64(row[k])
    return acc


@njit(**INLINE)
def dot_f(v, row):
    """``sum_k v[k] * float32(row[k])`` in float32, k in order from 0.0 -- the order the C sums in,
    so the float schemes match it bit for bit (no fastmath here)."""
    acc = np.float32(0.0)
    for k in range(v.shape[0]):
        acc = acc + v[k] * np.float32(row[k])
    return acc


@njit(**INLINE)
def preact_q(pre, rows, x, h, w, u, bx, bh, mx, nx, mh, nh):
    """Rows 0..rows-1 of a recurrent layer's int8 step: ``x`` (F,) and ``h`` (H,) int8 into ``pre``
    (int64), each row ``sat32(requant(bx[r] + x w[r], mx[r], nx[r]) + requant(bh[r] + h u[r], mh[r], nh[r]))``."""
    for r in range(rows):
        ax = dot_q(np.int64(bx[r]), x, w[r])
        ah = dot_q(np.int64(bh[r]), h, u[r])
        pre[r] = sat32(requant(ax, mx[r], nx[r]) + requant(ah, mh[r], nh[r]))


@njit(**INLINE)
def preact_f(pre, rows, x, h, w, u, sw, su, bx, bh):
    """Float twin of :func:`preact_q`: each row ``(x w[r] [* sw[r]] + bx[r]) + (h u[r] [* su[r]] + bh[r])``
    in float32, in that order (``sw``/``su`` empty: unscaled float32 weights)."""
    scaled = sw.shape[0] > 0
    for r in range(rows):
        ax = dot_f(x, w[r])
        ah = dot_f(h, u[r])
        if scaled:
            ax = ax * sw[r]
            ah = ah * su[r]
        pre[r] = (ax + bx[r]) + (ah + bh[r])
