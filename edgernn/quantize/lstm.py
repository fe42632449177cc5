"""LSTM, twin of ``firmware_export/ernn_lstm.c``: int8 (integer only) and float (float32 / int8-weights).

Rows of ``w`` (4H, F) and ``u`` (4H, H) are the gate rows i, f, c, o (the IR's kernel columns,
transposed so each output row is contiguous, as in the C).

int8 step of one stream (``requant``, ``lut``, ``rshift_round`` in :mod:`.fixedpoint`)::

    ax[r]  = bx[r] + sum_k x[k] w[r,k]           bx: bias / (s_x s_w[r]) - zp_x sum_k w[r,k]
    ah[r]  = bh[r] + sum_k h[k] u[r,k]           bh: - zp_h sum_k u[r,k]
    pre[r] = sat32(requant(ax, mx[r], nx[r]) + requant(ah, mh[r], nh[r]))      Q3.12
    i, f, o = lut_gate(sat16(pre)),  g = lut_act(sat16(pre))                    Q0.15
    c'  = sat16(rshift_round(f c, 15) + rshift_round(i g, 30 - cs))           c: scale 2^-cs
    t   = lut_act(c' in Q3.12)       (rshift_round(c', cs - 12) or sat16(c' * 2^(12 - cs)))
    h'  = sat8(zp_h + requant(o t, mo, no))      mo 2^-no = 2^-30 / s_h
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .activations import f_activate
from .fixedpoint import JIT, lut, preact_f, preact_q, requant, rshift_round, sat16, sat8
from .masking import masked_output

_ONE = np.float32(1.0)


@njit(**JIT)
def lstm_q(x, w, u, bx, bh, mx, nx, mh, nh, lut_gate, lut_act, cell_shift, mo, no, zp_h, h, c, y, pre, keep, zero_output):
    """T steps of B streams: ``x`` (B, T, F) int8; ``h`` (B, H) int8 and ``c`` (B, H) int16 updated
    in place; ``y`` (B, T, H) int8 every step's h; ``pre`` (4H,) int64 scratch."""
    batch, steps, features = x.shape
    units = c.shape[1]
    for b in range(batch):
        for t in range(steps):
            if not keep[b, t]:  # masked: state kept, output h or zeros
                masked_output(y[b, t], h[b], zero_output, zp_h)
                continue
            # Stage 1 -- gate pre-activations in Q3.12 (old h for every row)
            preact_q(pre, 4 * units, x[b, t], h[b], w, u, bx, bh, mx, nx, mh, nh)
            for j in range(units):
                # Stage 2 -- c' = f c + i g
                gi = lut(sat16(pre[j]), lut_gate)
                gf = lut(sat16(pre[units + j]), lut_gate)
                gg = lut(sat16(pre[2 * units + j]), lut_act)
                go = lut(sat16(pre[3 * units + j]), lut_gate)
                cell = sat16(rshift_round(gf * np.int64(c[b, j]), 15) + rshift_round(gi * gg, 30 - cell_shift))
                c[b, j] = cell
                # Stage 3 -- h' = o tanh(c')
                if cell_shift > 12:
                    q12 = rshift_round(cell, cell_shift - 12)
                else:
                    q12 = sat16(cell * (np.int64(1) << (12 - cell_shift)))
                t_cell = lut(q12, lut_act)
                h[b, j] = sat8(zp_h + requant(go * t_cell, mo, no))
            for j in range(units):
                y[b, t, j] = h[b, j]


@njit(**JIT)
def lstm_f(x, w, u, sw, su, bx, bh, gate_act, act, h, c, y, pre, keep, zero_output):
    """float32 twin: ``w``/``u`` float32 (float32 scheme) or int8 with row scales ``sw``/``su``
    (int8-weights scheme; empty scales = none). ``pre`` (4H,) float32 scratch."""
    batch, steps, features = x.shape
    units = c.shape[1]
    for b in range(batch):
        for t in range(steps):
            if not keep[b, t]:  # masked: state kept, output h or zeros
                masked_output(y[b, t], h[b], zero_output, np.float32(0.0))
                continue
            # Stage 1 -- pre = (x W [* s_w] + b) + (h U [* s_u] + b_h)
            preact_f(pre, 4 * units, x[b, t], h[b], w, u, sw, su, bx, bh)
            for j in range(units):
                gi = f_activate(gate_act, pre[j])
                gf = f_activate(gate_act, pre[units + j])
                gg = f_activate(act, pre[2 * units + j])
                go = f_activate(gate_act, pre[3 * units + j])
                cell = gf * c[b, j] + gi * gg
                c[b, j] = cell
                h[b, j] = go * f_activate(act, cell)
            for j in range(units):
                y[b, t, j] = h[b, j]
