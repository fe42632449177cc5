"""Pooling1D, twin of ``firmware_export/ernn_pool.c``: max / average pooling (valid) and global
max / average pooling over time, streamed as the float stream does (:mod:`edgernn.kernels.window`).
The output keeps the input's quantization (int8: the same scale and zero point).

Windowed (ring of the last ``pool_size - 1`` inputs, counters ``(fill, phase, pos)``; emits where
the float stream emits), over the window's ``P = pool_size`` inputs, newest first::

    int8 max:   y = max q                    int8 avg:   y = round_div(sum q, P)
    float max:  y = max (NaN wins)           float avg:  y = (x + x_1 + ... + x_{P-1}) / P

Global (every input emits; ``counters[0]`` = inputs seen, ``acc`` (C,) the running value)::

    max:        acc = max(acc, x)            (float: NaN wins), y = acc
    int8 avg:   count < 2^23: count += 1, sum += q;  else sum += q - round_div(sum, 2^23)
                y = round_div(sum, count)    (an exact running mean; past 2^23 steps a moving
                                              average with weight 2^-23, so sum stays in int32)
    float avg:  n = count + 1 (at most 2^24), acc += (x - acc) / n, y = acc

``round_div(a, b) = floor((a + floor(b / 2)) / b)`` (b > 0): a / b rounded half up.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels.program import COUNT_LIMIT
from ..kernels.window import POS, _lagged, _push, _tick
from .fixedpoint import INLINE, JIT

GLOBAL_COUNT_LIMIT_Q = 1 << 23  # int8 global average: |sum| <= 128 * 2^23 = 2^30 stays within int32
_COUNT_LIMIT_F = np.float32(COUNT_LIMIT)


@njit(**INLINE)
def round_div(a, b):
    """``a / b`` rounded half up, ``b > 0`` (Python's // floors, as ernn_floor_div)."""
    return (np.int64(a) + (b >> 1)) // b


@njit(**JIT)
def pool_q(x, active, y, ring, counters, is_max, span, need, strides):
    """Windowed int8 pooling: ``x`` (B, T, C) int8 -> ``y`` where an input emits; ``active``,
    ``ring`` (B, (span - 1) C) and ``counters`` (B, 3) as in :func:`edgernn.quantize.conv.conv_q`."""
    batch, steps, width = x.shape
    for b in range(batch):
        for t in range(steps):
            if not active[b, t]:
                continue
            emit = _tick(counters[b], need, strides)
            pos = int(counters[b, POS])
            if emit:
                for c in range(width):
                    acc = np.int64(x[b, t, c])
                    for lag in range(1, span):
                        v = np.int64(_lagged(x[b, t], ring[b], pos, lag, width)[c])
                        if is_max:
                            acc = max(acc, v)
                        else:
                            acc += v
                    y[b, t, c] = acc if is_max else round_div(acc, span)
            _push(ring[b], x[b, t], counters[b], pos)
            active[b, t] = emit


@njit(**JIT)
def pool_f(x, active, y, ring, counters, is_max, span, need, strides):
    """float32 twin of :func:`pool_q`, the float stream's arithmetic (``window_row``)."""
    batch, steps, width = x.shape
    for b in range(batch):
        for t in range(steps):
            if not active[b, t]:
                continue
            emit = _tick(counters[b], need, strides)
            pos = int(counters[b, POS])
            if emit:
                for c in range(width):
                    y[b, t, c] = x[b, t, c]
                for lag in range(1, span):
                    row = _lagged(x[b, t], ring[b], pos, lag, width)
                    for c in range(width):
                        if is_max:
                            if row[c] > y[b, t, c] or row[c] != row[c]:
                                y[b, t, c] = row[c]
                        else:
                            y[b, t, c] += row[c]
                if not is_max:
                    for c in range(width):
                        y[b, t, c] = y[b, t, c] / np.float32(span)
            _push(ring[b], x[b, t], counters[b], pos)
            active[b, t] = emit


@njit(**JIT)
def global_q(x, active, y, acc, counters, is_max):
    """Global int8 pooling: ``acc`` (B, C) int32 running max or sum, ``counters[:, 0]`` the count."""
    batch, steps, width = x.shape
    for b in range(batch):
        for t in range(steps):
            if not active[b, t]:
                continue
            count = counters[b, 0]
            for c in range(width):
                q = np.int64(x[b, t, c])
                if is_max:
                    acc[b, c] = q if count == 0 else max(np.int64(acc[b, c]), q)
                elif count < GLOBAL_COUNT_LIMIT_Q:
                    acc[b, c] = acc[b, c] + q
                else:
                    acc[b, c] = acc[b, c] + q - round_div(acc[b, c], GLOBAL_COUNT_LIMIT_Q)
            if count < GLOBAL_COUNT_LIMIT_Q:
                count += 1
                counters[b, 0] = count
            for c in range(width):
                y[b, t, c] = acc[b, c] if is_max else round_div(acc[b, c], count)


@njit(**JIT)
def global_f(x, active, y, acc, counters, is_max):
    """float32 twin of :func:`global_q`, the float stream's running max / mean (``window_row``)."""
    batch, steps, width = x.shape
    for b in range(batch):
        for t in range(steps):
            if not active[b, t]:
                continue
            count = counters[b, 0]
            n = np.float32(count + 1) if count < _COUNT_LIMIT_F else np.float32(count)
            for c in range(width):
                v = x[b, t, c]
                if count == 0:
                    acc[b, c] = v
                elif is_max:
                    if v > acc[b, c] or v != v:
                        acc[b, c] = v
                else:
                    acc[b, c] += (v - acc[b, c]) / n
                y[b, t, c] = acc[b, c]
            if count < _COUNT_LIMIT_F:
                counters[b, 0] = count + 1
