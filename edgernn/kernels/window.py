"""The streaming step of Conv1D, Pooling1D and Pad1D: each keeps a window of its last inputs as state.

One timestep of one stream is :func:`window_row`; the fused step (:mod:`edgernn.kernels.chain`)
calls it per stream, :func:`window_batch` (many streams, one step) and :func:`window_block`
(``Stream.run``: T steps) call it in loops, so every path computes the same terms in the same order
-- except an ungrouped Conv1D's, whose many-streams step (:func:`conv_batch`) and block
(:func:`conv_gather_block`) make their outputs in one product across streams and steps: the same
counting and ring, its sums to float32 rounding of the others'.

State of one stage, per stream (float32, in the stream's memory; see :mod:`edgernn.kernels.program`):

* windowed ops (Conv1D causal or valid, max / average pooling valid): ``inputs`` (R * C,), a ring
  of the last ``R = span - 1`` inputs (``span = (kernel_size - 1) * dilation_rate + 1``, or
  ``pool_size``) -- row ``pos - L (mod R)`` holds the input ``L`` steps back -- and ``counters``
  (3,) = ``(fill, phase, pos)``: inputs seen, saturating at ``need``; inputs since the last
  output, modulo ``strides``; the ring's next row. All three are small integers, exact in
  float32. Zeros are the fresh state: an empty window, which for a causal convolution *is* its
  left padding of ``span - 1`` zeros;
* Pad1D (Keras Cropping1D, ZeroPadding1D on the left; kind DELAY): the same ``inputs`` and
  ``counters``, its ring the last ``R = right`` inputs cropped at the end (none without), and
  ``need = left + right`` crops (see :func:`~edgernn.kernels.program.window_geometry`). Input n emits,
  from n = need on, the input R steps back: ``predict`` on the prefix ending at input n keeps
  rows ``left .. n - right``, so its new last row is input n - R. Zero rows padded at the left are
  not inputs here: the stream starts the stages after the Pad1D from the state those rows leave;
* global pooling: ``pooled`` (F,), the running max or mean, and ``count`` (1,), the inputs seen,
  saturating at 2**24 (float32 counts exactly up to there; the mean then stays a running average
  with weight 2**-24 per step).

An input to the stage *emits* an output row exactly where ``predict`` on the prefix ending there
makes its last row. With ``need`` = span - 1 (valid) or 0 (causal), input n (counted from 0) emits when

    n >= need  and  (n - need) % strides == 0,

and the row is the op over the window of inputs n - span + 1 .. n (lag L = span - 1 - position):

    conv:     y[f] = act(bias[f] + sum_j sum_c in_{lag (k-1-j)*d}[g(f)*C/G + c] * kernel[j, c, f])
    max/avg:  y = max / mean over lags 0 .. pool_size - 1
    delay:    y = in_{lag R}
    global:   max_n = max(max_{n-1}, x_n);  mean_n = mean_{n-1} + (x_n - mean_{n-1}) / n   (every input emits)
"""

from __future__ import annotations

from numba import njit

from ._config import INLINE, JIT
from ._gemm import packed_affine
from ._linalg import accumulate, copy_row
from .activations import activate_row

from .program import AVG_POOL, CONV, COUNT_LIMIT, DELAY, GLOBAL_AVG, GLOBAL_MAX, MAX_POOL

# Entries of a windowed stage's counters.
FILL, PHASE, POS = 0, 1, 2


@njit(**INLINE)
def _tick(counters, need, strides):
    """Count one input; True when it completes an output row (see the module docstring)."""
    fill = counters[FILL]
    if fill < need:
        counters[FILL] = fill + 1
        return False
    phase = counters[PHASE] + 1
    emit = counters[PHASE] == 0
    counters[PHASE] = 0 if phase >= strides else phase
    return emit


@njit(**INLINE)
def _lagged(x, ring, pos, lag, width):
    """The input ``lag`` steps back: ``x`` itself for lag 0, else its row of the ring."""
    if lag == 0:
        return x
    rows = ring.shape[0] // width
    slot = pos - lag
    if slot < 0:
        slot += rows
    return ring[slot * width : (slot + 1) * width]


@njit(**INLINE)
def window_row(kind, y, x, ring, counters, kernel, bias, dilation, groups, need, strides, act):
    """One input ``x`` (C,) of one stream through a Conv1D, pooling or Pad1D stage; True if it emits ``y``.

    ``y`` (width,) is written only when it emits. ``ring`` and ``counters`` are this stream's state
    (module docstring); ``kernel`` (k, C/G, F) and ``bias`` (F,) are used by Conv1D only, ``need``,
    ``strides`` by the windowed kinds, ``dilation`` (1 for pooling, whose window is contiguous)
    sets the lag between taps.
    """
    width = x.shape[0]
    if kind == GLOBAL_MAX or kind == GLOBAL_AVG:
        count = counters[0]
        if count == 0:
            copy_row(ring, x)
        elif kind == GLOBAL_MAX:
            for j in range(width):
                if x[j] > ring[j] or x[j] != x[j]:  # a NaN stays, as in NumPy's max over the prefix
                    ring[j] = x[j]
        else:
            n = count + 1 if count < COUNT_LIMIT else count
            for j in range(width):
                ring[j] += (x[j] - ring[j]) / n
        if count < COUNT_LIMIT:
            counters[0] = count + 1
        copy_row(y, ring)
        return True
    emit = _tick(counters, need, strides)
    pos = int(counters[POS])
    if emit:
        if kind == CONV:
            taps, per_group, filters = kernel.shape[0], kernel.shape[1], kernel.shape[2]
            per_filter = filters // groups
            copy_row(y, bias)
            for j in range(taps):
                row = _lagged(x, ring, pos, (taps - 1 - j) * dilation, width)
                if groups == 1:
                    accumulate(y, row, kernel[j])
                else:
                    for g in range(groups):
                        accumulate(y[g * per_filter : (g + 1) * per_filter], row[g * per_group : (g + 1) * per_group],
                                   kernel[j, :, g * per_filter : (g + 1) * per_filter])
            activate_row(act, y)
        elif kind == DELAY:  # the oldest row of the ring (its slot pos, overwritten below), or x without one
            copy_row(y, _lagged(x, ring, pos, ring.shape[0] // width, width))
        else:
            span = ring.shape[0] // width + 1
            copy_row(y, x)
            for lag in range(1, span):
                row = _lagged(x, ring, pos, lag, width)
                for j in range(width):
                    if kind == MAX_POOL:
                        if row[j] > y[j] or row[j] != row[j]:
                            y[j] = row[j]
                    else:
                        y[j] += row[j]
            if kind == AVG_POOL:
                for j in range(width):
                    y[j] = y[j] / span
    _push(ring, x, counters, pos)
    return emit


@njit(**INLINE)
def _push(ring, x, counters, pos):
    """``x`` into the ring at row ``pos``, which moves on (an empty ring, kernel_size 1, keeps nothing)."""
    width = x.shape[0]
    rows = ring.shape[0] // width
    if rows:
        copy_row(ring[pos * width : (pos + 1) * width], x)
        pos += 1
        counters[POS] = 0 if pos == rows else pos


@njit(**JIT)
def window_batch(kind, x, active, y, ring, counters, kernel, bias, dilation, groups, need, strides, act):
    """One step of many streams: ``x`` (B, C) -> ``y`` (B, width) where it emits.

    ``active`` (B,) bool: the streams whose input is fresh this step (the stages before emitted);
    the others are left untouched. On return ``active`` says which streams this stage emitted for.
    ``ring`` (B, size) and ``counters`` (B, n) are the stage's state blocks.
    """
    for s in range(x.shape[0]):
        if active[s]:
            active[s] = window_row(kind, y[s], x[s], ring[s], counters[s], kernel, bias, dilation, groups, need,
                                   strides, act)


@njit(**JIT)
def conv_gather(x, active, cols, ring, counters, taps, dilation, need, strides):
    """One step of a Conv1D's block (:func:`conv_gather_block`), before its product: ``x`` (B, C)
    counted and pushed as in :func:`window_row`, and where a stream emits, its window into
    ``cols[s]`` (taps * C,), tap-major like ``kernel.reshape(taps * C, F)``, so that
    ``y = bias + cols @ kernel`` is one matrix product across the streams and steps (the
    caller's, in BLAS). ``active`` as in :func:`window_batch`. A single step of many streams
    reads the windows in place instead (:func:`conv_batch`)."""
    width = x.shape[1]
    for s in range(x.shape[0]):
        if active[s]:
            emit = _tick(counters[s], need, strides)
            pos = int(counters[s, POS])
            if emit:
                for j in range(taps):
                    copy_row(cols[s, j * width : (j + 1) * width],
                             _lagged(x[s], ring[s], pos, (taps - 1 - j) * dilation, width))
            _push(ring[s], x[s], counters[s], pos)
            active[s] = emit


@njit(**JIT)
def conv_batch(x, active, fresh, taps, ring, counters, dilation, need, strides, ring_weights, x_weights, bias,
               columns, y, tail, relu):
    """An ungrouped Conv1D's step of many streams in one product across the streams that reads
    each window where it lies, in the ring and in ``x``, without gathering it first:

        y[s] = bias + sum_{j < T} ring[s, taps[s, j] :][:C] @ kernel[j] + x[s] @ kernel[T]

    for the T = kernel_size - 1 taps before the last, ``taps[s, j]`` the start of the ring row
    (taps - 1 - j) * dilation steps back (:func:`_lagged`), then ``max(y, 0)`` if ``relu``;
    ``ring_weights`` = ``kernel[:T]`` as (T * C, F) and ``x_weights`` = ``kernel[T]`` (C, F), packed
    with ``bias`` (F,) by :func:`edgernn.kernels._gemm.pack_columns`; ``columns`` = F.

    ``x`` (B, C), ``active`` (B,) as in :func:`window_batch` (updated in place to the streams that
    emit); ``fresh`` (B,) bool and ``taps`` (B, T) intp scratch; ``y`` (B, >= F); ``tail`` the
    product's scratch. Every stream is counted first, the product made, and only then the fresh
    inputs pushed (the push overwrites the oldest row, which the first tap reads). The rows of
    streams that do not emit are computed from their last taps and not used.
    """
    width = x.shape[1]
    rows = ring.shape[1] // width
    before = taps.shape[1]
    for s in range(x.shape[0]):
        fresh[s] = active[s]
        if active[s]:
            emit = _tick(counters[s], need, strides)
            if emit:
                pos = int(counters[s, POS])
                for j in range(before):
                    slot = pos - (before - j) * dilation  # lag (taps - 1 - j) * dilation <= rows
                    if slot < 0:
                        slot += rows
                    taps[s, j] = slot * width
            active[s] = emit
    packed_affine(ring, ring_weights, x, x_weights, bias, columns, y, tail, taps, relu)
    for s in range(x.shape[0]):
        if fresh[s]:
            _push(ring[s], x[s], counters[s], int(counters[s, POS]))


@njit(**JIT)
def conv_gather_block(x, active, cols, ring, counters, taps, dilation, need, strides):
    """:func:`conv_gather` for T steps: ``x`` (T, B, C), ``active`` (T, B) updated in place,
    ``cols`` (T, B, taps * C), so that the whole block's outputs are one matrix product."""
    for t in range(x.shape[0]):
        conv_gather(x[t], active[t], cols[t], ring, counters, taps, dilation, need, strides)


@njit(**JIT)
def window_block(kind, x, active, y, ring, counters, kernel, bias, dilation, groups, need, strides, act):
    """T steps of every stream: ``x`` (T, B, C), ``active`` (T, B) -> ``y`` (T, B, width), ``active``
    updated in place as in :func:`window_batch`, step after step."""
    for t in range(x.shape[0]):
        for s in range(x.shape[1]):
            if active[t, s]:
                active[t, s] = window_row(kind, y[t, s], x[t, s], ring[s], counters[s], kernel, bias, dilation,
                                          groups, need, strides, act)
