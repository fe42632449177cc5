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
from .fixedpoint import JIT, dot_f, dot_q, lut, requant, sat16, sat32, sat8


@njit(**JIT)
def rnn_q(x, w, u, bx, bh, mx, nx, mh, nh, use_table, table, relu, mo, no, zp_h, h, y, pre, keep, zero_output):
    batch, steps, features = x.shape
    units = h.shape[1]
    for b in range(batch):
        for t in range(steps):
            if not keep[b, t]:  # masked: state kept, output h or zeros
                for j in range(units):
                    y[b, t, j] = zp_h if zero_output else h[b, j]
                continue
            for r in range(units):
                ax = dot_q(np.int64(bx[r]), x[b, t], w[r])
                ah = dot_q(np.int64(bh[r]), h[b], u[r])
                pre[r] = sat32(requant(ax, mx[r], nx[r]) + requant(ah, mh[r], nh[r]))
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
    scaled = sw.shape[0] > 0
    for b in range(batch):
        for t in range(steps):
            if not keep[b, t]:  # masked: state kept, output h or zeros
                for j in range(units):
                    y[b, t, j] = np.float32(0.0) if zero_output else h[b, j]
                continue
            for r in range(units):
                ax = dot_f(x[b, t], w[r])
                ah = dot_f(h[b], u[r])
                if scaled:
                    ax = ax * sw[r]
                    ah = ah * su[r]
                pre[r] = (ax + bx[r]) + (ah + bh[r])
            for j in range(units):
                h[b, j] = f_activate(act, pre[j])
            for j in range(units):
                y[b, t, j] = h[b, j]


__all__ = ["rnn_q", "rnn_f", "RELU"]
