"""The fused step: one timestep of a whole streamable model (a chain, or branches that fork and
merge) in one jitted call.

For small batches a step's cost is dominated by per-call overhead (Numba's dispatch is about
180 ns plus 45 ns per array argument), so the stream packs its model once into two flat arrays
and every step is a single call of :func:`chain_step` with four arguments, whatever the model:

* ``model`` (float32, flat): the program, then the weights. The program is (1 + stages, NCOLS)
  int64 stored bit for bit in the first floats (two per entry): row 0 holds sizes and offsets (``M_*``), then one
  row per op -- its kind, sizes, activation ids, flags and the offsets of its weights (from
  ``M_BASE``, where the weights start) and of its state in ``memory``. The weights: every weight
  array of the model, each 64-byte aligned (the whole array is too), a recurrent kernel ``U``
  packed in panels of 32 columns (:func:`edgernn.kernels._matvec.matvec_row` computes ``h U``
  from them: the sums stay in vector registers through all of ``h``, and ``U`` is the only
  memory the product streams) and a GRU's recurrent bias zero-padded to whole panels; then per
  op its float parameters (cell clip, mask value), and zeros as long as the widest padded
  product (``M_ZERO``). One array rather than an int program and float weights: one argument less to dispatch;
* ``x`` (B, F) and ``y`` (B, O);
* ``memory``: the stream's own floats. First its state, ``B * state_width`` floats in blocks of
  (B, size), one block per quantity -- each recurrent layer's h, c and previous output, each
  windowed stage's ring of past inputs and counters (Conv1D, pooling; or a global pooling's
  running value and count: :mod:`edgernn.kernels.window`), then the model's last output (which
  ``forecast`` feeds back, and a step that does not emit returns again) and a (B, 1) block of
  1.0 / 0.0, whether the last step emitted. Blocks rather than rows per stream, so
  that the many-streams path and the block kernels see each state as a contiguous (B, size)
  matrix for BLAS. Then scratch: one slot per tensor of the model (the input's, then each
  op's output's: a branch's result waits in its slot until the merge that reads it), the gate
  pre-activations, and per program row whether it emitted in this stream's step and the mask it made.

Four arguments, because each one costs: Numba's dispatcher types and unboxes every argument
before the kernel starts (tools/bench reports the floor with a no-op function).

One compiled function serves every model, so the on-disk cache holds it once. The per-stage code
calls the same ``*_update`` functions as the other kernels, so all paths compute the same terms.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, types

from ._config import JIT
from ._linalg import copy_row, project
from ._matvec import matvec_row
from .activations import activate_row
from .gru import gru_update
from .lstm import lstm_update
from .program import (ACT, ACTIVATION, AFFINE, B, C, CLIP, CNT, CNT_SIZE, CONV, COPY, DENSE, DIL, DST, EMBED, EPSILON,
                      FLAGS, GATE, GLOBAL_AVG, GROUPS, GRU, H, HAS_BETA, HAS_GAMMA, IN, KEEP_ROW, KSIZE, LAYER_NORM, LSTM,
                      M_BASE, M_EMIT, M_FRESH, M_HIDDEN, M_IN, M_LAST, M_OUT, M_PARAMS, M_SCRATCH, M_STAGES, M_X_SLOT,
                      M_Y_ROW, M_Y_SLOT, M_Z, M_ZERO, MASK_VALUE, MASK_ZERO, MASKING, MERGE, MERGE_ADD, MERGE_MAXIMUM,
                      MERGE_MINIMUM, MERGE_MULTIPLY, MERGE_SUBTRACT, MODE, NCOLS, NEED, NORM, OP, OUT, PADDED, PEEP, PREV,
                      PROJ, PROJECTED, RACT, RB, RECURRENT_PANEL, RESET_AFTER, RING, RING_SIZE, RPADDED, SRC, SRC2,
                      STANDARD, STANDARDIZE, STRIDE, U, UH, UNITS, USES_MASK, VOCAB, W, ZERO_OUTPUT)
from .program import DELAY  # a Pad1D: windowed, its id after the others
from .program import M_LAST_REPEAT, REPEAT, REPEATS  # an UpSample1D
from .rowwise import embed_row, layer_norm_row, standardize_row, valid_code
from .simple_rnn import simple_update
from .window import window_row

# A fixed signature: Numba then refuses (TypeError) any other argument types instead of compiling
# a new specialisation -- the stream's cheap type check, and no float64 promotion by accident.
_F32_1D, _F32_2D = types.float32[::1], types.float32[:, ::1]
CHAIN_STEP_SIGNATURE = types.int64(_F32_1D, _F32_2D, _F32_2D, _F32_1D)


def _chain_step(model, x, y, memory):
    """One timestep of every stream: ``x`` (B, F) -> ``y`` (B, O); the state in ``memory`` updated.

    Returns 0, or 1 without touching anything when a shape does not fit, 2 when a model that
    starts with an Embedding gets a code that is not a whole number in ``[0, vocab)`` in any
    stream (the caller then reports the problem): the checks cost a few comparisons, so they stay
    in the hot path.

    Each row reads its input's slot in the scratch and writes its output's (a branch's result
    waits in its slot for the merge that reads it). A windowed stage (Conv1D, pooling) that does
    not emit for this input leaves its slot as it was and is not fresh: the rows behind it do not
    run; if the model's output is among them, ``y[s]`` is the model's last output again and the
    stream's emitted flag is 0.

    A REPEAT row (an UpSample1D) makes the rows after it run ``size`` times for each of its input's
    rows (the pass over the rows starts again after it; the innermost first when there are
    several): the step emits if any pass made the output, and returns the last one made.
    """
    ints = model.view(np.int64)  # the program's bits (see the module docstring)
    stages = ints[M_STAGES]
    program = ints[: (1 + stages) * NCOLS].reshape((1 + stages, NCOLS))
    meta = program[0]
    weights = model[meta[M_BASE] :]
    batch = x.shape[0]
    state_size = batch * (meta[M_EMIT] + 1)
    if (x.shape[1] != meta[M_IN] or y.shape[0] != batch or y.shape[1] != meta[M_OUT]
            or memory.shape[0] != state_size + meta[M_SCRATCH]):
        return 1
    state = memory[:state_size]
    scratch = memory[state_size:]
    params = weights[meta[M_PARAMS] : meta[M_PARAMS] + 2 * stages].reshape((stages, 2))
    program = program[1:]
    if stages and program[0, OP] == EMBED:  # every stream's code, before any state changes
        for s in range(batch):
            if not valid_code(x[s, 0], program[0, VOCAB]):
                return 2
    z_all = scratch[meta[M_Z] : meta[M_HIDDEN]]
    zeros = weights[meta[M_ZERO] :]  # zeros as long as the widest padded recurrent product
    hidden_all = scratch[meta[M_HIDDEN] : meta[M_FRESH]]
    fresh = scratch[meta[M_FRESH] : meta[M_FRESH] + stages]  # 1.0 where the row emitted in this stream's step
    keeps = scratch[meta[M_FRESH] + stages : meta[M_FRESH] + 2 * stages]  # the mask a row made
    n_in_model = meta[M_IN]
    for s in range(batch):
        copy_row(scratch[meta[M_X_SLOT] : meta[M_X_SLOT] + n_in_model], x[s])
        # One pass over the rows, then again from the row after the innermost REPEAT (an UpSample1D)
        # that has repeats to go: its rows see its row once per repeat. The output emitted if any
        # pass made it; its slot holds the last row made (a row that does not run leaves its slot).
        first_row = 0
        emitted = meta[M_Y_ROW] < 0
        while first_row < stages:
            for k in range(first_row, stages):
                gate = program[k, GATE]
                if gate >= 0 and fresh[gate] == np.float32(0.0):
                    fresh[k] = np.float32(0.0)  # its input did not emit: neither does it
                    continue
                fresh[k] = np.float32(1.0)
                op = program[k, OP]
                n_in = program[k, IN]
                n_out = program[k, OUT]
                current = scratch[program[k, SRC] : program[k, SRC] + n_in]
                target = scratch[program[k, DST] : program[k, DST] + n_out]
                if (op >= CONV and op <= GLOBAL_AVG) or op == DELAY:
                    ring_size, counter_size = program[k, RING_SIZE], program[k, CNT_SIZE]
                    start = batch * program[k, RING] + s * ring_size
                    ring = state[start : start + ring_size]
                    start = batch * program[k, CNT] + s * counter_size
                    counters = state[start : start + counter_size]
                    if op == CONV:
                        per_group = n_in // program[k, GROUPS]
                        kernel = weights[program[k, W] : program[k, W] + program[k, KSIZE] * per_group * n_out].reshape(
                            (program[k, KSIZE], per_group, n_out))
                        bias = weights[program[k, B] : program[k, B] + n_out]
                    else:
                        kernel = weights[0:0].reshape((0, 0, 0))
                        bias = weights[0:0]
                    if not window_row(op, target, current, ring, counters, kernel, bias, program[k, DIL], program[k, GROUPS],
                                      program[k, NEED], program[k, STRIDE], program[k, ACT]):
                        fresh[k] = np.float32(0.0)  # nothing new for the rows behind it
                elif op == MERGE:
                    mode = program[k, MODE]
                    other = scratch[program[k, SRC2] : program[k, SRC2] + n_in]
                    if mode == MERGE_ADD:
                        for j in range(n_out):
                            target[j] = current[j] + other[j]
                    elif mode == MERGE_SUBTRACT:
                        for j in range(n_out):
                            target[j] = current[j] - other[j]
                    elif mode == MERGE_MULTIPLY:
                        for j in range(n_out):
                            target[j] = current[j] * other[j]
                    elif mode == MERGE_MAXIMUM:  # NaN wins, as in np.maximum
                        for j in range(n_out):
                            a, b = current[j], other[j]
                            target[j] = a if (a > b or a != a) else b
                    elif mode == MERGE_MINIMUM:
                        for j in range(n_out):
                            a, b = current[j], other[j]
                            target[j] = a if (a < b or a != a) else b
                    else:  # MERGE_DIVIDE: an average's sum by its count
                        count = params[k, CLIP]
                        for j in range(n_out):
                            target[j] = current[j] / count
                elif op == REPEAT:  # its input, for the first of its repeats (counted in its keeps entry)
                    copy_row(target, current)
                    keeps[k] = np.float32(0.0)
                elif op == COPY:
                    copy_row(target, current)
                elif op == AFFINE:
                    for j in range(n_out):
                        target[j] = current[j] * weights[program[k, W] + j] + weights[program[k, B] + j]
                elif op == LAYER_NORM:
                    flags = program[k, FLAGS]
                    gamma = weights[program[k, W] : program[k, W] + (n_in if flags & HAS_GAMMA else 0)]
                    beta = weights[program[k, B] : program[k, B] + (n_in if flags & HAS_BETA else 0)]
                    layer_norm_row(program[k, NORM], target, current, gamma, beta, params[k, EPSILON])
                elif op == STANDARDIZE:
                    standardize_row(target, current, weights[program[k, W] : program[k, W] + n_in],
                                    weights[program[k, B] : program[k, B] + n_in])
                elif op == EMBED:
                    table = weights[program[k, W] : program[k, W] + program[k, VOCAB] * n_out].reshape(
                        (program[k, VOCAB], n_out))
                    embed_row(target, table, current[0])
                    keeps[k] = np.float32(1.0)
                    if program[k, FLAGS] & MASK_ZERO and current[0] == np.float32(0.0):
                        keeps[k] = np.float32(0.0)
                elif op == MASKING:
                    mask_value = params[k, MASK_VALUE]
                    keep = False
                    for j in range(n_in):
                        if current[j] != mask_value:
                            keep = True
                            break
                    keeps[k] = np.float32(1.0) if keep else np.float32(0.0)
                    for j in range(n_in):
                        target[j] = current[j] if keep else np.float32(0.0)
                elif op == DENSE:
                    kernel = weights[program[k, W] : program[k, W] + n_in * n_out].reshape((n_in, n_out))
                    project(target, weights[program[k, B] : program[k, B] + n_out], current, kernel)
                    activate_row(program[k, ACT], target)
                elif op == ACTIVATION:
                    copy_row(target, current)
                    activate_row(program[k, ACT], target)
                else:
                    flags = program[k, FLAGS]
                    units = program[k, UNITS]
                    start = batch * program[k, PREV] + s * n_out
                    previous = state[start : start + n_out]
                    if not (flags & USES_MASK) or keeps[program[k, KEEP_ROW]] != np.float32(0.0):
                        start = batch * program[k, H] + s * n_out
                        h = state[start : start + n_out]
                        clip = params[k, CLIP]
                        standard = (flags & STANDARD) != 0
                        # W and U packed in panels (ChainProgram), the products' widths padded to whole panels
                        padded = program[k, PADDED]
                        kernel = weights[program[k, W] : program[k, W] + n_in * padded].reshape(
                            (padded // RECURRENT_PANEL, n_in, RECURRENT_PANEL))
                        bias = weights[program[k, B] :]  # padded
                        recurrent_padded = program[k, RPADDED]
                        recurrent = weights[program[k, U] : program[k, U] + n_out * recurrent_padded].reshape(
                            (recurrent_padded // RECURRENT_PANEL, n_out, RECURRENT_PANEL))
                        if op == LSTM:
                            z = z_all[:padded]  # its padding columns are scratch
                            matvec_row(bias, zeros, current, kernel, z)  # z = b + x W
                            matvec_row(z, zeros, h, recurrent, z)  # z += h U
                            peephole = weights[program[k, PEEP] : program[k, PEEP] + 3 * units].reshape((3, units))
                            if flags & PROJECTED:
                                projection = weights[program[k, PROJ] : program[k, PROJ] + units * n_out].reshape(
                                    (units, n_out))
                            else:
                                projection = weights[0:0].reshape((0, 0))
                            start = batch * program[k, C] + s * units
                            c = state[start : start + units]
                            lstm_update(z, h, c, peephole, projection, clip, program[k, ACT], program[k, RACT], standard,
                                        hidden_all[:units], previous)
                        elif op == GRU:
                            xw = z_all[:padded]
                            hu = z_all[padded : 2 * padded]
                            matvec_row(bias, zeros, current, kernel, xw)  # xw = b + x W
                            reset_after = (flags & RESET_AFTER) != 0
                            if reset_after:  # hu = h U + b_U (its bias stored padded)
                                matvec_row(weights[program[k, RB] :], zeros, h, recurrent, hu)
                                candidate = weights[0:0].reshape((0, 0))
                            else:  # hu[:2H] = h U_zr
                                matvec_row(zeros, zeros, h, recurrent, hu)
                                candidate = weights[program[k, UH] : program[k, UH] + units * units].reshape((units, units))
                            gru_update(xw, hu, h, candidate, reset_after, clip, program[k, ACT], program[k, RACT],
                                       standard, previous)
                        else:
                            z = z_all[:padded]
                            matvec_row(bias, zeros, current, kernel, z)
                            matvec_row(z, zeros, h, recurrent, z)
                            simple_update(z[:units], h, clip, program[k, ACT], standard, previous)
                    elif flags & ZERO_OUTPUT:
                        previous[:] = np.float32(0.0)
                    copy_row(target, previous)  # the slot the rows behind it read
            if meta[M_Y_ROW] >= 0 and fresh[meta[M_Y_ROW]] != np.float32(0.0):
                emitted = True
            first_row = stages
            for j in range(meta[M_LAST_REPEAT], -1, -1):  # none without an UpSample1D
                if (program[j, OP] == REPEAT and fresh[j] != np.float32(0.0)
                        and keeps[j] + np.float32(1.0) < program[j, REPEATS]):
                    keeps[j] += np.float32(1.0)
                    first_row = j + 1
                    break
        start = batch * meta[M_LAST] + s * meta[M_OUT]
        last = state[start : start + meta[M_OUT]]
        if emitted:
            copy_row(last, scratch[meta[M_Y_SLOT] : meta[M_Y_SLOT] + meta[M_OUT]])
        copy_row(y[s], last)
        state[batch * meta[M_EMIT] + s] = np.float32(1.0) if emitted else np.float32(0.0)
    return 0


@functools.cache
def jit_chain_step():
    """:func:`_chain_step` compiled by Numba for :data:`CHAIN_STEP_SIGNATURE` (or loaded from its
    on-disk cache), once per process; see :func:`edgernn.kernels.compiled_chain_step`, which
    prefers the ahead-of-time module when ``edgernn warmup`` built one."""
    return njit(CHAIN_STEP_SIGNATURE, **JIT)(_chain_step)
