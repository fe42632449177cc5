"""Conv1D (causal or valid; strides, dilation, groups), twin of ``firmware_export/ernn_conv.c``.

Streamed as the float stream does (:mod:`edgernn.kernels.window`, whose ring helpers this shares):
a ring of the last ``span - 1`` inputs (``span = (taps - 1) * dilation + 1``) and counters
``(fill, phase, pos)`` per stream; an input emits an output row when ``fill`` has reached ``need``
(``span - 1`` valid, 0 causal) and its phase is 0 (every ``strides``-th input from there). The
window is gathered, tap-major, into ``cols`` (``taps * C``: tap ``j`` is the input
``(taps - 1 - j) * dilation`` steps back), then each filter ``f`` of group ``g = f // (F / G)``::

    int8:   acc = bx[f] + sum_j sum_c cols[j C + g C/G + c] * w[f, j C/G + c]        (int64; exact)
            y[f] = output_q(acc)   (ernn_output_q: affine / relu / table, as the Dense)
    float:  a = sum_j sum_c cols[...] * w[f, ...]  (float32, in that order, from 0)
            y[f] = act(a [* sw[f]] + b[f])

``bx`` has the input zero point folded in (``- zp_x sum w[f]``); an int8 ring starts full of
``zp_x`` -- the int8 of 0.0, so a causal convolution's left padding costs nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels._linalg import copy_row
from ..kernels.window import POS, _lagged, _push, _tick
from .activations import f_activate_row
from .dense import output_q
from .fixedpoint import INLINE, JIT


@njit(**INLINE)
def gather(cols, x, ring, pos, taps, dilation):
    """The window of the current input ``x`` (C,) into ``cols`` (taps * C,), tap-major (oldest first)."""
    width = x.shape[0]
    for j in range(taps):
        copy_row(cols[j * width:(j + 1) * width], _lagged(x, ring, pos, (taps - 1 - j) * dilation, width))


@njit(**JIT)
def conv_q(x, active, y, ring, counters, w, bx, m, n, mode, relu, table, mo, no, zp_a, zp_y, taps, dilation, groups,
           need, strides, cols):
    """``x`` (B, T, C) int8 -> ``y`` (B, T, F) int8 where an input emits. ``active`` (B, T): the inputs
    that are fresh (the stages before emitted), set to whether this stage emitted; ``ring`` (B, R C)
    int8 and ``counters`` (B, 3) int32 updated; ``cols`` (taps C,) int64 scratch."""
    batch, steps, width = x.shape
    filters = y.shape[2]
    per_group, per_filter = width // groups, filters // groups
    for b in range(batch):
        for t in range(steps):
            if not active[b, t]:
                continue
            emit = _tick(counters[b], need, strides)
            pos = int(counters[b, POS])
            if emit:
                gather(cols, x[b, t], ring[b], pos, taps, dilation)
                for f in range(filters):
                    base = (f // per_filter) * per_group
                    acc = np.int64(bx[f])
                    for j in range(taps):
                        for c in range(per_group):
                            acc += cols[j * width + base + c] * np.int64(w[f, j * per_group + c])
                    y[b, t, f] = output_q(acc, m[f], n[f], mode, relu, table, mo, no, zp_a, zp_y)
            _push(ring[b], x[b, t], counters[b], pos)
            active[b, t] = emit


@njit(**JIT)
def conv_f(x, active, y, ring, counters, w, sw, bias, act, taps, dilation, groups, need, strides, cols):
    """float32 twin of :func:`conv_q` (float32 or int8 ``w`` with row scales ``sw``, empty = none)."""
    batch, steps, width = x.shape
    filters = y.shape[2]
    per_group, per_filter = width // groups, filters // groups
    scaled = sw.shape[0] > 0
    for b in range(batch):
        for t in range(steps):
            if not active[b, t]:
                continue
            emit = _tick(counters[b], need, strides)
            pos = int(counters[b, POS])
            if emit:
                gather(cols, x[b, t], ring[b], pos, taps, dilation)
                for f in range(filters):
                    base = (f // per_filter) * per_group
                    a = np.float32(0.0)
                    for j in range(taps):
                        for c in range(per_group):
                            a = a + cols[j * width + base + c] * np.float32(w[f, j * per_group + c])
                    if scaled:
                        a = a * sw[f]
                    y[b, t, f] = a + bias[f]
                f_activate_row(act, y[b, t])
            _push(ring[b], x[b, t], counters[b], pos)
            active[b, t] = emit
