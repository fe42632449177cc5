"""Model and Stream: what a user holds after ``edgernn.convert`` or ``edgernn.load``.

``Model.predict`` runs whole sequences from zero state, like the source framework's predict.
``Model.stream(batch_size)`` returns a :class:`Stream`: Keras ``stateful=True`` semantics, where each
batch row is an independent stream whose state is carried from call to call until reset.

A stream owns all its memory -- states, previous outputs, scratch and the buffers of one step --
allocated once when it is made, so ``step`` allocates nothing but its returned copy (and nothing
at all with ``out=``). Weights are shared read-only between all streams of a model.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import graph, ir, kernels, statefile, store
from .errors import InvalidInput, NotStreamable
from .graph import streamable_problem
from .kernels.program import aligned_zeros

_F32 = np.float32
_LINEAR = ir.ACTIVATION_IDS["linear"]
_RELU = ir.ACTIVATION_IDS["relu"]


def _as_float32(x, what: str) -> np.ndarray:
    """``x`` as a float32 array; integer and float64 inputs are converted, anything else refused."""
    try:
        array = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InvalidInput(f"{what} is not an array: {exc}") from None
    if array.dtype.kind not in "fiub":
        raise InvalidInput(f"{what} has dtype {array.dtype}; expected numbers (float32 preferred)")
    return array.astype(_F32, copy=False)


class Model:
    """A converted recurrent model. ``spec`` is its :class:`~edgernn.ir.ModelSpec`."""

    def __init__(self, spec: ir.ModelSpec):
        self.spec = spec

    # -- whole sequences ---------------------------------------------------------------------
    def predict(self, *inputs):
        """What the source framework's ``predict`` returns, from zero state.

        ``x``: ``(batch, T, features)`` (or ``(batch, features)`` for a vector input). Several
        inputs are given as several arguments or one list. Returns one array, or a list of arrays
        for a model with several outputs.
        """
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) and len(self.spec.inputs) > 1:
            inputs = tuple(inputs[0])
        if len(inputs) != len(self.spec.inputs):
            raise InvalidInput(f"the model takes {len(self.spec.inputs)} input(s), got {len(inputs)}")
        arrays = []
        for spec_input, x in zip(self.spec.inputs, inputs):
            array = _as_float32(x, f"input {spec_input.name!r}")
            expected = ("batch", "T", spec_input.features)[3 - spec_input.rank :]
            codes = spec_input.dtype == "int"  # (batch, T) codes of any T
            if codes:
                expected = ("batch", "T")
            if array.ndim != spec_input.rank or (array.shape[-1] != spec_input.features and not codes):
                raise InvalidInput(f"input {spec_input.name!r} must have shape {expected}, got {array.shape}")
            arrays.append(array)
        if len({a.shape[0] for a in arrays}) > 1:
            raise InvalidInput(f"inputs differ in batch size: {[a.shape[0] for a in arrays]}")
        for spec_input, array in zip(self.spec.inputs, arrays):
            # An output that is the last step of an empty sequence does not exist: refused, not the
            # zero state's output. A sequence output of an empty sequence is an empty sequence.
            if array.ndim + (spec_input.dtype == "int") == 3 and array.shape[1] == 0 and self._has_last_step_output():
                raise InvalidInput(f"input {spec_input.name!r} has no timesteps (shape {array.shape}): the model "
                                   "returns the output of the last one")
        outputs = graph.execute(self.spec, arrays, kernels)
        return outputs[0] if len(outputs) == 1 else outputs

    def _has_last_step_output(self) -> bool:
        """Whether an output of the model is per sequence (rank 2), not per timestep."""
        return any(self.spec.tensor_shape(name)[0] == 2 for name in self.spec.outputs)

    # -- streams -------------------------------------------------------------------------------
    def stream(self, batch_size: int = 1) -> "Stream":
        """A stateful stream of ``batch_size`` independent rows, all starting from zero state."""
        return Stream(self, batch_size)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the model's graph and weights: its identity, e.g. for saved stream states."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = store.fingerprint(self.spec)
        return self._fingerprint

    def _chain_program(self) -> "kernels.ChainProgram":
        """The model packed for the fused step kernel, made once and shared by all its streams."""
        if getattr(self, "_program", None) is None:
            inputs = self.spec.inputs
            if len(inputs) == 1:
                self._program = kernels.ChainProgram(self.spec.nodes, self.step_features, inputs[0].name,
                                                     self.spec.outputs[0])
            else:  # several: side by side in a step's x
                self._program = kernels.ChainProgram(self.spec.nodes, tuple(i.features for i in inputs),
                                                     tuple(i.name for i in inputs), self.spec.outputs[0])
        return self._program

    @property
    def step_features(self) -> int:
        """The features of one timestep of a stream's input: 1 for integer codes (an Embedding's); for a
        model of several inputs, all of theirs (a step holds them side by side)."""
        return 1 if self.spec.inputs[0].dtype == "int" else sum(i.features for i in self.spec.inputs)

    def quantize(self, calibration_x, scheme: str = "int8"):
        """The model in a firmware scheme ("int8", "int8-weights", "float32"), calibrated on
        ``calibration_x``: same API as a Model, computing the C runtime's arithmetic
        (see :mod:`edgernn.quantize`)."""
        from .quantize import quantize  # lazy: it imports Numba, which a stream on the ahead-of-time step must not

        return quantize(self, calibration_x, scheme)

    def warmup(self, ahead_of_time: bool = False) -> "Model":
        """Compile (or load from Numba's on-disk cache) every kernel this model uses, once, now.

        ``ahead_of_time``: also build the fused step as an extension module for this CPU (see
        :mod:`edgernn.kernels.aot`), so a later process's stream starts without importing Numba;
        raises :class:`edgernn.kernels.aot.AotUnavailable` naming what is missing to build it.
        """
        if ahead_of_time:
            from .kernels import aot  # lazy: a leaf (no Numba at import) that only streams and this option use

            aot.build_step()
        batch, steps = 2, 2
        while _time_rows(self.spec, steps) < 1 and steps < 1 << 16:  # valid windows: a sequence that fills them
            steps *= 2
        if self.spec.nodes:
            self.predict(*[np.zeros((batch, steps, i.features)[3 - i.rank :], _F32) for i in self.spec.inputs])
        if streamable_problem(self.spec) is None:
            s = self.stream(batch)
            widths = [i.features for i in self.spec.inputs] if len(self.spec.inputs) > 1 else [s.input_features]
            s.step(*[np.zeros((batch, width), _F32) for width in widths])
            s.run(*[np.zeros((batch, steps, width)[: 3 - s._codes], _F32) for width in widths])
        return self

    # -- description and storage ---------------------------------------------------------------
    @property
    def input_features(self) -> int:
        return self.spec.inputs[0].features

    @property
    def output_features(self) -> int:
        return self.spec.tensor_shape(self.spec.outputs[0])[1]

    def save(self, path) -> None:
        """Write the model to a ``.ernn`` file (see :mod:`edgernn.store`)."""
        store.save_spec(self.spec, path)

    def __repr__(self) -> str:
        layers = ", ".join(type(n.op).__name__ for n in self.spec.nodes)
        return f"<edgernn.Model {self.input_features} -> {self.output_features} features: {layers}>"


def _time_rows(spec: ir.ModelSpec, steps: int) -> int:
    """The rows the time axis has after the model's Conv1Ds, windowed poolings and crops, from ``steps``."""
    for node in spec.nodes:
        op = node.op
        if isinstance(op, (ir.Conv1D, ir.Pad1D)) or (isinstance(op, ir.Pooling1D) and not op.global_pool):
            steps = node.op.output_steps(steps)
        elif isinstance(op, ir.UpSample1D):
            steps *= op.size
    return steps


# A stream of few rows steps through the fused one-call kernel, a larger one through matrix
# products across its streams (edgernn.kernels._gemm). Where they cross depends on the work per
# stream: in tools/bench's crossover section (docs/benchmarks.md, 2026-11-29 02:13 UTC run) between
# 32 and 64 streams for a model of 4.7k weights, 16 and 32 for 14k and 19k, 2 and 4 for 206k --
# about FUSED_STEP_WORK / sqrt(weights) for the small ones (the big one crosses sooner than that:
# its packed products run nearer the machine's peak than its matrix-vector products).
# FUSED_STEP_MAX_BATCH, when set, overrides it.
FUSED_STEP_WORK = 3000
FUSED_STEP_MAX_BATCH = None


def fused_step_max_batch(spec: ir.ModelSpec) -> int:
    """The largest batch that steps through the fused kernel (the weights stand in for the
    multiply-adds of one stream's step)."""
    if FUSED_STEP_MAX_BATCH is not None:
        return FUSED_STEP_MAX_BATCH
    return max(1, int(FUSED_STEP_WORK / math.sqrt(max(spec.parameter_count, 1))))


class _RecurrentStage:
    """A recurrent layer inside a stream: its kernel, and views of this stream's state blocks."""

    def __init__(self, node: ir.Node, blocks: dict, state: np.ndarray, batch: int, fused: bool):
        self.node = node
        view = kernels.ChainProgram.view
        self.states = tuple(view(state, batch, blocks[name]) for name in ("h", "c") if name in blocks)
        self.previous = view(state, batch, blocks["prev"])  # previous output, repeated on masked steps
        self.buffers = None if fused else self.kernel.new_batch_buffers(batch)
        self.width = node.op.output_size
        self.step_keep = np.ones(batch, np.bool_)  # its mask and the streams that reach it this step

    # On first use, not in __init__: RecurrentKernel imports Numba, which a stream stepping through
    # the ahead-of-time fused step never needs (see edgernn.kernels.compiled_chain_step).
    @functools.cached_property
    def kernel(self):
        return kernels.RecurrentKernel(self.node.op)

    @functools.cached_property
    def scratch(self):
        return self.kernel.new_scratch()

    def block(self, x, keep):
        """T steps: ``x`` (T, B, F), ``keep`` (T, B) -> every step's output (T, B, width)."""
        ys = np.empty(x.shape[:2] + (self.width,), _F32)
        self.kernel.sequence(x, self.states, self.previous, ys, keep, self.scratch)
        return ys

    def batch_step(self, x, keep):
        """One step of many streams: ``x`` (B, F) -> the output (B, width), no allocation."""
        self.kernel.batch_step(x, self.states, self.previous, keep, self.buffers, self.scratch)
        return self.previous

    # A stage's part of one step of many streams, and of a block: reading its inputs from the
    # tensors ``values`` and the freshness lists ``actives`` of :meth:`Stream._build_stages`,
    # writing its output there. (Every stage class has these two; the stream loops over them.)
    def step_in(self, values, actives):
        keep = values[self.mask_source]
        if self.active_in != 0:  # slot 0, the model input's, is fresh for every stream
            keep = np.logical_and(keep, actives[self.active_in], out=self.step_keep)
        values[self.target] = self.batch_step(values[self.sources[0]], keep)

    def block_in(self, values, actives):
        active = actives[self.active_in]  # (behind an UpSample1D, longer than the all-kept slot 1)
        values[self.target] = self.block(values[self.sources[0]], active if self.mask_source == 1
                                         else values[self.mask_source] & active)


class _WindowStage:
    """A Conv1D, Pooling1D or Pad1D inside a stream (see :mod:`edgernn.kernels.window`): views of this
    stream's state blocks -- its ring of past inputs and counters, or a global pooling's running
    value and count -- and the stage's output buffer for one step of many streams.

    It emits a row only at the inputs where ``predict`` makes one; ``batch_step`` and ``block``
    take and update the mask of streams whose input is fresh (``active``)."""

    def __init__(self, node: ir.Node, blocks: dict, state: np.ndarray, batch: int, features: int, fused: bool):
        self.node = node
        op = node.op
        view = kernels.ChainProgram.view
        self.names = tuple(blocks)  # ("inputs", "counters") or ("pooled", "count")
        self.states = tuple(view(state, batch, blocks[name]) for name in self.names)
        self.width = op.output_size if isinstance(op, ir.Conv1D) else features
        _, dilation, groups, strides, need = kernels.window_geometry(op)
        self.args = (dilation, groups, need, strides)
        self.kind = kernels.window_kind(op)
        if isinstance(op, ir.Conv1D):
            self.kernel = op.kernel
            self.bias = op.bias if op.bias is not None else np.zeros(op.output_size, _F32)
            self.activation = ir.ACTIVATION_IDS[op.activation]
        else:
            self.kernel, self.bias = np.zeros((0, 0, 0), _F32), np.zeros(0, _F32)
            self.activation = ir.ACTIVATION_IDS["linear"]
        # The largest value each counter may hold (set_state refuses others: they index the ring).
        rows = self.states[0].shape[1] // features  # of the ring: span - 1
        self.counter_limits = ((kernels.COUNT_LIMIT,) if self.kind in (kernels.GLOBAL_MAX, kernels.GLOBAL_AVG)
                               else (need, strides - 1, max(rows - 1, 0)))
        self.step_y = np.zeros((batch, self.width), _F32)
        self.product = self.kernel_2d = None
        if self.kind == kernels.CONV and groups == 1:  # the windows, then one product across the streams
            self.taps = op.kernel_size
            self.kernel_2d = np.ascontiguousarray(op.kernel.reshape(-1, op.output_size))  # for run's BLAS product
            if not fused:  # many streams: on weights packed once per layer, shared by its streams
                self.fresh = np.zeros(batch, np.bool_)  # conv_batch's scratch: the streams it pushes,
                self.tap_starts = np.zeros((batch, op.kernel_size - 1), np.intp)  # and where each tap starts
                self.product = _conv_product(op, self.kernel_2d, self.bias, features)
                self.relu = self.activation == _RELU  # applied as the product stores its sums

    def _run(self, kernel, x, active, y):
        kernel(self.kind, x, active, y, self.states[0], self.states[1], self.kernel, self.bias, *self.args,
               self.activation)

    def block(self, x, active):
        """T steps: ``x`` (T, B, F), ``active`` (T, B) updated in place -> (T, B, width), rows that
        do not emit unset."""
        if self.kernel_2d is not None:
            # An ungrouped Conv1D: the windows of the whole block, then one BLAS product. Its
            # row-at-a-time step (window_row) made (e) in tools/bench half again slower than ONNX Runtime.
            steps, batch = x.shape[:2]
            columns = np.zeros((steps, batch, self.kernel_2d.shape[0]), _F32)
            dilation, _, need, strides = self.args
            kernels.conv_gather_block(x, active, columns, self.states[0], self.states[1], self.taps, dilation, need,
                                      strides)
            y = np.matmul(columns.reshape(steps * batch, -1), self.kernel_2d).reshape(steps, batch, self.width)
            kernels.bias_activation(y.reshape(steps * batch, self.width), self.bias, self.activation)
            return y
        y = np.zeros(x.shape[:2] + (self.width,), _F32)
        self._run(kernels.window_block, x, active, y)
        return y

    def batch_step(self, x, active):
        """One step of many streams: ``x`` (B, F), ``active`` (B,) updated in place -> (B, width).

        An ungrouped Conv1D makes the outputs of all streams in one product across them, on its
        weights packed once as the recurrent layers' are (:class:`~edgernn.kernels.recurrent.Product`),
        reading each window where it lies in the ring (:func:`~edgernn.kernels.window.conv_batch`;
        the rows of streams that do not emit are computed and not used); the rest step stream by
        stream through :func:`~edgernn.kernels.window.window_row`."""
        if self.product is None:
            self._run(kernels.window_batch, x, active, self.step_y)
            return self.step_y
        dilation, _, need, strides = self.args
        product, tail = self.product
        kernels.conv_batch(x, active, self.fresh, self.tap_starts, self.states[0], self.states[1], dilation, need,
                           strides, product.first, product.second, product.bias, product.columns, self.step_y, tail,
                           self.relu)
        if self.activation != _LINEAR and not self.relu:
            kernels.activation_forward(self.step_y, self.activation, self.step_y)
        return self.step_y

    def step_in(self, values, actives):  # (see _RecurrentStage.step_in)
        active = actives[self.active_out]
        np.copyto(active, actives[self.active_in])
        values[self.target] = self.batch_step(values[self.sources[0]], active)

    def block_in(self, values, actives):
        actives[self.active_out] = active = actives[self.active_in].copy()
        values[self.target] = self.block(values[self.sources[0]], active)


def _conv_product(op: ir.Conv1D, kernel_2d: np.ndarray, bias: np.ndarray, features: int) -> tuple:
    """A Conv1D's product across streams for :func:`~edgernn.kernels.window.conv_batch`, as the
    recurrent layers' (:class:`~edgernn.kernels.recurrent.Product`): ``bias + (the taps before the
    last, from the ring) @ kernel_2d[:-features] + x @ kernel_2d[-features:]``, its weights
    packed once per layer (:func:`~edgernn.kernels._matvec.prepared`); ``(product, tail scratch)``."""
    from .kernels._gemm import PANEL, ROWS  # Numba: a fused stream never comes here
    from .kernels._matvec import prepared
    from .kernels.recurrent import Product

    last = kernel_2d.shape[0] - features  # the rows of the last tap, the one on x
    product = prepared(op, "conv product", lambda: Product.of(kernel_2d[:last], kernel_2d[last:], bias))
    return product, aligned_zeros((ROWS, PANEL))


_NO_KEEP = np.zeros(0, np.bool_)  # the mask an Embedding without mask_zero does not write


class _RowStage:
    """A per-timestep op (Dense, Activation, Masking, Affine, LayerNorm, Standardize, Embedding,
    Flatten of a vector, Reshape that keeps every row) applied to every row of its input. Masking,
    and an Embedding with ``mask_zero``, also make the mask (``keep``) that recurrent stages read."""

    def __init__(self, node: ir.Node, batch: int, features: int):
        self.node = node
        op = node.op
        self.width = op.output_size if isinstance(op, (ir.Dense, ir.Embedding)) else features
        self.masks = isinstance(op, ir.Masking) or (isinstance(op, ir.Embedding) and op.mask_zero)
        if isinstance(op, ir.Dense):
            self.kernel, self.bias, self.activation = kernels.dense_kernel_args(op)
        elif isinstance(op, ir.Activation):
            self.activation = ir.ACTIVATION_IDS[op.activation]
        elif isinstance(op, ir.LayerNorm):  # absent gamma, beta: empty (1 and 0; see kernels.rowwise)
            self.norm = kernels.NORM_IDS[op.kind]
            self.gamma, self.beta = (a if a is not None else np.zeros(0, _F32) for a in (op.gamma, op.beta))
            self.epsilon = _F32(op.epsilon)
        elif isinstance(op, ir.Masking):
            self.mask_value = _F32(op.mask_value)
        # The op's computation, chosen once here rather than by type on every step.
        self.apply = {ir.Dense: self._dense, ir.Activation: self._activation, ir.Affine: self._affine,
                      ir.LayerNorm: self._layer_norm, ir.Standardize: self._standardize, ir.Embedding: self._embed,
                      ir.Flatten: self._identity, ir.Reshape: self._identity, ir.Masking: self._masking}[type(op)]
        self.step_keep = np.ones(batch, np.bool_) if self.masks else None
        self.step_y = np.zeros((batch, self.width), _F32)

    # Each fills ``y`` (rows, width) from ``x`` (rows, F); a mask maker also fills ``keep`` (rows,).
    def _dense(self, x, y, keep):  # one BLAS product over all rows, then the activation in place
        np.matmul(x, self.kernel, out=y)
        kernels.bias_activation(y, self.bias, self.activation)

    def _activation(self, x, y, keep):
        kernels.activation_forward(x, self.activation, y)

    def _affine(self, x, y, keep):
        np.multiply(x, self.node.op.scale, out=y)
        np.add(y, self.node.op.offset, out=y)

    def _layer_norm(self, x, y, keep):
        kernels.layer_norm_rows(self.norm, x, y, self.gamma, self.beta, self.epsilon)

    def _standardize(self, x, y, keep):
        kernels.standardize_rows(x, y, self.node.op.mean, self.node.op.std)

    def _embed(self, x, y, keep):  # the codes (x (rows, 1)) were checked by the stream before anything ran
        op = self.node.op
        kernels.embed_rows(x, y, op.embeddings, _NO_KEEP if keep is None else keep, op.mask_zero)

    def _identity(self, x, y, keep):  # Flatten of a vector, or a Reshape that keeps every row
        np.copyto(y, x)

    def _masking(self, x, y, keep):
        kernels.masking_forward(x, self.mask_value, y, keep)

    def block(self, x):
        """``x`` (T, B, F) -> ``(y (T, B, width), keep (T, B) or None)``."""
        y = np.empty(x.shape[:2] + (self.width,), _F32)
        keep = np.empty(x.shape[:2], np.bool_) if self.masks else None
        self.apply(x.reshape(-1, x.shape[-1]), y.reshape(-1, self.width), None if keep is None else keep.reshape(-1))
        return y, keep

    def batch_step(self, x):
        """``x`` (B, F) -> ``(y (B, width), keep (B,) or None)`` into reusable buffers."""
        self.apply(x, self.step_y, self.step_keep)
        return self.step_y, self.step_keep

    def step_in(self, values, actives):  # (see _RecurrentStage.step_in)
        self._store(values, *self.batch_step(values[self.sources[0]]))

    def block_in(self, values, actives):
        self._store(values, *self.block(values[self.sources[0]]))

    def _store(self, values, y, keep):
        values[self.target] = y
        if keep is not None:
            values[self.keep_target] = keep


class _UpSampleStage:
    """An UpSample1D in the paths that go stage by stage: each row of a block repeated ``size`` times
    along its time axis, with the freshness of each stream's rows; the stages after it run on
    that axis, and :meth:`Stream._block` folds their output back to one row per input step."""

    def __init__(self, node: ir.Node, width: int):
        self.node = node
        self.size = node.op.size
        self.width = width
        self.repeats = 0  # of a step of many streams: the repeats done (Stream._batch_step_upsampled)

    def block(self, x, active):
        """``x`` (T, B, F), ``active`` (T, B) -> (T * size, B, F), (T * size, B)."""
        return np.repeat(x, self.size, axis=0), np.repeat(active, self.size, axis=0)

    def step_in(self, values, actives):  # the first of its repeats: its input's row as it is
        np.copyto(actives[self.active_out], actives[self.active_in])
        values[self.target] = values[self.sources[0]]
        self.repeats = 0

    def block_in(self, values, actives):
        values[self.target], actives[self.active_out] = self.block(values[self.sources[0]], actives[self.active_in])


class _MergeStage:
    """A Merge (add, subtract, multiply, average, maximum, minimum) or a Concatenate over features:
    its inputs' rows joined into one, as :func:`edgernn.graph.execute` joins whole arrays (the
    inputs folded left to right, an average's sum divided by their count; side by side)."""

    def __init__(self, node: ir.Node, batch: int, widths: list[int]):
        self.node = node
        op = node.op
        self.concatenate = isinstance(op, ir.Concatenate)
        self.width = sum(widths) if self.concatenate else widths[0]
        self.columns = np.cumsum([0] + widths)  # of each input in a concatenation's output
        self.fold = None if self.concatenate else graph.MERGE_UFUNCS[op.mode]
        self.count = _F32(len(widths)) if not self.concatenate and op.mode == "average" else None
        self.inputs = [None] * len(widths)  # the step's inputs, gathered without a new list
        self.step_y = np.zeros((batch, self.width), _F32)

    def _join(self, xs, y):
        if self.concatenate:
            for x, start, end in zip(xs, self.columns[:-1], self.columns[1:]):
                y[..., start:end] = x
            return
        self.fold(xs[0], xs[1], out=y)
        for k in range(2, len(xs)):
            self.fold(y, xs[k], out=y)
        if self.count is not None:
            np.divide(y, self.count, out=y)

    def block(self, xs):
        """``xs``: one (T, B, F_i) per input -> (T, B, width)."""
        y = np.empty(xs[0].shape[:2] + (self.width,), _F32)
        self._join(xs, y)
        return y

    def batch_step(self, xs):
        """``xs``: one (B, F_i) per input -> (B, width) in a reusable buffer."""
        self._join(xs, self.step_y)
        return self.step_y

    def step_in(self, values, actives):  # (see _RecurrentStage.step_in)
        for k, slot in enumerate(self.sources):  # into its reusable list
            self.inputs[k] = values[slot]
        values[self.target] = self.batch_step(self.inputs)

    def block_in(self, values, actives):
        values[self.target] = self.block([values[slot] for slot in self.sources])


def _fold_repeats(y, active, steps: int):
    """``(y (T, B, O), active (T, B))`` from the rows a block of ``steps`` = T input steps made.

    Behind an UpSample1D of ``size`` r, the stages after it made r rows per input step (``y``
    (T * r, B, O), ``active`` (T * r, B); r the product of the sizes of several): the step emits
    if any of its rows did, and its output is the last row that did, which ``predict`` on the
    prefix ending at that step ends with (its row for a later repeat does not exist yet).
    Without an UpSample1D, ``y`` and ``active`` as they are."""
    repeats = len(active) // steps
    if repeats == 1:
        return y, active
    active = active.reshape(steps, repeats, -1)
    last = repeats - 1 - np.argmax(active[:, ::-1], axis=1)  # (T, B): the last repeat that emitted (any, if none)
    rows = np.take_along_axis(y.reshape(steps, repeats, *y.shape[1:]), last[:, None, :, None], axis=1)[:, 0]
    return rows, active.any(axis=1)


class Stream:
    """``batch_size`` independent, stateful streams through one model (Keras ``stateful=True``).

    ``step(x_t)``: ``(batch, features) -> (batch, outputs)``, one timestep, state carried.
    ``run(x)``: ``(batch, T, features) -> (batch, T, outputs)``, the output of every step.
    ``reset()``/``reset(i)``: all streams / stream ``i`` back to zero state.
    ``get_state()``/``set_state(st)``: a snapshot as a dict of plain numpy arrays.
    ``forecast(n)``: closed loop, each output fed back as the next input.

    For a model whose last recurrent layer has ``return_sequences=False``, each step's output is
    what the model returns for the sequence that ends at that step. A refused call (wrong shape,
    dtype, index) raises :class:`~edgernn.errors.InvalidInput` and leaves every state untouched.

    A model of integer codes (an Embedding first) steps one code per stream: ``x_t`` (batch, 1),
    ``run``'s ``x`` (batch, T); a code that is not an integer in ``[0, vocab)`` is refused before
    any state changes. A model of several sequence inputs steps a timestep of each, in the order
    ``predict`` takes them: ``step(x1_t, x2_t, out=None)``, ``run(x1, x2)``; its
    ``input_features`` is the tuple of theirs.

    The model may be a chain or a graph whose branches fork and merge (Merge, Concatenate over
    features; see :func:`~edgernn.graph.streamable_problem`): every path runs the nodes in the
    spec's order, each tensor in a place of its own.

    Behind a strided or valid Conv1D or pooling, or a Cropping1D, a step emits only where
    ``predict`` on the prefix ending there makes its last row, and equals that row; the other steps
    return the last emitted output again (zeros before the first). ``emitted`` (batch,) and
    ``emitted_run`` (batch, T) say which steps emitted (see :mod:`edgernn.kernels.window` for the
    state this takes). Behind a ZeroPadding1D on the left, the layers after it start from the
    state its zero rows leave (:meth:`_padded_start`). Behind an UpSampling1D of ``size`` r, each
    step runs the layers after it r times on its row and returns the last row ``predict`` on the
    prefix makes (emitted if any of the r made one).

    How it runs: all state lives in one flat float32 array (see :mod:`edgernn.kernels.chain`).
    ``step`` on a few streams (:func:`fused_step_max_batch`) is one call of the fused chain kernel
    (the ahead-of-time module ``edgernn warmup`` built, else Numba's; :mod:`edgernn.kernels.aot`),
    whose signature is fixed: a float32 C-contiguous input of the right shape goes straight in, and
    anything else falls to a checked path that converts or refuses it. Larger batches step
    through products across streams on weights packed once (:mod:`edgernn.kernels._gemm`); ``run`` goes layer by layer over the whole block, each
    layer's input projections one BLAS product. The paths agree to float32 rounding, not bit
    for bit (their sums run in different orders); each path is deterministic.
    """

    def __init__(self, model: Model, batch_size: int = 1):
        problem = streamable_problem(model.spec)
        if problem is not None:
            raise NotStreamable(problem)
        # Fix: bools refused, as reset() refuses them (stream(True) made a stream of batch 1).
        if not (isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, (bool, np.bool_))
                and batch_size >= 1):
            raise InvalidInput(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.batch_size = batch = int(batch_size)
        features = model.step_features
        self._input_names = tuple(i.name for i in model.spec.inputs)
        widths = tuple(i.features for i in model.spec.inputs)
        # A model of several inputs: a step's inputs side by side in one row (the fused step's x)
        self._input_columns = tuple(zip(np.cumsum((0,) + widths[:-1]).tolist(), np.cumsum(widths).tolist()))
        self.input_features = widths if len(widths) > 1 else features
        self._codes = model.spec.inputs[0].dtype == "int"  # integer codes, one per stream per step (Embedding)
        self._embedding = model.spec.nodes[0].op if self._codes else None
        self.output_features = model.output_features
        program = model._chain_program()
        self._program = program
        self._memory = program.new_memory(batch)  # state, then the fused kernel's scratch
        self._state = self._memory[: batch * program.state_width]
        self._fused = batch <= fused_step_max_batch(model.spec)
        self._build_stages(model.spec, program, features)
        self._last_output = program.view(self._state, batch, program.last_output)
        self._emitted = program.view(self._state, batch, program.emitted)  # (batch, 1): 1.0 if the last step emitted
        self._step_active_column = self._actives[self._output_active][:, None]
        if self._windows:  # which streams each stage's input reaches is tracked only where some may not
            self._batch_step = self._batch_step_windowed
        if self._upsamplings:  # the stages after an UpSample1D run size times per step
            self._batch_step = self._batch_step_upsampled
        self.emitted_run = np.zeros((batch, 0), np.bool_)
        self._step_x = np.zeros((batch, features), _F32)
        # A step's several inputs are written where it reads them: side by side in the fused step's
        # row, or each into its own buffer for the stage-by-stage path.
        self._input_targets = ([self._step_x[:, start:end] for start, end in self._input_columns] if self._fused
                               else self._input_buffers)
        self._step_y = np.zeros((batch, self.output_features), _F32)
        self._packed = program.packed  # the fused kernel's model argument
        self._fresh = self._padded_start()  # the state reset restores, when it is not zeros
        self._chain_step = None
        if len(self._input_names) > 1:  # one array per input: the checked path (below), then the same kernel
            self.step = self._step_inputs
            self._chain_step = kernels.compiled_chain_step() if self._fused else None
        elif self._fused:
            self._use_kernel(kernels.compiled_chain_step())
        self._has_output = False

    def _build_stages(self, spec: ir.ModelSpec, program, features: int) -> None:
        """One stage per node, in the spec's order, and where each reads and writes.

        The paths that go stage by stage (many streams, ``run``) keep the tensors of one step or
        block in a list, ``values``: slot 0 the model input (all inputs side by side, for a model of
        several, each of which then has a slot of its own from 2), slot 1 the mask of an unmasked
        layer (all kept), then one slot per tensor a stage makes (its output, and a mask maker's mask).
        A stage reads ``sources`` (its inputs' slots) and ``mask_source``, writes ``target`` (and
        ``keep_target``). Which streams a tensor's rows are fresh for (``active``) lives in the
        list ``actives``: slot 0 the input's (all), then one per windowed stage, which may not
        emit, and one per UpSample1D (in ``run``'s blocks, its rows are its own time axis); every
        other stage's output is fresh where its first input is (``active_in``)."""
        batch = self.batch_size
        several = len(spec.inputs) > 1
        slot_of = {i.name: 2 + k if several else 0 for k, i in enumerate(spec.inputs)}
        width_of = {i.name: i.features if several else features for i in spec.inputs}
        active_of = dict.fromkeys(slot_of, 0)
        next_slot = 2 + (len(spec.inputs) if several else 0)
        window_count = 0
        self._input_slots = [slot_of[i.name] for i in spec.inputs] if several else []
        self._stages = []
        blocks, windows = iter(program.blocks), iter(program.windows)
        for node in spec.nodes:
            op = node.op
            width = width_of[node.inputs[0]]
            if isinstance(op, ir.Recurrent):
                stage = _RecurrentStage(node, next(blocks), self._state, batch, self._fused)
            elif isinstance(op, (ir.Conv1D, ir.Pooling1D, ir.Pad1D)):
                stage = _WindowStage(node, next(windows), self._state, batch, width, self._fused)
            elif isinstance(op, ir.MULTI_INPUT_OPS):
                stage = _MergeStage(node, batch, [width_of[name] for name in node.inputs])
            elif isinstance(op, ir.UpSample1D):
                stage = _UpSampleStage(node, width)
            else:
                stage = _RowStage(node, batch, width)
            stage.sources = tuple(slot_of[name] for name in node.inputs)
            stage.mask_source = slot_of[node.mask] if node.mask else 1
            stage.active_in = active_of[node.inputs[0]]
            stage.target = slot_of[node.outputs[0]] = next_slot
            next_slot += 1
            width_of[node.outputs[0]] = stage.width
            if isinstance(stage, _RowStage) and stage.masks:
                stage.keep_target = slot_of[node.outputs[1]] = next_slot
                next_slot += 1
            if isinstance(stage, (_WindowStage, _UpSampleStage)):  # (an UpSample1D's: a time axis of its own)
                window_count += 1
                stage.active_out = active_of[node.outputs[0]] = window_count
            else:
                active_of[node.outputs[0]] = stage.active_in
            self._stages.append(stage)
        self._recurrent = [s for s in self._stages if isinstance(s, _RecurrentStage)]
        self._windows = [s for s in self._stages if isinstance(s, _WindowStage)]
        self._output_slot = slot_of[spec.outputs[0]]
        self._output_active = active_of[spec.outputs[0]]
        self._values = [None] * next_slot
        self._all_kept = self._values[1] = np.ones(batch, np.bool_)
        self._input_buffers = [np.zeros((batch, width_of[i.name]), _F32) for i in spec.inputs] if several else []
        for slot, buffer in zip(self._input_slots, self._input_buffers):
            self._values[slot] = buffer
        self._actives = [np.ones(batch, np.bool_) for _ in range(1 + window_count)]
        self._upsamplings = [(index, stage) for index, stage in enumerate(self._stages) if isinstance(stage, _UpSampleStage)]
        # The stages from each one on, made once: a repeat behind an UpSample1D restarts there every step.
        self._stages_from = [self._stages[first:] for first in range(len(self._stages) + 1)]

    # -- running -------------------------------------------------------------------------------
    def step(self, x_t, out=None):
        """One timestep: ``x_t`` (batch, features) -> a new array (batch, outputs), or into ``out``.
        For a model of integer codes (an Embedding first), ``x_t`` is (batch, 1): one code per
        stream, as ``run``'s ``x[:, t:t + 1]``; a code that is not an integer in ``[0, vocab)`` is
        refused before any state changes.

        With ``out`` (a float32 C-contiguous (batch, outputs) array) nothing is allocated.
        """
        # A stream on the fused path has its own ``step`` instead (see _use_kernel).
        return self._checked_step(x_t, out)

    def _use_kernel(self, kernel) -> None:
        """Step through the fused ``kernel``: ``self.step`` becomes a closure over it and this
        stream's buffers. The closure is the whole fast path: the kernel refuses (TypeError from
        a signature that does not match, or nonzero for a shape) anything but float32 C-contiguous
        arrays of the right shapes, and those go to the checked path. A closure rather than a
        method, because each attribute lookup it saves is 10-20 ns of a 1 µs step.

        When ``kernel`` is the ahead-of-time module's, ``self.step`` is that closure's twin in C
        (``bind`` in aot_step.c), with the closure as its fallback for everything but the fast
        case; it keeps its own ``stepped`` flag where the closure sets ``_has_output``.
        """
        packed, memory, own_y, checked = self._packed, self._memory, self._step_y, self._checked_step
        self._chain_step = kernel

        def step(x_t, out=None):
            try:
                refused = kernel(packed, x_t, own_y if out is None else out, memory)
            except TypeError:
                refused = 1
            if refused:
                return checked(x_t, out)
            self._has_output = True
            return own_y.copy() if out is None else out

        step.__doc__ = Stream.step.__doc__
        # The same step in C when the kernel is the ahead-of-time module's: no Python frame at all.
        from .kernels import aot  # lazy: a leaf (no Numba at import) that predict and convert never need

        bound = aot.bind_step(kernel, packed, own_y, memory, step)
        self.step = step if bound is None else bound

    def _checked_step(self, x_t, out):
        """The careful path: validate everything before touching any state, convert, then step."""
        array = _as_float32(x_t, "x_t")
        if array.shape != (self.batch_size, self.input_features):
            hint = ""
            if self._codes:
                if array.shape == (self.batch_size,):
                    hint = " (one code per stream as a column: pass x_t[:, None], as run's x[:, t:t + 1])"
                raise InvalidInput(f"step takes x_t of shape (batch={self.batch_size}, 1): one integer code per "
                                   f"stream, got {array.shape}{hint}")
            if array.shape == (self.input_features,) and self.batch_size == 1:
                hint = " (one sample of one stream: pass x_t[None], or x_t.reshape(1, -1))"
            raise InvalidInput(f"step takes x_t of shape (batch={self.batch_size}, features={self.input_features}), "
                               f"got {array.shape}{hint}")
        if self._codes:  # the codes as given (a float32 cast could round a large one into range)
            graph.check_codes(self._embedding, np.asarray(x_t))
        self._check_out(out)
        np.copyto(self._step_x, array)
        return self._advance(out)

    def _step_inputs(self, *xs, out=None):
        """One timestep of a model of several inputs: ``step(x1_t, x2_t, ..., out=None)``, one
        (batch, features_i) array per model input in the model's order (as ``predict`` takes
        them) -> (batch, outputs). Everything is checked before any state changes."""
        if len(xs) != len(self._input_names):
            raise InvalidInput(f"step takes one array per model input ({', '.join(map(repr, self._input_names))}), "
                               f"got {len(xs)}")
        arrays = []
        for name, width, x in zip(self._input_names, self.input_features, xs):
            array = _as_float32(x, f"input {name!r}")
            if array.shape != (self.batch_size, width):
                raise InvalidInput(f"step takes input {name!r} of shape (batch={self.batch_size}, features={width}), "
                                   f"got {array.shape}")
            arrays.append(array)
        self._check_out(out)
        for array, target in zip(arrays, self._input_targets):
            np.copyto(target, array)
        return self._advance(out)

    def _check_out(self, out) -> None:
        if out is not None and not (isinstance(out, np.ndarray) and out.shape == self._step_y.shape
                                    and out.dtype == _F32 and out.flags.writeable):
            raise InvalidInput(f"out must be a writeable float32 array of shape {self._step_y.shape}")

    def _advance(self, out):
        """The step of ``self._step_x`` (checked), through the fused kernel or stage by stage."""
        if self._fused:
            self._chain_step(self._packed, self._step_x, self._step_y, self._memory)
        else:
            self._batch_step(self._step_x)
        self._has_output = True
        if out is None:
            return self._step_y.copy()
        np.copyto(out, self._step_y)
        return out

    def _batch_step(self, x):
        """One step of many streams, stage by stage, through reusable buffers: every stream emits
        (no Conv1D or pooling; a stream with one steps through :meth:`_batch_step_windowed`)."""
        values, actives = self._values, self._actives
        values[0] = x
        for stage in self._stages:
            stage.step_in(values, actives)
        np.copyto(self._step_y, values[self._output_slot])
        np.copyto(self._last_output, self._step_y)
        self._emitted.fill(1.0)

    def _batch_step_windowed(self, x):
        """One step of many streams, stage by stage, through reusable buffers.

        ``actives`` follow which streams each tensor gets a fresh row for: a windowed stage that
        does not emit for a stream leaves the stages behind it untouched for that stream (a
        recurrent stage sees it as a masked step, which keeps its state), and, if the model's
        output is among them, the stream's output is held."""
        self._values[0] = x
        self._step_stages(0)
        np.copyto(self._last_output, self._values[self._output_slot], where=self._step_active_column)
        np.copyto(self._step_y, self._last_output)
        np.copyto(self._emitted, self._step_active_column)

    def _step_stages(self, first: int) -> None:
        """The stages from ``first`` on, of one step of many streams (see :meth:`_batch_step_windowed`)."""
        values, actives = self._values, self._actives
        for stage in self._stages_from[first]:
            stage.step_in(values, actives)

    def _batch_step_upsampled(self, x):
        """One step of many streams behind an UpSample1D: as :meth:`_batch_step_windowed`, and then
        again from the stage after the innermost UpSample1D with repeats to go, as the fused step
        does (every stream repeats; a stream whose row did not reach it repeats no fresh row). The
        output: the last one made in any pass, emitted if any pass made one."""
        self._values[0] = x
        self._emitted.fill(0.0)
        first = 0
        while first < len(self._stages):
            self._step_stages(first)
            np.copyto(self._last_output, self._values[self._output_slot], where=self._step_active_column)
            np.copyto(self._emitted, self._step_active_column, where=self._step_active_column)  # any pass
            first = len(self._stages)
            for index, stage in reversed(self._upsamplings):  # the innermost first
                if stage.repeats + 1 < stage.size:
                    stage.repeats += 1
                    first = index + 1
                    break
        np.copyto(self._step_y, self._last_output)

    def _padded_start(self):
        """The stream's fresh state behind a ZeroPadding1D, or None (zeros) without one.

        ``predict`` on every prefix starts the layers after a Pad1D of ``left`` > 0 with ``left``
        zero rows: those rows run through them here, once, and the state they leave is the one
        every stream starts from (and ``reset`` restores). The innermost padding first: the
        layers after it see its zeros before anything that comes through the layers before it.
        The rows run the ``run`` path (Numba's kernels, even for a stream on the ahead-of-time step)."""
        padded = [index for index, stage in enumerate(self._stages)
                  if isinstance(stage.node.op, ir.Pad1D) and stage.node.op.left > 0]
        for index in reversed(padded):
            stage = self._stages[index]
            zeros = np.zeros((min(stage.node.op.left, 256), self.batch_size, stage.width), _F32)
            for done in range(0, stage.node.op.left, len(zeros)):  # in blocks: memory bounded whatever the padding
                self._block(zeros[: stage.node.op.left - done], start=index + 1)
        return self._state.copy() if padded else None

    def _block(self, x, start=0):
        """T steps of every stream, stage by stage: ``x`` (T, B, F) -> ``(y (T, B, outputs), emitted
        (T, B))``; the rows of ``y`` that did not emit are left unset (see :meth:`run`). The
        tensors and their ``actives`` as in :meth:`_build_stages`, for the whole block. ``start``:
        the first stage to run, ``x`` the output of the one before it (every stage from there on
        reads only what descends from it: ``streamable_problem`` sees to that for a padding)."""
        values = [None] * len(self._values)
        values[0], values[1] = x, np.ones(x.shape[:2], np.bool_)
        for slot, (first, end) in zip(self._input_slots, self._input_columns):
            values[slot] = np.ascontiguousarray(x[:, :, first:end])
        actives = [np.ones(x.shape[:2], np.bool_) for _ in self._actives]
        if start:
            values[self._stages[start - 1].target] = x
        for stage in self._stages[start:]:
            stage.block_in(values, actives)
        return _fold_repeats(values[self._output_slot], actives[self._output_active], len(x))

    def run(self, *xs):
        """A block of timesteps: ``x`` (batch, T, features) -> (batch, T, outputs), state carried;
        for a model of integer codes ``x`` is (batch, T), as in ``predict``; for a model of several
        inputs, ``run(x1, x2, ...)``, one (batch, T, features_i) array per input.

        Row t is what ``step`` would have returned at that step: a fresh output where the model
        emitted, the last one held elsewhere; :attr:`emitted_run` (batch, T) says which."""
        if len(xs) != len(self._input_names):
            raise InvalidInput(f"run takes one array per model input ({', '.join(map(repr, self._input_names))}), "
                               f"got {len(xs)}")
        if len(xs) > 1:
            array = self._joined_inputs(xs)
        else:
            array = self._one_input(xs[0])
        if array.shape[1] == 0:
            self.emitted_run = np.zeros((self.batch_size, 0), np.bool_)
            return np.zeros((self.batch_size, 0, self.output_features), _F32)
        return self._run_block(array)

    def _joined_inputs(self, xs) -> np.ndarray:
        """Several inputs' blocks, checked, side by side on the features: (batch, T, all features)."""
        arrays = []
        for name, width, x in zip(self._input_names, self.input_features, xs):
            array = _as_float32(x, f"input {name!r}")
            if array.ndim != 3 or array.shape[0] != self.batch_size or array.shape[2] != width:
                raise InvalidInput(f"run takes input {name!r} of shape (batch={self.batch_size}, T, features={width}), "
                                   f"got {array.shape}")
            arrays.append(array)
        if len({a.shape[1] for a in arrays}) > 1:
            raise InvalidInput(f"run takes inputs of one length T (a step takes a timestep of each), got "
                               f"{[a.shape[1] for a in arrays]}")
        return np.concatenate(arrays, axis=2)

    def _one_input(self, x) -> np.ndarray:
        """The one input's block, checked: (batch, T, features)."""
        array = _as_float32(x, "x")
        if self._codes:
            if array.ndim != 2 or array.shape[0] != self.batch_size:
                raise InvalidInput(f"run takes integer codes x of shape (batch={self.batch_size}, T), got {array.shape}")
            graph.check_codes(self._embedding, np.asarray(x))
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[0] != self.batch_size or array.shape[2] != self.input_features:
            raise InvalidInput(f"run takes x of shape (batch={self.batch_size}, T, features={self.input_features}), "
                               f"got {array.shape}")
        return array

    def _run_block(self, array):
        """:meth:`run` of a checked block (batch, T, all features), T >= 1."""
        y, active = self._block(np.ascontiguousarray(array.transpose(1, 0, 2)))
        if not active.all():  # hold: each row is the latest emitted row at or before it (or the last output)
            steps = np.where(active, np.arange(1, len(active) + 1)[:, None], 0)
            np.maximum.accumulate(steps, axis=0, out=steps)
            y = np.concatenate([self._last_output[None], y])[steps, np.arange(self.batch_size)]
        np.copyto(self._last_output, y[-1])
        self._emitted[:, 0] = active[-1]
        self.emitted_run = np.ascontiguousarray(active.T)
        self._has_output = True
        # A copy, always: the caller's result must never be a view of a buffer the stream reuses.
        return y.transpose(1, 0, 2).copy()

    @property
    def emitted(self) -> np.ndarray:
        """(batch,) bool: whether each stream's last step made a fresh output.

        A model with a strided or valid Conv1D or pooling emits only at the inputs where
        ``predict`` on the prefix ending there makes its last row (a valid window's first output
        once it is full; then every ``strides`` inputs); other steps return the last emitted
        output again (zeros before the first). Always True for a purely recurrent chain, False
        after a reset or set_state. ``emitted_run`` (batch, T) is the same for every row of the
        last :meth:`run`."""
        return self._emitted[:, 0] != 0

    def forecast(self, steps: int):
        """Closed-loop prediction: ``steps`` new outputs (batch, steps, outputs).

        The first input is the stream's last output (so ``f[:, 0]`` is the model applied to it),
        and every output is fed back as the next input, the state carried throughout. Needs a
        model whose outputs are as many as its input features, and a stream that has been
        stepped or run on history first.
        """
        # Fix: bools refused, as reset() refuses them (forecast(True) ran one step).
        if not (isinstance(steps, (int, np.integer)) and not isinstance(steps, (bool, np.bool_)) and steps >= 0):
            raise InvalidInput(f"forecast takes a number of steps >= 0, got {steps!r}")
        if len(self._input_names) > 1:
            raise InvalidInput(f"forecast feeds outputs back as the input, but this model has {len(self._input_names)} "
                               f"inputs ({', '.join(map(repr, self._input_names))})")
        if self._codes:
            raise InvalidInput("forecast feeds outputs back as inputs, but this model's input is integer codes "
                               f"(layer {self._embedding.name!r} is an Embedding): step or run it on codes instead")
        if self.output_features != self.input_features:
            raise InvalidInput(f"forecast feeds outputs back as inputs, but the model has {self.output_features} "
                               f"outputs and {self.input_features} input features")
        if not (self._has_output or getattr(self.step, "stepped", False)):  # (the C step's own flag)
            raise InvalidInput("forecast starts from the stream's last output: step or run it on history first")
        result = np.empty((int(steps), self.batch_size, self.output_features), _F32)
        feedback = np.empty((self.batch_size, self.input_features), _F32)
        for t in range(int(steps)):
            np.copyto(feedback, self._last_output)
            self.step(feedback, out=result[t])
        return result.transpose(1, 0, 2).copy()

    # -- state -----------------------------------------------------------------------------------
    def reset(self, index: int | None = None) -> None:
        """Zero the state of every stream, or of stream ``index`` only."""
        if index is None:
            rows = slice(None)
            self._has_output = False
            if hasattr(self.step, "stepped"):
                self.step.stepped = 0
        else:
            if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not -self.batch_size <= index < self.batch_size:
                raise InvalidInput(f"stream index {index!r} out of range for batch_size {self.batch_size}")
            rows = int(index)
        for stage in self._recurrent:
            for state in stage.states:
                state[rows] = 0.0
            stage.previous[rows] = 0.0
        for stage in self._windows:
            for state in stage.states:
                state[rows] = 0.0
        if self._fresh is not None:  # behind a ZeroPadding1D: the state its zero rows leave
            views = [view for stage in self._recurrent for view in (*stage.states, stage.previous)]
            for view in views + [view for stage in self._windows for view in stage.states]:
                offset = (view.ctypes.data - self._state.ctypes.data) // view.itemsize  # the same block of the copy
                view[rows] = self._fresh[offset : offset + view.size].reshape(view.shape)[rows]
        self._last_output[rows] = 0.0
        self._emitted[rows] = 0.0

    def _state_names(self):
        for stage in self._stages:
            if isinstance(stage, _RecurrentStage):
                names = ("h", "c") if stage.node.op.cell == "lstm" else ("h",)
            elif isinstance(stage, _WindowStage):
                names = stage.names
            else:
                continue
            for k, part in enumerate(names):
                yield f"{stage.node.op.name}/{part}", stage, k

    def save_state(self, path) -> None:
        """Write every stream's state to ``path`` atomically, with a checksum and the model's
        identity (see :mod:`edgernn.statefile`): a power loss mid-write leaves the previous file."""
        statefile.save_state(self, path)

    def load_state(self, path) -> None:
        """Restore the state saved by :meth:`save_state` for this model and batch size; a file of
        another model, another batch size, or a corrupted one is refused and nothing changes."""
        statefile.load_state(self, path)

    def get_state(self) -> dict:
        """A copy of every state: ``{"<layer>/h": (batch, size), "<layer>/c": ..., "output": (batch, outputs)}``.

        ``output`` is the last output, which ``forecast`` feeds back first. A Conv1D or windowed
        pooling adds ``"<layer>/inputs"`` (batch, (span - 1) * features), its ring of past inputs,
        and ``"<layer>/counters"`` (batch, 3), (fill, phase, ring position); a global pooling
        ``"<layer>/pooled"`` (batch, features) and ``"<layer>/count"`` (batch, 1); a Pad1D
        (Cropping1D, ZeroPadding1D) ``"<layer>/inputs"`` (batch, right crop * features), its delay
        line, and ``"<layer>/counters"`` (see :mod:`edgernn.kernels.window`).
        """
        state = {name: stage.states[k].copy() for name, stage, k in self._state_names()}
        state["output"] = self._last_output.copy()
        return state

    def set_state(self, state: dict, allow_nonfinite: bool = False) -> None:
        """Restore a snapshot made by :meth:`get_state` (of a stream of this model and batch size).

        NaN or Inf is refused unless ``allow_nonfinite``: the state a stream holds after NaN inputs
        (docs/SECURITY.md), which ``edgernn replay`` carries from one chunk of a series to the next."""
        if not isinstance(state, dict):
            raise InvalidInput("set_state takes the dict that get_state returns")
        expected = {name: stage.states[k].shape for name, stage, k in self._state_names()}
        expected["output"] = (self.batch_size, self.output_features)
        problems = [f"missing {k!r}" for k in expected if k not in state]
        problems += [f"unknown {k!r}" for k in state if k not in expected]
        arrays = {}
        for name, shape in expected.items():
            if name in state:
                array = np.asarray(state[name])
                if array.shape != shape or array.dtype.kind != "f":
                    problems.append(f"{name!r} must be a float array of shape {shape}, got {array.dtype} {array.shape}")
                elif not allow_nonfinite and not np.all(np.isfinite(array)):
                    problems.append(f"{name!r} holds NaN or Inf")
                arrays[name] = array
        for name, stage, k in self._state_names():
            # Counters index the ring: each must be a whole number in its range, whatever allow_nonfinite says.
            if isinstance(stage, _WindowStage) and k == 1 and name in arrays and arrays[name].shape == stage.states[1].shape:
                counters, limits = arrays[name], np.asarray(stage.counter_limits)
                if not np.all((counters == np.floor(counters)) & (counters >= 0) & (counters <= limits)):
                    problems.append(f"{name!r} must hold whole numbers from 0 to {tuple(int(v) for v in limits)} "
                                    "per column")
        if problems:
            raise InvalidInput("state does not fit this stream", problems)
        for name, stage, k in self._state_names():
            stage.states[k][:] = arrays[name]
            if k == 0 and isinstance(stage, _RecurrentStage):
                stage.previous[:] = arrays[name]  # the previous output of these cells is their h
        self._last_output[:] = arrays["output"]
        self._emitted[:] = 0.0
        self._has_output = True
