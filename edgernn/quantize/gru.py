"""GRU, twin of ``firmware_export/ernn_gru.c``, both candidate forms; rows z, r, h.

int8 step of one stream::

    pre[r] = sat32(requant(ax[r], mx, nx) + requant(ah[r], mh, nh))  for z and r rows     Q3.12
    z, r   = lut_gate(sat16(pre))                                                          Q0.15
    xh     = requant(ax[h row], mx, nx)                                                    Q.12
    reset_after:  hh = requant(ah[h row], mh, nh)     (bh folds the recurrent bias and zp_h)
                  cand = sat32(xh + rshift_round(r hh, 15))
    otherwise:    rh[k] = rshift_round(r[k] (h[k] - zp_h), 15)       (int16, scale s_h)
                  cand = sat32(xh + requant(sum_k rh[k] u[h row, k], mh, nh))
    hc  = lut_act(sat16(cand))                                                             Q0.15
    hp  = sat16(requant(h - zp_h, mq, nq))        h in Q0.15 (mq 2^-nq = s_h 2^15)
    h'  = sat8(zp_h + requant(z hp + (32768 - z) hc, mo, no))     mo 2^-no = 2^-30 / s_h
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .activations import f_activate
from .fixedpoint import JIT, dot_f, dot_q, lut, preact_f, preact_q, requant, rshift_round, sat16, sat32, sat8
from .masking import masked_output

_ONE = np.float32(1.0)


@njit(**JIT)
def gru_q(x, w, u, bx, bh, mx, nx, mh, nh, lut_gate, lut_act, reset_after, mq, nq, mo, no, zp_h, h, y, pre, extra, keep, zero_output):
    """T steps of B streams; ``h`` (B, H) int8 in place; ``pre`` (3H,) and ``extra`` (H,) int64 scratch."""
    batch, steps, features = x.shape
    units = h.shape[1]
    for b in range(batch):
        for t in range(steps):
            if not keep[b, t]:  # masked: state kept, output h or zeros
                masked_output(y[b, t], h[b], zero_output, zp_h)
                continue
            # Stage 1 -- z and r pre-activations, the candidate's input part, and (reset_after) h U_h + b_h
            preact_q(pre, 2 * units, x[b, t], h[b], w, u, bx, bh, mx, nx, mh, nh)
            for r in range(2 * units, 3 * units):
                ax = dot_q(np.int64(bx[r]), x[b, t], w[r])
                pre[r] = requant(ax, mx[r], nx[r])
                if reset_after:
                    ah = dot_q(np.int64(bh[r]), h[b], u[r])
                    extra[r - 2 * units] = requant(ah, mh[r], nh[r])
            # Stage 2 -- gates z, r (Q0.15), in place
            for r in range(2 * units):
                pre[r] = lut(sat16(pre[r]), lut_gate)
            # Stage 3 -- candidate pre-activation
            if reset_after:
                for j in range(units):
                    pre[2 * units + j] = sat32(pre[2 * units + j] + rshift_round(pre[units + j] * extra[j], 15))
            else:
                for k in range(units):
                    extra[k] = rshift_round(pre[units + k] * (np.int64(h[b, k]) - zp_h), 15)
                for j in range(units):
                    row = 2 * units + j
                    acc = dot_q(np.int64(0), extra, u[row])
                    pre[row] = sat32(pre[row] + requant(acc, mh[row], nh[row]))
            # Stage 4 -- h' = z h + (1 - z) h~
            for j in range(units):
                hc = lut(sat16(pre[2 * units + j]), lut_act)
                hp = sat16(requant(np.int64(h[b, j]) - zp_h, mq, nq))
                z = pre[j]
                h[b, j] = sat8(zp_h + requant(z * hp + (32768 - z) * hc, mo, no))
            for j in range(units):
                y[b, t, j] = h[b, j]


@njit(**JIT)
def gru_f(x, w, u, sw, su, bx, bh, gate_act, act, reset_after, h, y, pre, extra, keep, zero_output):
    """float32 twin; ``pre`` (3H,) and ``extra`` (H,) float32 scratch."""
    batch, steps, features = x.shape
    units = h.shape[1]
    scaled = sw.shape[0] > 0
    for b in range(batch):
        for t in range(steps):
            if not keep[b, t]:  # masked: state kept, output h or zeros
                masked_output(y[b, t], h[b], zero_output, np.float32(0.0))
                continue
            # Stage 1 -- z and r pre-activations; the candidate row's x W_h + b (and h U_h + b_h)
            preact_f(pre, 2 * units, x[b, t], h[b], w, u, sw, su, bx, bh)
            for r in range(2 * units, 3 * units):
                ax = dot_f(x[b, t], w[r])
                if scaled:
                    ax = ax * sw[r]
                pre[r] = ax + bx[r]
                if reset_after:
                    ah = dot_f(h[b], u[r])
                    if scaled:
                        ah = ah * su[r]
                    extra[r - 2 * units] = ah + bh[r]
            for r in range(2 * units):
                pre[r] = f_activate(gate_act, pre[r])
            if reset_after:
                for j in range(units):
                    pre[2 * units + j] = pre[2 * units + j] + pre[units + j] * extra[j]
            else:
                for k in range(units):
                    extra[k] = pre[units + k] * h[b, k]
                for j in range(units):
                    row = 2 * units + j
                    acc = dot_f(extra, u[row])
                    if scaled:
                        acc = acc * su[row]
                    pre[row] = pre[row] + acc
            for j in range(units):
                hc = f_activate(act, pre[2 * units + j])
                z = pre[j]
                h[b, j] = z * h[b, j] + (_ONE - z) * hc
            for j in range(units):
                y[b, t, j] = h[b, j]
