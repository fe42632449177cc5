"""SimpleRNN, twin of ``firmware_export/ernn_rnn.c``.

int8 step of one stream::

    pre = sat32(requant(ax, mx, nx) + requant(ah, mh, nh))        Q.12 (int32, not saturated to int16)
    table activation (tanh, ...):  h' = sat8(zp_h + requant(lut(sat16(pre)), mo, no))   mo 2^-no = 2^-15 / s_h
    linear / relu:                 h' = sat8(zp_h + requant(pre, mo, no))               mo 2^-no = 2^-12 / s_h
                                   relu: h' = max(h', zp_h)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .activations import RELU, f_activate
from .fixedpoint import JIT, lut, preact_f, preact_q, requant, sat16, sat8
from .masking import masked_output


@njit(**JIT)
def rnn_q(x, w, u, bx, bh, mx, nx, mh, nh, use_table, table, relu, mo, no, zp_h, h, y, pre, keep, zero_output):
    batch, steps, features = x.shape
    units = h.shape[1]
    for b in range(batch):
        for t in range(steps):
            if not keep[b, t]:  # masked: state kept, output h or zeros
                masked_output(y[b, t], h[b], zero_output, zp_h)
                continue
            preact_q(pre, units, x[b, t], h[b], w, u, bx, bh, mx, nx, mh, nh)
            for j in range(units):
                v = lut(sat16(pre[j]), table) if use_table else pre[j]
                q = sat8(zp_h + requant(v, mo, no))
                if relu and q < zp_h:
                    q = zp_h
                h[b, j] = q
            for j in range(units):
                y[b, t, j] = h[b, j]


@njit(**JIT)
def rnn_f(x, w, u, sw, su, bx, bh, act, h, y, pre, keep, zero_output):
    batch, steps, features = x.shape
    units = h.shape[1]
    for b in range(batch):
        for t in range(steps):
            if not keep[b, t]:  # masked: state kept, output h or zeros
                masked_output(y[b, t], h[b], zero_output, np.float32(0.0))
                continue
            preact_f(pre, units, x[b, t], h[b], w, u, sw, su, bx, bh)
            for j in range(units):
                h[b, j] = f_activate(act, pre[j])
            for j in range(units):
                y[b, t, j] = h[b, j]


__all__ = ["rnn_q", "rnn_f", "RELU"]
