"""The fused step: one timestep of a whole chain model in one jitted call.

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
  matrix for BLAS. Then scratch: ping-pong buffers for intermediate vectors, the gate
  pre-activations.

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
from .program import (ACT, ACTIVATION, AFFINE, B, C, CLIP, CNT, CONV, DENSE, DIL, EMBED, EPSILON, FLAGS, GLOBAL_AVG,
                      GLOBAL_MAX, GROUPS, GRU, H, HAS_BETA, HAS_GAMMA, IN, KSIZE, LAYER_NORM, LSTM, M_BASE, M_EMIT,
                      M_HIDDEN, M_IN, M_LAST, M_OUT, M_PARAMS, M_PING, M_PONG, M_SCRATCH, M_STAGES, M_WIDTH, M_Z, M_ZERO,
                      MASK_VALUE, MASK_ZERO, MASKING, NCOLS, NEED, NORM, OP, OUT, PEEP, PREV, PROJ, PROJECTED, RACT, RB,
                      RECURRENT_PANEL, RESET_AFTER, RING, STANDARD, STANDARDIZE, STRIDE, U, UH, UNITS, USES_MASK, VOCAB,
                      W, ZERO_OUTPUT)
from .program import DELAY  # a Pad1D: windowed, its id after the others
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

    A windowed stage (Conv1D, pooling) that does not emit for this input ends the stream's step
    there: the stages after it do not run, ``y[s]`` is the model's last output again, and the
    stream's emitted flag is 0.
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
    width = meta[M_WIDTH]
    buffers = (scratch[meta[M_PING] : meta[M_PING] + width], scratch[meta[M_PONG] : meta[M_PONG] + width])
    z_all = scratch[meta[M_Z] : meta[M_HIDDEN]]
    zeros = weights[meta[M_ZERO] :]  # zeros as long as the widest padded recurrent product
    hidden_all = scratch[meta[M_HIDDEN] :]
    for s in range(batch):
        current = x[s]
        keep = True
        emitted = True
        which = 0
        for k in range(stages):
            op = program[k, OP]
            n_in = program[k, IN]
            n_out = program[k, OUT]
            if (op >= CONV and op <= GLOBAL_AVG) or op == DELAY:
                target = buffers[which][:n_out]
                which = 1 - which
                global_pool = op == GLOBAL_MAX or op == GLOBAL_AVG
                ring_size, counter_size = (n_in, 1) if global_pool else (n_in * ((program[k, KSIZE] - 1)
                                                                                 * program[k, DIL]), 3)
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
                    emitted = False  # nothing new for the stages after it: the model's output is held
                    break
                current = target
            elif op == AFFINE:
                target = buffers[which][:n_out]
                which = 1 - which
                for j in range(n_out):
                    target[j] = current[j] * weights[program[k, W] + j] + weights[program[k, B] + j]
                current = target
            elif op == LAYER_NORM:
                target = buffers[which][:n_out]
                which = 1 - which
                flags = program[k, FLAGS]
                gamma = weights[program[k, W] : program[k, W] + (n_in if flags & HAS_GAMMA else 0)]
                beta = weights[program[k, B] : program[k, B] + (n_in if flags & HAS_BETA else 0)]
                layer_norm_row(program[k, NORM], target, current, gamma, beta, params[k, EPSILON])
                current = target
            elif op == STANDARDIZE:
                target = buffers[which][:n_out]
                which = 1 - which
                standardize_row(target, current, weights[program[k, W] : program[k, W] + n_in],
                                weights[program[k, B] : program[k, B] + n_in])
                current = target
            elif op == EMBED:
                target = buffers[which][:n_out]
                which = 1 - which
                table = weights[program[k, W] : program[k, W] + program[k, VOCAB] * n_out].reshape(
                    (program[k, VOCAB], n_out))
                embed_row(target, table, current[0])
                if program[k, FLAGS] & MASK_ZERO:
                    keep = current[0] != np.float32(0.0)
                current = target
            elif op == MASKING:
                target = buffers[which][:n_in]
                which = 1 - which
                mask_value = params[k, MASK_VALUE]
                keep = False
                for j in range(n_in):
                    if current[j] != mask_value:
                        keep = True
                        break
                for j in range(n_in):
                    target[j] = current[j] if keep else np.float32(0.0)
                current = target
            elif op == DENSE:
                target = buffers[which][:n_out]
                which = 1 - which
                kernel = weights[program[k, W] : program[k, W] + n_in * n_out].reshape((n_in, n_out))
                project(target, weights[program[k, B] : program[k, B] + n_out], current, kernel)
                activate_row(program[k, ACT], target)
                current = target
            elif op == ACTIVATION:
                target = buffers[which][:n_out]
                which = 1 - which
                copy_row(target, current)
                activate_row(program[k, ACT], target)
                current = target
            else:
                flags = program[k, FLAGS]
                units = program[k, UNITS]
                start = batch * program[k, PREV] + s * n_out
                previous = state[start : start + n_out]
                if keep or not (flags & USES_MASK):
                    start = batch * program[k, H] + s * n_out
                    h = state[start : start + n_out]
                    clip = params[k, CLIP]
                    standard = (flags & STANDARD) != 0
                    gates = 4 if op == LSTM else (3 if op == GRU else 1)
                    # W and U packed in panels (ChainProgram), the products' widths padded to whole panels
                    padded = -(-gates * units // RECURRENT_PANEL) * RECURRENT_PANEL
                    kernel = weights[program[k, W] : program[k, W] + n_in * padded].reshape(
                        (padded // RECURRENT_PANEL, n_in, RECURRENT_PANEL))
                    bias = weights[program[k, B] :]  # padded
                    columns = 2 * units if op == GRU and (flags & RESET_AFTER) == 0 else gates * units
                    recurrent_padded = -(-columns // RECURRENT_PANEL) * RECURRENT_PANEL
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
                current = previous
        start = batch * meta[M_LAST] + s * meta[M_OUT]
        last = state[start : start + meta[M_OUT]]
        if emitted:
            copy_row(last, current)
        copy_row(y[s], last)
        state[batch * meta[M_EMIT] + s] = np.float32(1.0) if emitted else np.float32(0.0)
    return 0


@functools.cache
def jit_chain_step():
    """:func:`_chain_step` compiled by Numba for :data:`CHAIN_STEP_SIGNATURE` (or loaded from its
    on-disk cache), once per process; see :func:`edgernn.kernels.compiled_chain_step`, which
    prefers the ahead-of-time module when ``edgernn warmup`` built one."""
    return njit(CHAIN_STEP_SIGNATURE, **JIT)(_chain_step)
