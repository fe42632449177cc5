"""Dense (and a standalone Activation: a Dense without weights), twin of ``firmware_export/ernn_dense.c``.

int8, per output j (``acc`` = ``bx[j] + sum_k x[k] w[j,k]``, or ``x[j] - zp_x`` without weights)::

    MODE_AFFINE  (linear, relu):  y = sat8(zp_y + requant(acc, m[j], n[j])); relu: max(y, zp_y)
    MODE_TABLE   (sigmoid, tanh, ...):  a = lut(sat16(requant(acc, m[j], n[j])))   (Q3.12 -> Q0.15)
                                        y = sat8(zp_y + requant(a, mo, no))
    MODE_SOFTMAX: logits l[j] = sat8(zp_l + requant(acc, m[j], n[j])) at the calibrated logit scale s_l;
                  e[j] = exp_table[max(l) - l[j]]  (round(2^20 exp(-d s_l)), d = 0..255)
                  y[j] = sat8(floor((256 e[j] + S / 2) / S) - 128),  S = sum e   (scale 1/256, zp -128)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .activations import f_activate_row
from .fixedpoint import INLINE, JIT, dot_f, dot_q, lut, requant, sat16, sat8

MODE_AFFINE, MODE_TABLE, MODE_SOFTMAX = 0, 1, 2


@njit(**INLINE)
def output_q(a, m, n, mode, relu, table, mo, no, zp_a, zp_y):
    """The int8 output of one row of a Dense or Conv1D from its int32 accumulator ``a``, as
    ``ernn_output_q``: MODE_TABLE through the table, else (affine, relu, softmax logits)
    ``sat8(zp_a + requant(a, m, n))``, relu clamped at ``zp_a``."""
    if mode == MODE_TABLE:
        v = lut(sat16(requant(a, m, n)), table)
        return sat8(zp_y + requant(v, mo, no))
    q = sat8(zp_a + requant(a, m, n))
    if relu and q < zp_a:
        q = zp_a
    return q


@njit(**JIT)
def dense_q(x, w, bx, m, n, has_weights, zp_x, mode, relu, table, mo, no, exp_table, zp_a, zp_y, y, acc):
    """``x`` (rows, F) int8 -> ``y`` (rows, O) int8; ``acc`` (O,) int64 scratch. ``zp_a``: zero point of
    the affine result (the output's, or the logits' for softmax); ``zp_y``: the output's."""
    rows, features = x.shape
    outputs = y.shape[1]
    for s in range(rows):
        for j in range(outputs):
            if has_weights:
                a = dot_q(np.int64(bx[j]), x[s], w[j])
            else:
                a = np.int64(x[s, j]) - zp_x
            acc[j] = output_q(a, m[j], n[j], mode, relu, table, mo, no, zp_a, zp_y)
        if mode == MODE_SOFTMAX:
            top = acc[0]
            for j in range(1, outputs):
                top = max(top, acc[j])
            total = np.int64(0)
            for j in range(outputs):
                acc[j] = exp_table[top - acc[j]]
                total += acc[j]
            for j in range(outputs):
                acc[j] = sat8((acc[j] * 256 + total // 2) // total - 128)
        for j in range(outputs):
            y[s, j] = acc[j]


@njit(**JIT)
def dense_f(x, w, sw, b, has_weights, act, y):
    """float32 twin: ``y = act(x W [* s_w] + b)`` (or ``act(x)`` without weights)."""
    rows, features = x.shape
    outputs = y.shape[1]
    scaled = sw.shape[0] > 0
    for s in range(rows):
        for j in range(outputs):
            if has_weights:
                a = dot_f(x[s], w[j])
                if scaled:
                    a = a * sw[j]
                y[s, j] = a + b[j]
            else:
                y[s, j] = x[s, j]
        f_activate_row(act, y[s])
