"""Activations as float32 scalar functions selected by an integer id (``ir.ACTIVATION_IDS``).

Element-wise activations are one scalar function with a branch on the id: the kernels call it
per element, so one compiled kernel serves every activation combination. softmax and
log_softmax act on a whole row and live in :func:`activate_row`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..ir import ACTIVATION_IDS
from ._config import INLINE, JIT
from ._linalg import copy_row

# Integer ids as module constants: Numba freezes globals at compile time.
LINEAR = ACTIVATION_IDS["linear"]
TANH = ACTIVATION_IDS["tanh"]
SIGMOID = ACTIVATION_IDS["sigmoid"]
HARD_SIGMOID = ACTIVATION_IDS["hard_sigmoid"]
HARD_SIGMOID_KERAS2 = ACTIVATION_IDS["hard_sigmoid_keras2"]
RELU = ACTIVATION_IDS["relu"]
RELU6 = ACTIVATION_IDS["relu6"]
LEAKY_RELU = ACTIVATION_IDS["leaky_relu"]
ELU = ACTIVATION_IDS["elu"]
SELU = ACTIVATION_IDS["selu"]
CELU = ACTIVATION_IDS["celu"]
SOFTPLUS = ACTIVATION_IDS["softplus"]
SOFTSIGN = ACTIVATION_IDS["softsign"]
EXPONENTIAL = ACTIVATION_IDS["exponential"]
SILU = ACTIVATION_IDS["silu"]
HARD_SILU = ACTIVATION_IDS["hard_silu"]
GELU = ACTIVATION_IDS["gelu"]
MISH = ACTIVATION_IDS["mish"]
LOG_SIGMOID = ACTIVATION_IDS["log_sigmoid"]
TANH_SHRINK = ACTIVATION_IDS["tanh_shrink"]
HARD_TANH = ACTIVATION_IDS["hard_tanh"]
SOFTMAX = ACTIVATION_IDS["softmax"]
LOG_SOFTMAX = ACTIVATION_IDS["log_softmax"]

_SELU_ALPHA = np.float32(1.6732632423543772848170429916717)
_SELU_SCALE = np.float32(1.0507009873554804934193349852946)
_SQRT_HALF = np.float32(0.7071067811865476)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


# Rational approximation of tanh on [-c, c] (the form Eigen uses for float tanh): x P(x^2) / Q(x^2),
# with |error| < 4e-7 over all float32 inputs (tests/test_kernels.py checks it against np.tanh).
# Branch-free apart from the clamp, so the gate loops vectorise (libm's tanhf is a scalar call, and
# there is no vector math library on the devices edgernn targets).
TANH_CLAMP = np.float32(7.90531110763549805)
TANH_P = tuple(np.float32(v) for v in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
                                         5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
                                         -2.76076847742355e-16))
TANH_Q = tuple(np.float32(v) for v in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
                                         1.19825839466702e-06))
_TANH_CLAMP = TANH_CLAMP
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = TANH_P
_Q0, _Q1, _Q2, _Q3 = TANH_Q
_HALF = np.float32(0.5)


@njit(**INLINE)
def fast_tanh(v):
    """tanh(v) in float32 to within 4e-7; NaN stays NaN."""
    if v > _TANH_CLAMP:
        v = _TANH_CLAMP
    elif v < -_TANH_CLAMP:
        v = -_TANH_CLAMP
    v2 = v * v
    p = ((((((_P6 * v2 + _P5) * v2 + _P4) * v2 + _P3) * v2 + _P2) * v2 + _P1) * v2 + _P0) * v
    q = ((_Q3 * v2 + _Q2) * v2 + _Q1) * v2 + _Q0
    return p / q


@njit(**INLINE)
def half_tanh_sigmoid(t):
    """σ(v) from ``t = tanh(v / 2)``: (1 + t) / 2, the form :func:`fast_sigmoid` computes."""
    return _HALF + _HALF * t


@njit(**INLINE)
def fast_sigmoid(v):
    """σ(v) = (1 + tanh(v / 2)) / 2, through :func:`fast_tanh` (error below 2e-7)."""
    return half_tanh_sigmoid(fast_tanh(_HALF * v))


@njit(**INLINE)
def tanh_in_place(values):
    """``values = tanh(values)`` over a whole C-contiguous float32 array in one flat loop.

    One activation per element and nothing else in the loop, so its iterations are independent
    and LLVM interleaves several vectors of them: a throughput loop. The gate loops, with two
    activations in a row per unit, wait on the latency of each instead (see
    :func:`edgernn.kernels.lstm.lstm_batch_update`)."""
    flat = values.reshape(values.size)
    for i in range(flat.shape[0]):
        flat[i] = fast_tanh(flat[i])


@njit(**INLINE)
def _softplus(v):
    # log(1 + e^v) without overflow: max(v, 0) + log1p(e^-|v|)
    return max(v, _ZERO) + np.float32(math.log1p(math.exp(-abs(v))))


@njit(**JIT)
def activate(kind, v):
    """Element-wise activation ``kind`` of the float32 scalar ``v``."""
    if kind == LINEAR:
        return v
    if kind == TANH:
        return fast_tanh(v)
    if kind == SIGMOID:
        return fast_sigmoid(v)
    if kind == HARD_SIGMOID:  # Keras 3: relu6(v + 3) / 6
        return min(max(v + np.float32(3.0), _ZERO), np.float32(6.0)) / np.float32(6.0)
    if kind == HARD_SIGMOID_KERAS2:  # Keras 2: clip(0.2 v + 0.5, 0, 1)
        return min(max(np.float32(0.2) * v + np.float32(0.5), _ZERO), _ONE)
    if kind == RELU:
        return max(v, _ZERO)
    if kind == RELU6:
        return min(max(v, _ZERO), np.float32(6.0))
    if kind == LEAKY_RELU:
        return v if v >= _ZERO else np.float32(0.2) * v
    if kind == ELU:
        return v if v > _ZERO else np.float32(math.expm1(v))
    if kind == SELU:
        return _SELU_SCALE * (v if v > _ZERO else _SELU_ALPHA * np.float32(math.expm1(v)))
    if kind == CELU:
        return max(v, _ZERO) + min(_ZERO, np.float32(math.expm1(min(v, _ZERO))))
    if kind == SOFTPLUS:
        return _softplus(v)
    if kind == SOFTSIGN:
        return v / (_ONE + abs(v))
    if kind == EXPONENTIAL:
        return np.float32(math.exp(v))
    if kind == SILU:
        return v / (_ONE + np.float32(math.exp(-v)))
    if kind == HARD_SILU:
        return v * min(max(v + np.float32(3.0), _ZERO), np.float32(6.0)) / np.float32(6.0)
    if kind == GELU:
        return np.float32(0.5) * v * (_ONE + np.float32(math.erf(v * _SQRT_HALF)))
    if kind == MISH:
        return v * np.float32(math.tanh(_softplus(v)))
    if kind == LOG_SIGMOID:
        return -_softplus(-v)
    if kind == TANH_SHRINK:
        return v - np.float32(math.tanh(v))
    if kind == HARD_TANH:
        return min(max(v, -_ONE), _ONE)
    return np.float32(np.nan)  # unreachable: ir validation admits known ids only


@njit(**INLINE)
def activate_row(kind, row):
    """Apply activation ``kind`` in place to a 1-D float32 ``row`` (softmax over the row)."""
    n = row.shape[0]
    if kind == SOFTMAX or kind == LOG_SOFTMAX:
        top = row[0]
        for j in range(1, n):
            top = max(top, row[j])
        # Shift the row in place first (row - top is exact for the largest entries). Fix: the
        # one-expression form ``row[j] - top - log_total`` was reassociated under fastmath's
        # ``reassoc`` into ``row[j] - (top + log_total)``, which loses log_total to the rounding of
        # a large ``top`` (log_softmax of logits near 1e4 was off by 4e-4; of 1e30, by log(n)).
        total = _ZERO
        for j in range(n):
            row[j] = row[j] - top
            total += np.float32(math.exp(row[j]))
        if kind == SOFTMAX:
            for j in range(n):
                row[j] = np.float32(math.exp(row[j])) / total
        else:
            log_total = np.float32(math.log(total))
            for j in range(n):
                row[j] = row[j] - log_total
    elif kind == RELU:  # the common kinds get a loop of their own, which LLVM vectorises;
        for j in range(n):  # through activate(), each element was an out-of-line call
            row[j] = max(row[j], _ZERO)
    elif kind == TANH:
        for j in range(n):
            row[j] = fast_tanh(row[j])
    elif kind == SIGMOID:
        for j in range(n):
            row[j] = fast_sigmoid(row[j])
    elif kind != LINEAR:
        for j in range(n):
            row[j] = activate(kind, row[j])


@njit(**INLINE)
def clipped(v, limit):
    """``v`` limited to [-limit, limit] (ONNX's cell clip; limit is inf when a layer has none).
    Comparisons, not min/max, so a NaN stays NaN."""
    if v > limit:
        return limit
    if v < -limit:
        return -limit
    return v


@njit(**JIT)
def activation_forward(x, kind, out):
    """``out = activation(x)`` row by row; ``x``, ``out``: (rows, features) float32."""
    for s in range(x.shape[0]):
        copy_row(out[s], x[s])
        activate_row(kind, out[s])
