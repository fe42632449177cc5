"""Add, Subtract, Average and Concatenate (over features) of two tensors, twin of ``firmware_export/ernn_merge.c``.

int8, inputs ``a`` (scale s_1, zero point z_1) and ``b`` (s_2, z_2), output (s_o, z_o) from calibration.

Add, Subtract, Average (TFLite's int8 ADD: both inputs brought to one scale with 20 bits of headroom)::

    t_i = requant((q_i - z_i) 2^20, m[i], n[i])       m[i] 2^-n[i] = s_i / (2 max(s_1, s_2))
    y   = sat8(z_o + requant(t_1 +- t_2, mo, no))     mo 2^-no = 2 max(s_1, s_2) / (2^20 s_o)  (Average: / 2)

(|q - z| <= 255, so (q - z) 2^20 < 2^28 and t_1 +- t_2 < 2^29: no int32 overflow.)

Concatenate: each input requantized to the output's scale, ``y = sat8(z_o + requant(q_i - z_i, m[i], n[i]))``
with m[i] 2^-n[i] = s_i / s_o (an input already at (s_o, z_o) has (2^30, 30): a copy).

float32 and int8-weights: ``a + b``, ``a - b``, ``(a + b) / 2``, ``[a, b]`` in float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fixedpoint import JIT, requant, sat8

HEADROOM = 20  # bits the inputs of an int8 Add are shifted up before their rescaling
MERGE_IDS = {"add": 0, "subtract": 1, "average": 2, "concat": 3}


@njit(**JIT)
def merge_q(a, b, y, merge, m, n, zp_a, zp_b, mo, no, zp_y):
    """int8 ``a`` (rows, F1), ``b`` (rows, F2) -> ``y`` (rows, O) as above (``merge``: a MERGE_IDS value)."""
    width = a.shape[1]
    for r in range(a.shape[0]):
        if merge == 3:
            for j in range(width):
                y[r, j] = sat8(zp_y + requant(np.int64(a[r, j]) - zp_a, m[0], n[0]))
            for j in range(b.shape[1]):
                y[r, width + j] = sat8(zp_y + requant(np.int64(b[r, j]) - zp_b, m[1], n[1]))
            continue
        for j in range(width):
            t1 = requant((np.int64(a[r, j]) - zp_a) << HEADROOM, m[0], n[0])
            t2 = requant((np.int64(b[r, j]) - zp_b) << HEADROOM, m[1], n[1])
            y[r, j] = sat8(zp_y + requant(t1 - t2 if merge == 1 else t1 + t2, mo, no))


@njit(**JIT)
def merge_f(a, b, y, merge):
    """float32 twin of :func:`merge_q`."""
    width = a.shape[1]
    for r in range(a.shape[0]):
        for j in range(width):
            if merge == 3:
                y[r, j] = a[r, j]
            elif merge == 1:
                y[r, j] = a[r, j] - b[r, j]
            elif merge == 2:
                y[r, j] = (a[r, j] + b[r, j]) * np.float32(0.5)
            else:
                y[r, j] = a[r, j] + b[r, j]
        if merge == 3:
            for j in range(b.shape[1]):
                y[r, width + j] = b[r, j]
