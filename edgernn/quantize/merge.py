"""Add, Subtract, Average, Multiply, Maximum, Minimum and Concatenate (over features) of two tensors,
twin of ``firmware_export/ernn_merge.c``.

int8, inputs ``a`` (scale s_1, zero point z_1) and ``b`` (s_2, z_2), output (s_o, z_o) from calibration.

Add, Subtract, Average (TFLite's int8 ADD: both inputs brought to one scale with 20 bits of headroom)::

    t_i = requant((q_i - z_i) 2^20, m[i], n[i])       m[i] 2^-n[i] = s_i / (2 max(s_1, s_2))
    y   = sat8(z_o + requant(t_1 +- t_2, mo, no))     mo 2^-no = 2 max(s_1, s_2) / (2^20 s_o)  (Average: / 2)

(|q - z| <= 255, so (q - z) 2^20 < 2^28 and t_1 +- t_2 < 2^29: no int32 overflow.)

Multiply (TFLite's int8 MUL)::

    y = sat8(z_o + requant((q_1 - z_1)(q_2 - z_2), mo, no))     mo 2^-no = s_1 s_2 / s_o

(|q - z| <= 255: the product is below 2^16.)

Concatenate, Maximum, Minimum: each input requantized to the output's scale,
``r_i = sat8(z_o + requant(q_i - z_i, m[i], n[i]))`` with m[i] 2^-n[i] = s_i / s_o (an input already at
(s_o, z_o) has (2^30, 30): a copy); Concatenate writes r_1 then r_2, Maximum max(r_1, r_2), Minimum
min(r_1, r_2) (the requantization is monotonic, so this is the maximum of the inputs, requantized).

float32 and int8-weights: ``a + b``, ``a - b``, ``(a + b) / 2``, ``a * b``, ``max(a, b)``, ``min(a, b)``,
``[a, b]`` in float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fixedpoint import JIT, requant, sat8

HEADROOM = 20  # bits the inputs of an int8 Add are shifted up before their rescaling
MERGE_IDS = {"add": 0, "subtract": 1, "average": 2, "concat": 3, "multiply": 4, "maximum": 5, "minimum": 6}
RESCALED = (3, 5, 6)  # the merges that bring each input to the output's scale (Concatenate, Maximum, Minimum)


@njit(**JIT)
def _rescaled(q, zp, m, n, zp_y):
    """``q`` (zero point ``zp``) at the output's scale: sat8(zp_y + requant(q - zp, m, n))."""
    return sat8(zp_y + requant(np.int64(q) - zp, m, n))


@njit(**JIT)
def merge_q(a, b, y, merge, m, n, zp_a, zp_b, mo, no, zp_y):
    """int8 ``a`` (rows, F1), ``b`` (rows, F2) -> ``y`` (rows, O) as above (``merge``: a MERGE_IDS
    value, picked once, outside the loops, as the C does)."""
    width = a.shape[1]
    if merge == 3:  # Concatenate
        for r in range(a.shape[0]):
            for j in range(width):
                y[r, j] = _rescaled(a[r, j], zp_a, m[0], n[0], zp_y)
            for j in range(b.shape[1]):
                y[r, width + j] = _rescaled(b[r, j], zp_b, m[1], n[1], zp_y)
    elif merge == 4:  # Multiply
        for r in range(a.shape[0]):
            for j in range(width):
                y[r, j] = sat8(zp_y + requant((np.int64(a[r, j]) - zp_a) * (np.int64(b[r, j]) - zp_b), mo, no))
    elif merge == 5 or merge == 6:  # Maximum, Minimum
        larger = merge == 5
        for r in range(a.shape[0]):
            for j in range(width):
                r1 = _rescaled(a[r, j], zp_a, m[0], n[0], zp_y)
                r2 = _rescaled(b[r, j], zp_b, m[1], n[1], zp_y)
                y[r, j] = r1 if larger == (r1 > r2) else r2
    else:  # Add, Subtract, Average: the sign of the second term
        sign = -1 if merge == 1 else 1
        for r in range(a.shape[0]):
            for j in range(width):
                t1 = requant((np.int64(a[r, j]) - zp_a) << HEADROOM, m[0], n[0])
                t2 = requant((np.int64(b[r, j]) - zp_b) << HEADROOM, m[1], n[1])
                y[r, j] = sat8(zp_y + requant(t1 + sign * t2, mo, no))


@njit(**JIT)
def merge_f(a, b, y, merge):
    """float32 twin of :func:`merge_q`."""
    width = a.shape[1]
    if merge == 3:
        y[:, :width] = a
        y[:, width:] = b
    elif merge == 1:
        y[:] = a - b
    elif merge == 2:
        y[:] = (a + b) * np.float32(0.5)
    elif merge == 4:
        y[:] = a * b
    elif merge == 5:  # as the C writes it (which of 0.0 and -0.0 is kept)
        y[:] = np.where(a > b, a, b)
    elif merge == 6:
        y[:] = np.where(a < b, a, b)
    else:
        y[:] = a + b
