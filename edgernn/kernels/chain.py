"""The fused step: one timestep of a whole chain model in one jitted call.

For small batches a step's cost is dominated by per-call overhead (Numba's dispatch is about
180 ns plus 45 ns per array argument), so the stream packs its model once into two flat arrays
and every step is a single call of :func:`chain_step` with four arguments, whatever the model:

* ``model`` (float32, flat): the program, then the weights. The program is (1 + stages, NCOLS)
  int64 stored bit for bit in the first floats (two per entry): row 0 holds sizes and offsets (``M_*``), then one
  row per op -- its kind, sizes, activation ids, flags and the offsets of its weights (from
  ``M_BASE``, where the weights start) and of its state in ``memory``. The weights: every weight
  array of the model, each 64-byte aligned, then per op its float parameters (cell clip, mask
  value). One array rather than an int program and float weights: one argument less to dispatch;
* ``x`` (B, F) and ``y`` (B, O);
* ``memory``: the stream's own floats. First its state, ``B * state_width`` floats in blocks of
  (B, size), one block per quantity -- each recurrent layer's h, c and previous output, then the
  model's last output (which ``forecast`` feeds back). Blocks rather than rows per stream, so
  that the many-streams path and the block kernels see each state as a contiguous (B, size)
  matrix for BLAS. Then scratch: ping-pong buffers for intermediate vectors, the gate
  pre-activations.

Four arguments, because each one costs: Numba's dispatcher types and unboxes every argument
before the kernel starts (tools/bench reports the floor with a no-op function).

One compiled function serves every model, so the on-disk cache holds it once. The per-stage code
calls the same ``*_update`` functions as the other kernels, so all paths compute the same terms.
"""

from __future__ import annotations

import numpy as np
import threading

from numba import njit, types

from ..ir import ACTIVATION_IDS, Activation, Dense, Masking, Recurrent
from ._config import JIT
from ._linalg import accumulate, copy_row, project
from .activations import activate_row
from .gru import gru_update
from .lstm import lstm_update
from .simple_rnn import simple_update

# Op kinds.
LSTM, GRU, SIMPLE, DENSE, ACTIVATION, MASKING = range(6)
_CELL_KIND = {"lstm": LSTM, "gru": GRU, "simple": SIMPLE}
# Program columns.
OP, IN, OUT, UNITS, W, U, B, RB, PEEP, PROJ, UH, ACT, RACT, FLAGS, H, C, PREV = range(17)
NCOLS = 17
# Flags.
RESET_AFTER, ZERO_OUTPUT, USES_MASK, STANDARD, PROJECTED = 1, 2, 4, 8, 16
# Param columns.
CLIP, MASK_VALUE = 0, 1
# Entries of program row 0.
M_STAGES, M_IN, M_OUT, M_PING, M_PONG, M_Z, M_HIDDEN, M_LAST, M_WIDTH, M_PARAMS, M_SCRATCH, M_BASE = range(12)

_ALIGN = 16  # floats: 64 bytes


def is_standard(layer: Recurrent) -> bool:
    """The common case the kernels vectorise: tanh and sigmoid (tanh alone for SimpleRNN), no
    peepholes, no clip."""
    recurrent_ok = layer.cell == "simple" or layer.recurrent_activation == "sigmoid"
    return layer.activation == "tanh" and recurrent_ok and layer.peephole is None and layer.cell_clip is None


def split_recurrent(layer: Recurrent):
    """``(recurrent_main, recurrent_candidate)``: for GRU without reset_after, U's z, r blocks and
    its h block apart (the candidate's product needs r first); otherwise U and an empty array."""
    if layer.cell == "gru" and not layer.reset_after:
        u = layer.recurrent_kernel
        return np.ascontiguousarray(u[:, : 2 * layer.units]), np.ascontiguousarray(u[:, 2 * layer.units :])
    return layer.recurrent_kernel, np.zeros((0, 0), np.float32)


class ChainProgram:
    """A chain of ops (the nodes of a streamable ModelSpec) packed for :func:`chain_step`.

    ``blocks`` lists, per recurrent stage, the column offsets of its h, c and previous output
    in the state (see :meth:`views`); the stream uses them for its other paths and get/set_state.
    """

    def __init__(self, nodes, input_features: int):
        chunks: list[np.ndarray] = []
        self._size = 0

        def place(array) -> int:
            array = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
            offset = self._size
            padded = -(-array.size // _ALIGN) * _ALIGN
            chunk = np.zeros(padded, np.float32)
            chunk[: array.size] = array
            chunks.append(chunk)
            self._size += padded
            return offset

        rows, params = [], []
        self.blocks = []  # per recurrent stage: {"h": (column, size), "c": ..., "prev": ...}
        width = input_features
        state_width = 0
        widest = max_z = max_hidden = input_features
        for node in nodes:
            op = node.op
            row = np.full(NCOLS, -1, np.int64)
            row[IN] = width
            param = [np.inf, 0.0]
            if isinstance(op, Recurrent):
                main, candidate = split_recurrent(op)
                units, out = op.units, op.output_size
                row[OP] = _CELL_KIND[op.cell]
                row[OUT], row[UNITS] = out, units
                row[W] = place(op.kernel)
                row[U] = place(main)
                row[UH] = place(candidate) if candidate.size else place(np.zeros(0))
                row[B] = place(op.bias if op.bias is not None else np.zeros(op.gates * units))
                row[RB] = place(op.recurrent_bias if op.recurrent_bias is not None else np.zeros(op.gates * units))
                row[PEEP] = place(op.peephole if op.peephole is not None else np.zeros((3, units)))
                row[PROJ] = place(op.projection) if op.projection is not None else place(np.zeros(0))
                row[ACT] = ACTIVATION_IDS[op.activation]
                row[RACT] = ACTIVATION_IDS[op.recurrent_activation]
                row[FLAGS] = ((RESET_AFTER if op.reset_after else 0) | (ZERO_OUTPUT if op.zero_output_for_mask else 0)
                              | (USES_MASK if node.mask else 0) | (STANDARD if is_standard(op) else 0)
                              | (PROJECTED if op.projection is not None else 0))
                blocks = {"h": (state_width, out)}
                row[H] = state_width
                state_width += out
                if op.cell == "lstm":
                    row[C] = state_width
                    blocks["c"] = (state_width, units)
                    state_width += units
                row[PREV] = state_width
                blocks["prev"] = (state_width, out)
                state_width += out
                self.blocks.append(blocks)
                param[0] = np.inf if op.cell_clip is None else op.cell_clip
                max_z = max(max_z, 6 * units if op.cell == "gru" else 4 * units)
                max_hidden = max(max_hidden, units)
                width = out
            elif isinstance(op, Dense):
                row[OP], row[OUT] = DENSE, op.output_size
                row[W] = place(op.kernel)
                row[B] = place(op.bias if op.bias is not None else np.zeros(op.output_size))
                row[ACT] = ACTIVATION_IDS[op.activation]
                width = op.output_size
            elif isinstance(op, Activation):
                row[OP], row[OUT], row[ACT] = ACTIVATION, width, ACTIVATION_IDS[op.activation]
            elif isinstance(op, Masking):
                row[OP], row[OUT] = MASKING, width
                param[1] = op.mask_value
            else:  # pragma: no cover - streamable_problem refuses the rest
                raise TypeError(f"{type(op).__name__} cannot be chained")
            widest = max(widest, width)
            rows.append(row)
            params.append(param)
        self.output_features = width
        self.last_output = (state_width, width)
        self.state_width = state_width + width
        params_offset = place(np.array(params, np.float32))
        self.weights = np.concatenate(chunks)
        ping, pong = 0, widest
        z_offset = 2 * widest
        hidden = z_offset + max_z
        self.scratch_size = hidden + max_hidden
        program_size = -(-2 * (1 + len(rows)) * NCOLS // _ALIGN) * _ALIGN  # floats; the weights stay aligned
        meta = np.zeros(NCOLS, np.int64)
        meta[: M_BASE + 1] = [len(rows), input_features, width, ping, pong, z_offset, hidden, state_width,
                              widest, params_offset, self.scratch_size, program_size]
        self.program = np.vstack([meta] + rows).astype(np.int64)
        self.packed = np.zeros(program_size + self.weights.size, np.float32)
        self.packed[: 2 * self.program.size] = self.program.reshape(-1).view(np.float32)
        self.packed[program_size:] = self.weights

    def new_memory(self, batch: int) -> np.ndarray:
        """A stream's floats: its state (zero) and its scratch; see the module docstring."""
        return np.zeros(batch * self.state_width + self.scratch_size, np.float32)

    @staticmethod
    def view(state: np.ndarray, batch: int, block: tuple[int, int]) -> np.ndarray:
        """The (batch, size) matrix of one state block: a contiguous view, no copy."""
        column, size = block
        return state[batch * column : batch * (column + size)].reshape(batch, size)


# A fixed signature: Numba then refuses (TypeError) any other argument types instead of compiling
# a new specialisation -- the stream's cheap type check, and no float64 promotion by accident.
_F32_1D, _F32_2D = types.float32[::1], types.float32[:, ::1]
CHAIN_STEP_SIGNATURE = types.int64(_F32_1D, _F32_2D, _F32_2D, _F32_1D)


def _chain_step(model, x, y, memory):
    """One timestep of every stream: ``x`` (B, F) -> ``y`` (B, O); the state in ``memory`` updated.

    Returns 0, or 1 without touching anything when a shape does not fit (the caller then
    reports the problem): the check costs a few comparisons, so it stays in the hot path.
    """
    ints = model.view(np.int64)  # the program's bits (see the module docstring)
    stages = ints[M_STAGES]
    program = ints[: (1 + stages) * NCOLS].reshape((1 + stages, NCOLS))
    meta = program[0]
    weights = model[meta[M_BASE] :]
    batch = x.shape[0]
    state_size = batch * (meta[M_LAST] + meta[M_OUT])
    if (x.shape[1] != meta[M_IN] or y.shape[0] != batch or y.shape[1] != meta[M_OUT]
            or memory.shape[0] != state_size + meta[M_SCRATCH]):
        return 1
    state = memory[:state_size]
    scratch = memory[state_size:]
    params = weights[meta[M_PARAMS] : meta[M_PARAMS] + 2 * stages].reshape((stages, 2))
    program = program[1:]
    width = meta[M_WIDTH]
    buffers = (scratch[meta[M_PING] : meta[M_PING] + width], scratch[meta[M_PONG] : meta[M_PONG] + width])
    z_all = scratch[meta[M_Z] : meta[M_HIDDEN]]
    hidden_all = scratch[meta[M_HIDDEN] :]
    for s in range(batch):
        current = x[s]
        keep = True
        which = 0
        for k in range(stages):
            op = program[k, OP]
            n_in = program[k, IN]
            n_out = program[k, OUT]
            if op == MASKING:
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
                    kernel = weights[program[k, W] : program[k, W] + n_in * gates * units].reshape((n_in, gates * units))
                    bias = weights[program[k, B] : program[k, B] + gates * units]
                    if op == LSTM:
                        z = z_all[: 4 * units]
                        recurrent = weights[program[k, U] : program[k, U] + n_out * 4 * units].reshape((n_out, 4 * units))
                        project(z, bias, current, kernel)
                        accumulate(z, h, recurrent)
                        peephole = weights[program[k, PEEP] : program[k, PEEP] + 3 * units].reshape((3, units))
                        if flags & PROJECTED:
                            projection = weights[program[k, PROJ] : program[k, PROJ] + units * n_out].reshape(
                                (units, n_out))
                        else:
                            projection = weights[0:0].reshape((0, 0))
                        start = batch * program[k, C] + s * units
                        c = state[start : start + units]
                        lstm_update(z, h, c, peephole, projection, clip, program[k, ACT], program[k, RACT], standard,
                                    hidden_all[:units])
                    elif op == GRU:
                        xw = z_all[: 3 * units]
                        hu = z_all[3 * units : 6 * units]
                        project(xw, bias, current, kernel)
                        reset_after = (flags & RESET_AFTER) != 0
                        if reset_after:
                            recurrent = weights[program[k, U] : program[k, U] + units * 3 * units].reshape(
                                (units, 3 * units))
                            project(hu, weights[program[k, RB] : program[k, RB] + 3 * units], h, recurrent)
                            candidate = weights[0:0].reshape((0, 0))
                        else:
                            recurrent = weights[program[k, U] : program[k, U] + units * 2 * units].reshape(
                                (units, 2 * units))
                            hu[: 2 * units] = np.float32(0.0)
                            accumulate(hu[: 2 * units], h, recurrent)
                            candidate = weights[program[k, UH] : program[k, UH] + units * units].reshape((units, units))
                        gru_update(xw, hu, h, candidate, reset_after, clip, program[k, ACT], program[k, RACT],
                                   standard)
                    else:
                        z = z_all[:units]
                        recurrent = weights[program[k, U] : program[k, U] + units * units].reshape((units, units))
                        project(z, bias, current, kernel)
                        accumulate(z, h, recurrent)
                        simple_update(z, h, clip, program[k, ACT], standard)
                    copy_row(previous, h)
                elif flags & ZERO_OUTPUT:
                    previous[:] = np.float32(0.0)
                current = previous
        copy_row(y[s], current)
        start = batch * meta[M_LAST] + s * meta[M_OUT]
        copy_row(state[start : start + meta[M_OUT]], current)
    return 0


_compiled = None
_compile_lock = threading.Lock()


def compiled_chain_step():
    """The jitted :func:`_chain_step`, compiled (or loaded from Numba's cache) on first use.

    Not at import: with a fixed signature Numba compiles when the decorator runs, and an empty
    cache makes that take tens of seconds -- which ``import edgernn`` for a ``convert`` or an
    ``info`` must not pay. The first stream pays it instead (``edgernn warmup`` at install or boot).
    """
    global _compiled
    if _compiled is None:
        with _compile_lock:
            if _compiled is None:
                _compiled = njit(CHAIN_STEP_SIGNATURE, **JIT)(_chain_step)
    return _compiled


def __getattr__(name):
    # ``chain_step`` reads as a module attribute, compiled on first access (see above).
    if name == "chain_step":
        return compiled_chain_step()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
