"""The fused step's program: a streamable model (a chain, or a graph whose branches fork and merge)
packed into one flat float32 array.

No Numba here: packing a model, and the stream's views of its state, need only NumPy, so a stream
can start on the ahead-of-time compiled step (:mod:`edgernn.kernels.aot`) without importing Numba.
The layout is described in :mod:`edgernn.kernels.chain`, the kernel that reads it.
"""

from __future__ import annotations

import numpy as np

from ..ir import (ACTIVATION_IDS, Activation, Affine, Concatenate, Conv1D, Dense, Embedding, Flatten, LayerNorm, Masking,
                  Merge, Pad1D, Pooling1D, Recurrent, Reshape, Standardize, UpSample1D)

# Op kinds. CONV .. GLOBAL_AVG are the windowed stages of edgernn.kernels.window (same ids there;
# consecutive, as chain.py tests ``CONV <= op <= GLOBAL_AVG``);
# LAYER_NORM, STANDARDIZE, EMBED the per-row stages of edgernn.kernels.rowwise; MERGE one fold of
# a Merge (``dst = src MODE src2``, or ``dst = src / count`` for the end of an average), COPY one
# input of a Concatenate copied into its columns of the output; DELAY a Pad1D's windowed stage
# (edgernn.kernels.window: it crops, and delays by the rows cropped at the right); REPEAT an
# UpSample1D: its input copied to its output, then every row after it run REPEATS times in all
# (the kernel jumps back to the row after it; the repeats done so far in the row's KEEPS entry).
(LSTM, GRU, SIMPLE, DENSE, ACTIVATION, MASKING, CONV, MAX_POOL, AVG_POOL, GLOBAL_MAX, GLOBAL_AVG, AFFINE, LAYER_NORM,
 STANDARDIZE, EMBED, MERGE, COPY, DELAY, REPEAT) = range(19)
# A MERGE row's MODE.
MERGE_ADD, MERGE_SUBTRACT, MERGE_MULTIPLY, MERGE_MAXIMUM, MERGE_MINIMUM, MERGE_DIVIDE = range(6)
MERGE_IDS = {"add": MERGE_ADD, "average": MERGE_ADD, "subtract": MERGE_SUBTRACT, "multiply": MERGE_MULTIPLY,
             "maximum": MERGE_MAXIMUM, "minimum": MERGE_MINIMUM}
COUNT_LIMIT = 16777216.0  # 2**24: a global pooling's count saturates there (float32 counts exactly up to it)
_CELL_KIND = {"lstm": LSTM, "gru": GRU, "simple": SIMPLE}
# Program columns. A windowed stage: W, B its kernel (k, C/G, F) and bias; KSIZE, DIL, GROUPS the
# kernel's (pool_size, 1, 1 for pooling); NEED, STRIDE when it emits; RING, CNT the columns of its
# state blocks (window.py's ``ring`` and ``counters``). Affine: W scale, B offset. LayerNorm: W gamma, B beta
# (present per the flags), NORM its kind, the param EPSILON. Standardize: W mean, B std. Embedding:
# W the table (vocab, dim), VOCAB its rows, IN 1 (the code, a whole number held in a float).
# Every row: SRC (and SRC2, a MERGE's second operand) the scratch offset of its input's slot, DST of
# its output's (each tensor has a slot of its own, so a branch's result waits there for its merge);
# GATE the row whose result's freshness this row's input has (-1: the model input, always fresh;
# a row whose input did not emit does not run, and does not emit either); KEEP_ROW the row that
# made the mask a recurrent row reads. Sizes computed once here, not every step: PADDED and
# RPADDED a recurrent row's products' widths padded to whole panels, RING_SIZE and CNT_SIZE a
# windowed row's state block widths per stream.
(OP, IN, OUT, UNITS, W, U, B, RB, PEEP, PROJ, UH, ACT, RACT, FLAGS, H, C, PREV, KSIZE, DIL, GROUPS, NEED, STRIDE, RING,
 CNT, SRC, SRC2, DST, GATE, KEEP_ROW, PADDED, RPADDED, RING_SIZE, CNT_SIZE) = range(33)
NCOLS = 33
MODE = ACT  # a MERGE row's mode (it has no activation)
NORM = VOCAB = UNITS  # the column a LayerNorm's kind, an Embedding's vocab are in (they have no units)
REPEATS = KSIZE  # the column of a REPEAT row's size
# Flags.
RESET_AFTER, ZERO_OUTPUT, USES_MASK, STANDARD, PROJECTED, HAS_GAMMA, HAS_BETA, MASK_ZERO = 1, 2, 4, 8, 16, 32, 64, 128
# LayerNorm kinds (ir.NORM_KINDS, in the NORM column).
NORM_LAYER, NORM_RMS_SCALING, NORM_RMS = range(3)
NORM_IDS = {"layer": NORM_LAYER, "rms_scaling": NORM_RMS_SCALING, "rms": NORM_RMS}
# Param columns.
CLIP, MASK_VALUE = 0, 1
EPSILON = CLIP  # a LayerNorm's
# Entries of program row 0. M_EMIT: the column of the (B, 1) block saying whether the last step emitted.
# M_ZERO: the offset (in the weights) of zeros as long as the widest padded recurrent product.
# M_X_SLOT, M_Y_SLOT: the scratch offsets of the model input's slot and the output's; M_Y_ROW the
# row that makes the output (-1: the input); M_FRESH: the scratch offset of one float per row,
# whether the row emitted in this stream's step, then one per row, the mask (keep) it made (a
# REPEAT row's: its repeats so far). M_LAST_REPEAT: the last REPEAT row (-1: none).
(M_STAGES, M_IN, M_OUT, M_X_SLOT, M_Y_SLOT, M_Z, M_HIDDEN, M_LAST, M_Y_ROW, M_PARAMS, M_SCRATCH, M_BASE, M_EMIT, M_ZERO,
 M_FRESH, M_LAST_REPEAT) = range(16)

_ALIGN = 16  # floats: 64 bytes
RECURRENT_PANEL = 32  # columns per panel of a packed recurrent kernel (edgernn.kernels._matvec.PANEL)


def _or_zeros(array, shape):
    return np.zeros(shape, np.float32) if array is None else array


def dense_kernel_args(op):
    """Kernel arguments of a Dense op that do not change between calls."""
    return op.kernel, _or_zeros(op.bias, op.output_size), ACTIVATION_IDS[op.activation]


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


def aligned_zeros(shape) -> np.ndarray:
    """float32 zeros whose first element is 64-byte aligned (a cache line; NumPy only promises 16).

    For the buffers and packed weights of the many-streams step: its 32-byte vector loads split
    across cache lines at other offsets, and in a manual test (not in tools/bench) the same
    400-stream step of model (b) took 120-158 µs depending on where its arrays happened to land.
    """
    count = int(np.prod(shape))
    raw = np.zeros(count + _ALIGN, np.float32)
    start = (-raw.ctypes.data % (4 * _ALIGN)) // 4
    return raw[start : start + count].reshape(shape)


def pack_columns(matrix: np.ndarray, width: int) -> np.ndarray:
    """``B`` (K, N) as column panels of ``width`` (a multiple of 16) columns: (ceil(N / width),
    K, width) float32, 64-byte aligned, the last panel's missing columns zero; a vector (N,) as
    (ceil(N / width), width). The packed form of the products on weights packed once
    (:mod:`edgernn.kernels._gemm`, :mod:`edgernn.kernels._matvec`, and the fused step's
    recurrent kernels here)."""
    if matrix.ndim == 1:
        vector = pack_columns(matrix[None, :], width)
        return vector.reshape(vector.shape[0], width)
    depth, columns = matrix.shape
    panels = -(-columns // width)
    padded = np.zeros((depth, panels * width), np.float32)
    padded[:, :columns] = matrix
    packed = aligned_zeros((panels, depth, width))  # each panel row whole cache lines
    packed[...] = padded.reshape(depth, panels, width).transpose(1, 0, 2)
    return packed


def _padded(vector, columns: int) -> np.ndarray:
    """``vector`` (``columns``,), or zeros if None, zero-padded to :func:`padded_width`."""
    out = np.zeros(padded_width(columns), np.float32)
    if vector is not None:
        out[:columns] = vector
    return out


def padded_width(columns: int) -> int:
    """Entries of one row of a product on recurrent panels (:mod:`edgernn.kernels._matvec`):
    ``columns`` rounded up to a whole panel of ``RECURRENT_PANEL``."""
    return -(-columns // RECURRENT_PANEL) * RECURRENT_PANEL


def window_kind(op) -> int:
    """The program's op id of a Conv1D, Pooling1D or Pad1D: CONV, MAX_POOL, AVG_POOL, GLOBAL_MAX,
    GLOBAL_AVG or DELAY."""
    if isinstance(op, Conv1D):
        return CONV
    if isinstance(op, Pad1D):
        return DELAY
    if op.global_pool:
        return GLOBAL_MAX if op.kind == "max" else GLOBAL_AVG
    return MAX_POOL if op.kind == "max" else AVG_POOL


def window_geometry(op) -> tuple[int, int, int, int, int]:
    """``(kernel_size, dilation, groups, strides, need)`` of a streamable Conv1D or Pooling1D: its
    taps and their spacing, and when it emits (see :mod:`edgernn.kernels.window`): ``need`` is the
    number of inputs before the first full window, 0 for a causal convolution (its left padding is
    the zeros a fresh window holds). A Pad1D's: a window of the ``right`` rows it crops at the
    end plus the current one, whose oldest row it emits once the ``left`` rows it crops at the
    start have passed too (its zero rows are not steps: the stream starts its later stages from
    the state they leave)."""
    if isinstance(op, Pad1D):
        crop_left, crop_right = max(-op.left, 0), max(-op.right, 0)
        return crop_right + 1, 1, 1, 1, crop_left + crop_right
    if isinstance(op, Conv1D):
        need = 0 if op.padding == "causal" else op.span - 1
        return op.kernel_size, op.dilation_rate, op.groups, op.strides, need
    if op.global_pool:
        return 1, 1, 1, 1, 0
    return op.pool_size, 1, 1, op.strides, op.pool_size - 1


class ChainProgram:
    """A streamable model's nodes (in the spec's order, every input made before it is read) packed
    for :func:`chain_step`: one program row per op (a Merge of n inputs takes n - 1 rows, and one
    more for an average; a Concatenate one per input).

    ``blocks`` lists, per recurrent stage, the column offsets of its h, c and previous output
    in the state (see :meth:`views`); the stream uses them for its other paths and get/set_state.
    ``windows`` does the same per Conv1D or pooling stage (its ring and counters, or a global
    pooling's running value and count: :mod:`edgernn.kernels.window`); ``last_output`` and
    ``emitted`` are the model's last output and the (B, 1) flag of whether the last step emitted.
    ``input_name`` and ``output_name`` default to the first node's input and the last node's output.
    A model of several inputs gives ``input_name`` as the tuple of their names, ``input_features``
    as the tuple of their features: a step's ``x`` then holds each input's features side by side,
    in that order, and each input's slot is its columns of ``x``'s copy.
    """

    def __init__(self, nodes, input_features, input_name=None, output_name: str | None = None):
        nodes = list(nodes)
        input_name = input_name if input_name is not None else (nodes[0].inputs[0] if nodes else "x")
        output_name = output_name if output_name is not None else (nodes[-1].outputs[0] if nodes else input_name)
        names = (input_name,) if isinstance(input_name, str) else tuple(input_name)
        features = (input_features,) if isinstance(input_features, (int, np.integer)) else tuple(input_features)
        input_features = sum(features)
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
        self.windows = []  # per windowed stage: {"inputs": ..., "counters": ...} or {"pooled": ..., "count": ...}
        # Per tensor: its width, the scratch offset of its slot, the row that makes it (-1: the input).
        widths = dict(zip(names, features))
        slots = dict(zip(names, np.cumsum((0,) + features[:-1]).tolist()))  # the inputs' columns of x's copy
        made_by = dict.fromkeys(names, -1)
        slot_end = -(-input_features // _ALIGN) * _ALIGN
        keep_rows = {}  # mask tensor -> the row that makes it
        state_width = 0
        max_z = max_hidden = 0
        last_repeat = -1
        widest_product = 0
        for node in nodes:
            op = node.op
            width = widths[node.inputs[0]]
            row = np.full(NCOLS, -1, np.int64)
            row[IN] = width
            row[SRC], row[GATE] = slots[node.inputs[0]], made_by[node.inputs[0]]
            row[KEEP_ROW] = keep_rows[node.mask] if node.mask else -1
            param = [np.inf, 0.0]
            node_rows = [row]  # a merge's folds, a concatenation's copies add more
            if isinstance(op, Recurrent):
                main, candidate = split_recurrent(op)
                units, out = op.units, op.output_size
                row[OP] = _CELL_KIND[op.cell]
                row[OUT], row[UNITS] = out, units
                # W and U packed in panels for _matvec's products, the biases they start from padded.
                row[W] = place(pack_columns(np.asarray(op.kernel, np.float32), RECURRENT_PANEL))
                row[U] = place(pack_columns(np.asarray(main, np.float32), RECURRENT_PANEL))
                row[PADDED] = padded_width(op.gates * units)
                row[RPADDED] = padded_width(main.shape[1])
                widest_product = max(widest_product, row[PADDED])
                row[UH] = place(candidate) if candidate.size else place(np.zeros(0))
                row[B] = place(_padded(op.bias, op.gates * units))
                row[RB] = place(_padded(op.recurrent_bias, op.gates * units))
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
                # GRU: x W + b and h U + b_U apart; LSTM, SimpleRNN: all gates in one. Padded widths.
                max_z = max(max_z, (2 if op.cell == "gru" else 1) * row[PADDED])
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
            elif isinstance(op, UpSample1D):  # every layer after it reads only from it (streamable_problem)
                row[OP], row[OUT], row[REPEATS] = REPEAT, width, op.size
                last_repeat = len(rows)
            elif isinstance(op, (Flatten, Reshape)):  # of a vector, or keeping every row (streamable_problem): identity
                row[OP], row[OUT], row[ACT] = ACTIVATION, width, ACTIVATION_IDS["linear"]
            elif isinstance(op, Affine):
                row[OP], row[OUT] = AFFINE, width
                row[W], row[B] = place(op.scale), place(op.offset)
            elif isinstance(op, LayerNorm):
                row[OP], row[OUT], row[NORM] = LAYER_NORM, width, NORM_IDS[op.kind]
                row[W] = place(_or_zeros(op.gamma, 0))
                row[B] = place(_or_zeros(op.beta, 0))
                row[FLAGS] = (HAS_GAMMA if op.gamma is not None else 0) | (HAS_BETA if op.beta is not None else 0)
                param[EPSILON] = op.epsilon
            elif isinstance(op, Standardize):
                row[OP], row[OUT] = STANDARDIZE, width
                row[W], row[B] = place(op.mean), place(op.std)
            elif isinstance(op, Embedding):  # first, on the codes (streamable_problem): width is 1
                row[OP], row[OUT], row[VOCAB] = EMBED, op.output_size, op.vocab
                row[W] = place(op.embeddings)
                row[FLAGS] = MASK_ZERO if op.mask_zero else 0
                width = op.output_size
            elif isinstance(op, (Conv1D, Pooling1D, Pad1D)):
                row[KSIZE], row[DIL], row[GROUPS], row[STRIDE], row[NEED] = window_geometry(op)
                row[OP], row[OUT], row[ACT] = window_kind(op), width, ACTIVATION_IDS["linear"]
                if isinstance(op, Conv1D):
                    row[OUT] = op.output_size
                    row[W] = place(op.kernel)
                    row[B] = place(op.bias if op.bias is not None else np.zeros(op.output_size))
                    row[ACT] = ACTIVATION_IDS[op.activation]
                    names = ("inputs", width * (op.span - 1)), ("counters", 3)
                elif isinstance(op, Pooling1D) and op.global_pool:
                    names = ("pooled", width), ("count", 1)
                else:  # the last pool_size - 1 inputs; a Pad1D's: the rows it crops at the right
                    names = ("inputs", width * int(row[KSIZE] - 1)), ("counters", 3)
                blocks = {}
                for column, size_column, (name, size) in zip((RING, CNT), (RING_SIZE, CNT_SIZE), names):
                    row[column], row[size_column] = state_width, size
                    blocks[name] = (state_width, size)
                    state_width += size
                self.windows.append(blocks)
                width = row[OUT]
            elif isinstance(op, Merge):  # x_1 op x_2, then (that) op x_3, ...; an average divided last
                row[OP], row[OUT], row[MODE] = MERGE, width, MERGE_IDS[op.mode]
                row[SRC2] = slots[node.inputs[1]]
                for name in node.inputs[2:]:
                    node_rows.append(row.copy())
                    node_rows[-1][SRC2] = slots[name]
                if op.mode == "average":
                    node_rows.append(row.copy())
                    node_rows[-1][MODE] = MERGE_DIVIDE
            elif isinstance(op, Concatenate):  # over features (streamable_problem refuses time): copies side by side
                row[OP] = COPY
                node_rows = []
                for name in node.inputs:
                    part = row.copy()
                    part[SRC], part[IN] = slots[name], widths[name]
                    node_rows.append(part)
                width = sum(widths[name] for name in node.inputs)
            else:  # pragma: no cover - streamable_problem refuses the rest
                raise TypeError(f"{type(op).__name__} cannot be streamed")
            # The output's slot. The folds after a merge's first read its result; a concatenation's
            # copies go side by side into it.
            offset = 0
            for k, part in enumerate(node_rows):
                part[DST] = slot_end + offset
                if isinstance(op, Merge) and k:
                    part[SRC] = slot_end
                if isinstance(op, Concatenate):
                    part[OUT] = part[IN]
                    offset += part[IN]
                rows.append(part)
                params.append([float(len(node.inputs)), 0.0] if part[OP] == MERGE and part[MODE] == MERGE_DIVIDE
                              else param)
            slots[node.outputs[0]], widths[node.outputs[0]] = slot_end, width
            made_by[node.outputs[0]] = len(rows) - 1
            if isinstance(op, (Masking, Embedding)) and len(node.outputs) > 1:
                keep_rows[node.outputs[1]] = len(rows) - 1
            slot_end += -(-width // _ALIGN) * _ALIGN
        width = widths[output_name]
        self.output_features = width
        self.last_output = (state_width, width)
        self.emitted = (state_width + width, 1)
        self.state_width = state_width + width + 1
        params_offset = place(np.array(params, np.float32).reshape(-1, 2))
        zero_offset = place(np.zeros(widest_product))
        self.weights = np.concatenate(chunks)
        z_offset = slot_end
        hidden = z_offset + max_z
        fresh = hidden + max_hidden
        self.scratch_size = fresh + 2 * len(rows)
        program_size = -(-2 * (1 + len(rows)) * NCOLS // _ALIGN) * _ALIGN  # floats; the weights stay aligned
        meta = np.zeros(NCOLS, np.int64)
        meta[: M_LAST_REPEAT + 1] = [len(rows), input_features, width, 0, slots[output_name], z_offset, hidden,
                               state_width, made_by[output_name], params_offset, self.scratch_size, program_size,
                               self.emitted[0], zero_offset, fresh, last_repeat]
        self.program = np.vstack([meta] + rows).astype(np.int64)
        # 64-byte aligned: the packed recurrent panels are read with aligned loads (_matvec._panel).
        self.packed = aligned_zeros(program_size + self.weights.size)
        self.packed[: 2 * self.program.size] = self.program.reshape(-1).view(np.float32)
        self.packed[program_size:] = self.weights

    def new_memory(self, batch: int) -> np.ndarray:
        """A stream's floats: its state (zero) and its scratch, 64-byte aligned; see the module
        docstring."""
        return aligned_zeros(batch * self.state_width + self.scratch_size)

    @staticmethod
    def view(state: np.ndarray, batch: int, block: tuple[int, int]) -> np.ndarray:
        """The (batch, size) matrix of one state block: a contiguous view, no copy."""
        column, size = block
        return state[batch * column : batch * (column + size)].reshape(batch, size)
