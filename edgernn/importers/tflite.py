"""TFLite importer: ``.tflite`` files made by TFLiteConverter from Keras RNN and 1-D CNN models -> :class:`~edgernn.ir.ModelSpec`.

The forms TensorFlow 2.21 writes (found by converting Keras models and reading the files):

* **fused** ``UNIDIRECTIONAL_SEQUENCE_LSTM``: what tf-keras (Keras 2) LSTMs become, and what most
  deployed ``.tflite`` LSTMs hold. Weights per gate, ``(units, input)``; the cell state is clipped
  to ±``cell_clip`` (the converter writes 10 for Keras LSTMs). tf-keras GRU and SimpleRNN layers
  are *not* fused: they become WHILE loops.
* **WHILE loop**: what Keras 3 makes of every LSTM/GRU/SimpleRNN (and tf-keras of GRU/SimpleRNN):
  the main graph transposes the input to time-major and runs a WHILE op whose body subgraph holds
  one cell step (FULLY_CONNECTED with the kernel and with the recurrent kernel, a SPLIT or
  STRIDED_SLICEs into gates, LOGISTIC/TANH, MUL/ADD/SUB), writing each step's output into a
  tensor list lowered to RESHAPE or CONCATENATION+SLICE.
* **unrolled** (``unroll=True``): the same cell ops repeated once per timestep in the main graph,
  the first step simplified by the converter (terms of the zero initial state are folded away).

Heads: FULLY_CONNECTED (fused RELU/RELU6/TANH/RELU_N1_TO_1 activations), LOGISTIC, TANH, RELU,
SOFTMAX, LOG_SOFTMAX ... per step or on the last step (STRIDED_SLICE).

Around the recurrent layers (or without any), what the converter makes of Keras's 1-D convolutional
layers: CONV_2D / DEPTHWISE_CONV_2D over a (batch, 1, time, channels) tensor (Conv1D, grouped,
DepthwiseConv1D, SeparableConv1D as depthwise then pointwise; a causal one after a PAD of (k-1)*d
zeros on the left; a dilated one with a dynamic time axis between SPACE_TO_BATCH_ND and
BATCH_TO_SPACE_ND, its bias added after), MAX_POOL_2D / AVERAGE_POOL_2D, MEAN / REDUCE_MAX over time (global pooling), a
RESHAPE to (batch, T*C) before FULLY_CONNECTED (Flatten), BatchNormalization folded into the
convolution's weights or left as MUL + ADD (an ir.Affine), ADD / SUB / MUL / MAXIMUM / MINIMUM of two
layers' outputs and CONCATENATION over features (merges; a residual connection makes a graph),
LayerNormalization over the features (MEAN, SQUARED_DIFFERENCE, RSQRT and the products by it).

How the layers are found (see :mod:`._tflite_symbolic`): the graph is *executed* on symbolic
values -- WHILE loops run iteration by iteration, fused ops expanded step by step -- so every
output row becomes an exact affine-plus-atoms expression of the input rows, whatever layout ops
the converter chose. The importer then reads the layers off the last timestep's output, from the
top down: a recurrent cell is recognised by its equations (LSTM ``h = σ(o) φ(f c + i g)``, GRU
``h = z h' + (1 - z) φ(...)`` with the reset gate inside or outside the recurrent product, which
tells ``reset_after``; SimpleRNN ``h = φ(x W + h' U + b)`` checked over the whole chain of steps),
its kernel, recurrent kernel and biases read from the affine forms (so the gate split, transposes
and bias folding of each form need no special case); a Dense layer by an affine map of the layer
below; a convolution, pooling, concatenation or max/min merge by the "layer" atom the executor made
of it (which holds its weights and input); an Add/Subtract/Multiply by a sum, difference or
product of layers' outputs; a LayerNormalization by the products of one row with its
``rsqrt(mean(d * d) + epsilon)``, which :func:`_normalized` writes as one atom. Each layer's inputs are recognised from their own last rows, so the
result is a graph (a row met again is the layer already built). Finally the recognised model is run (float64 reference) against the symbolic graph itself
on random inputs over every batch row and timestep: if they disagree beyond float rounding, the
file is refused. A form the recognition does not know is refused naming what it could not
place -- never converted approximately.

Weight layouts: TFLite FULLY_CONNECTED weights are ``(units, input)`` (``y = x W^T + b``), the
transpose of the IR's ``(input, gates * units)``; the gate order comes out of the recognised
equations (IR: LSTM i, f, c, o; GRU z, r, h). Dynamic-range quantized weights (int8 with a scale
per channel) are dequantized ``(q - zero_point) * scale``; float16 weights are read through their
DEQUANTIZE ops. TFLiteConverter needs a fixed batch size; the converted model takes any batch (and
any sequence length: ``Input.timesteps`` records the file's).

Refused: fully integer-quantized models (int8 inputs or activations), Bidirectional, masking,
go_backwards, stateful variables beyond the fused op's own, CIFG/peephole/projection/layer-norm
fused LSTMs, a normalization over another axis than the features, 2-D convolutions and poolings, several inputs or outputs, ops not
listed above (named in the error).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Optional

import numpy as np

from .. import graph, ir, reference
from ..errors import InvalidInput, InvalidModelFile, UnknownOption, UnsupportedModel
from ._fold import fold_into_linear_maps
from ._refusals import points_to
from ._tflite_reader import FormatError, Model, Subgraph, Tensor, read_model
from ._tflite_symbolic import (Atom, Executor, Lin, Sym, Unsupported, atom_row, dense, evaluate, is_identity,
                               lin_add, lin_equal, lin_matmul, lin_scale)

__all__ = ["load_tflite_file", "run_source"]

# Ops the symbolic executor handles (everything else is refused up front, all names at once).
_KNOWN_OPS = {
    "ADD", "SUB", "MUL", "DIV", "LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "ELU", "HARD_SWISH",
    "LEAKY_RELU", "GELU", "SOFTMAX", "LOG_SOFTMAX", "FULLY_CONNECTED", "RESHAPE", "TRANSPOSE", "SQUEEZE",
    "EXPAND_DIMS", "STRIDED_SLICE", "SLICE", "SPLIT", "SPLIT_V", "GATHER", "UNPACK", "PACK", "CONCATENATION",
    "TILE", "BROADCAST_TO", "DYNAMIC_UPDATE_SLICE", "SHAPE", "DEQUANTIZE", "WHILE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN", "LESS", "LESS_EQUAL", "GREATER",
    "GREATER_EQUAL", "EQUAL", "NOT_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "MAXIMUM", "MINIMUM",
    "FLOOR_DIV", "FLOOR_MOD", "CAST", "FILL", "ZEROS_LIKE", "RANGE", "REDUCE_MAX", "REDUCE_MIN", "SUM",
    "REDUCE_PROD", "MEAN", "NEG", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD",
    "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "SQUARED_DIFFERENCE", "RSQRT",
}
_FLOAT_TYPES = {0, 1, 10}        # float32, float16, float64
_QUANTIZED_TYPES = {3, 7, 9}     # uint8, int16, int8
_DYNAMIC_TIMESTEPS = 6           # sequence length used to execute a graph whose time axis is dynamic
_CONFIRM_ATOL, _CONFIRM_RTOL = 1e-6, 1e-5  # recognised layers vs the graph, both float64
_MAX_INPUT_ROWS = 100_000
_MAX_LAYER_DEPTH = 200           # layers in a chain the recognizer follows (it recurses)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def load_tflite_file(path, **options) -> ir.ModelSpec:
    """Read a ``.tflite`` file into a ModelSpec, without TensorFlow or an interpreter.

    Raises :class:`InvalidModelFile` for a file that is not a well-formed TFLite flatbuffer and
    :class:`UnsupportedModel` (every problem listed) for what cannot be converted exactly.
    """
    if options:
        raise UnknownOption("load_tflite_file", options)
    path = Path(path)
    label = path.name
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise InvalidModelFile(f"{label}: cannot read the file: {exc}") from exc
    try:
        model = read_model(blob)
    except FormatError as exc:
        raise InvalidModelFile(f"{label}: not a valid .tflite file: {exc}") from exc
    return fold_into_linear_maps(_Importer(model, label).convert({"format": "tflite", "file": label}))


def _interpreter_class():
    """The TFLite interpreter class: ai-edge-litert (preferred) or tflite-runtime; ImportError if neither."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise ImportError("running a .tflite model needs ai-edge-litert (pip install ai-edge-litert) "
                              "or tflite-runtime") from exc
    return Interpreter


def interpreter_name() -> str:
    """``"ai-edge-litert <version>"`` or ``"tflite-runtime <version>"``; ImportError if neither."""
    from importlib import metadata

    cls = _interpreter_class()
    dist = "ai-edge-litert" if cls.__module__.startswith("ai_edge_litert") else "tflite-runtime"
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:  # pragma: no cover - installed without metadata
        return dist


def run_source(source, inputs, **options) -> list:
    """Run the ``.tflite`` file with the TFLite interpreter on ``inputs`` (one (batch, T, features) array).

    The file's fixed batch size (TFLiteConverter needs one) is handled by running the rows in
    chunks of that size (the last chunk padded) unless the batch axis is dynamic, when the input
    is resized. Variables (the fused LSTM's state) are reset before every invoke, so each chunk
    starts from zero state like :meth:`edgernn.Model.predict`. Returns ``[outputs]``.
    """
    if options:
        raise UnknownOption("run_source", options)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError("run_source takes the path of a .tflite file")
    Interpreter = _interpreter_class()
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    if len(inputs) != 1:
        raise InvalidInput(f"a .tflite model converted by edgernn takes one input, got {len(inputs)}")
    x = np.asarray(inputs[0], np.float32)
    interpreter = Interpreter(model_path=str(source))
    detail = interpreter.get_input_details()
    if len(detail) != 1:
        raise InvalidInput(f"{Path(source).name}: the model has {len(detail)} inputs")
    detail = detail[0]
    shape = [int(v) for v in detail["shape"]]
    signature = [int(v) for v in detail.get("shape_signature", detail["shape"])]
    if x.ndim != len(shape):
        raise InvalidInput(f"input must have rank {len(shape)}, got shape {x.shape}")
    wanted = list(shape)
    for axis in range(1, x.ndim):
        if x.shape[axis] != shape[axis]:
            if signature[axis] != -1:
                raise InvalidInput(f"{Path(source).name} takes inputs of shape (batch, {', '.join(map(str, shape[1:]))}); "
                                   f"got {x.shape} (the converter fixed that axis)")
            wanted[axis] = x.shape[axis]
    dynamic_batch = signature[0] == -1
    chunk = x.shape[0] if dynamic_batch else shape[0]
    wanted[0] = chunk
    if wanted != shape:
        interpreter.resize_tensor_input(detail["index"], wanted, strict=False)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    outputs = interpreter.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outputs]
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk]
        rows = part.shape[0]
        if rows < chunk:
            part = np.concatenate([part, np.zeros((chunk - rows,) + part.shape[1:], np.float32)])
        interpreter.reset_all_variables()  # the fused LSTM keeps its state in variables between invokes
        interpreter.set_tensor(detail["index"], np.ascontiguousarray(part, dtype=detail["dtype"]))
        interpreter.invoke()
        for k, out in enumerate(outputs):
            results[k].append(np.array(interpreter.get_tensor(out["index"]))[:rows])
    return [np.concatenate(r) if r else np.zeros((0,), np.float32) for r in results]


# ---------------------------------------------------------------------------------------------
# The importer
# ---------------------------------------------------------------------------------------------


class _Importer:
    def __init__(self, model: Model, label: str):
        self.model, self.label = model, label
        self._constants: dict[tuple[int, int], Optional[np.ndarray]] = {}
        self.notes: list[str] = []
        self.quantized: set[str] = set()

    # -- constants ---------------------------------------------------------------------------
    def float_constant(self, g: Subgraph, tensor: Tensor):
        key = (g.index, tensor.index)
        if key in self._constants:
            return self._constants[key]
        try:
            value = self.model.constant(tensor)
        except FormatError as exc:
            raise InvalidModelFile(f"{self.label}: {exc}") from exc
        if value is not None:
            if tensor.type_code in _FLOAT_TYPES:
                if tensor.type_code == 1:
                    self.quantized.add("float16 weights")
                value = value.astype(np.float64)
            elif tensor.type_code in _QUANTIZED_TYPES and tensor.scale is not None:
                # Dynamic-range quantization: real = (q - zero_point) * scale, per channel along
                # quantized_dimension (per tensor when there is one scale).
                scale, zero = tensor.scale, tensor.zero_point
                if len(scale) > 1:
                    shape = [1] * value.ndim
                    shape[tensor.quantized_dimension] = len(scale)
                    scale, zero = scale.reshape(shape), zero.reshape(shape)
                value = ((value.astype(np.float64) - zero) * scale).astype(np.float32).astype(np.float64)
                self.quantized.add(f"{tensor.type_name} weights (dynamic-range quantization)")
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise InvalidModelFile(f"{self.label}: tensor {tensor.name!r} holds NaN or Inf")
        self._constants[key] = value
        return value

    # -- driver --------------------------------------------------------------------------------
    @points_to("docs/tflite.md")
    def convert(self, source: dict) -> ir.ModelSpec:
        main = self.model.subgraphs[0]
        problems = self._scan()
        if len(main.inputs) != 1:
            problems.append(f"the model has {len(main.inputs)} inputs (edgernn converts one sequence input)")
        if len(main.outputs) != 1:
            problems.append(f"the model has {len(main.outputs)} outputs (edgernn converts one)")
        if problems:
            raise UnsupportedModel(f"{self.label}: cannot convert this model", problems)
        x_tensor = main.tensors[main.inputs[0]]
        y_tensor = main.tensors[main.outputs[0]]
        for what, t in (("input", x_tensor), ("output", y_tensor)):
            if t.type_code != 0:
                problems.append(f"the {what} {t.name!r} is {t.type_name} (fully integer-quantized models are not "
                                "supported; dynamic-range and float16 quantization are)")
        if len(x_tensor.shape) != 3:
            problems.append(f"the input {x_tensor.name!r} has shape {list(x_tensor.shape)}, not (batch, timesteps, features)")
        if problems:
            raise UnsupportedModel(f"{self.label}: cannot convert this model", problems)
        batch, steps, features = x_tensor.shape
        signature = x_tensor.signature or x_tensor.shape
        dynamic_steps = signature[1] == -1
        if dynamic_steps:
            steps = _DYNAMIC_TIMESTEPS
        batch = max(int(batch), 1)
        if batch * steps > _MAX_INPUT_ROWS or features > _MAX_INPUT_ROWS:
            raise UnsupportedModel(f"{self.label}: input shape {list(x_tensor.shape)} is larger than edgernn executes "
                                   f"to read the layers (at most {_MAX_INPUT_ROWS} batch rows x timesteps)")
        if steps < 2:
            raise UnsupportedModel(f"{self.label}: the input holds {steps} timestep; edgernn reads the recurrent "
                                   "weights off the second step, convert with a sequence length of 2 or more")
        # The model input as symbolic rows: one atom per (batch row, timestep).
        rows = np.empty((batch, steps), object)
        for b in range(batch):
            for t in range(steps):
                rows[b, t] = atom_row(Atom("input", (), (b, t), int(features)))
        x = Sym((batch, steps, int(features)), rows)
        executor = Executor(self.model, self.float_constant)
        try:
            (y,) = executor.run(0, [x])
        except Unsupported as exc:
            raise UnsupportedModel(f"{self.label}: cannot convert this model", [str(exc)]) from None
        except FormatError as exc:  # options tables are read lazily, while executing
            raise InvalidModelFile(f"{self.label}: not a valid .tflite file: {exc}") from None
        except (RecursionError, MemoryError) as exc:
            raise UnsupportedModel(f"{self.label}: cannot convert this model",
                                   [f"executing the graph failed ({type(exc).__name__})"]) from None
        if not isinstance(y, Sym):
            raise UnsupportedModel(f"{self.label}: the output does not depend on the input")
        if len(y.shape) == 3 and y.shape[0] == batch and y.shape[1] >= 1:
            sequence = True  # of the input's length, or another (strided or valid convolutions, pooling)
            top = y.rows[0, -1]
        elif len(y.shape) == 2 and y.shape[0] == batch:
            sequence = False
            top = y.rows[0]
        else:
            raise UnsupportedModel(f"{self.label}: output shape {list(y.shape)} is neither (batch, timesteps, "
                                   "features) nor (batch, features)")
        lengths = {steps} | {layer.steps for layer in executor.layers if layer.steps}
        recognizer = _Recognizer(self.label, lengths, rows[0, steps - 1])
        recognizer.build(top, sequence)
        layers = recognizer.layers
        spec = self._spec(layers, x_tensor, int(features), None if dynamic_steps else steps, sequence, source, executor)
        self._confirm(spec, x, y)
        return spec

    def _scan(self) -> list[str]:
        """Every op outside what the executor handles, named with where it sits."""
        unknown: dict[str, set[str]] = {}
        for g in self.model.subgraphs:
            for op in g.operators:
                if op.name not in _KNOWN_OPS:
                    unknown.setdefault(op.name, set()).add(g.name or f"subgraph {g.index}")
        problems = []
        for name, where in sorted(unknown.items()):
            hint = ""
            if name.startswith("BIDIRECTIONAL_SEQUENCE"):
                hint = " (Bidirectional layers are not supported from TFLite)"
            elif name in ("REVERSE_V2", "REVERSE_SEQUENCE"):
                hint = " (go_backwards and Bidirectional layers are not supported from TFLite)"
            elif name in ("SELECT", "SELECT_V2"):
                hint = " (masking is not supported from TFLite)"
            elif name.startswith("CUSTOM(Flex"):
                hint = (" (a TensorFlow op kept by SELECT_TF_OPS; TFLiteConverter lowers RNNs to builtin ops "
                        "when the batch size is fixed)")
            elif name == "QUANTIZE":
                hint = " (quantized activations are not supported)"
            problems.append(f"op {name} in {', '.join(sorted(where))}{hint}")
        return problems

    def _spec(self, layers, x_tensor, features, timesteps, sequence, source, executor) -> ir.ModelSpec:
        name = x_tensor.name.removeprefix("serving_default_").split(":")[0] or "input"
        nodes, names, used = [], [], {}

        def fresh(base: str) -> str:
            used[base] = used.get(base, -1) + 1
            return base if used[base] == 0 else f"{base}_{used[base]}"

        for layer in layers:
            inputs = tuple(name if i < 0 else names[i] for i in layer["inputs"])
            try:
                op = self._op(layer, fresh)
            except InvalidModelFile as exc:
                raise UnsupportedModel(f"{self.label}: the recognised layers are inconsistent", [str(exc)]) from None
            nodes.append(ir.Node(op, inputs, (op.name,)))
            names.append(op.name)
        current = names[-1] if names else name
        recurrent = any(layer["kind"] == "recurrent" for layer in layers)
        forms = {"fused": "fused UNIDIRECTIONAL_SEQUENCE_LSTM/RNN", "while": "WHILE loop"}
        found = [forms[f] for f in sorted(executor.forms)] or (["unrolled"] if recurrent else [])
        notes = list(dict.fromkeys(executor.notes + self.notes))
        if any("clips its cell state" in n for n in notes):
            notes = [n + " (edgernn does not: outputs differ only where |c| would exceed the bound)"
                     if "clips its cell state" in n else n for n in notes]
        source = {**source, "framework": "tflite", "tflite_forms": found,
                  "tflite_input_shape": [int(v) for v in (x_tensor.signature or x_tensor.shape)]}
        if self.quantized:
            source["quantized"] = sorted(self.quantized)
        if notes:
            source["notes"] = notes
        try:
            return ir.ModelSpec((ir.Input(name, features, 3, timesteps),), tuple(nodes), (current,), source)
        except InvalidModelFile as exc:
            raise UnsupportedModel(f"{self.label}: the recognised layers are inconsistent", [str(exc)]) from None

    @staticmethod
    def _op(layer: dict, fresh):
        """The IR op of one recognised layer; ``fresh(base)`` names it."""
        kind = layer["kind"]
        if kind == "recurrent":
            return ir.Recurrent(
                name=fresh({"lstm": "lstm", "gru": "gru", "simple": "simple_rnn"}[layer["cell"]]), cell=layer["cell"],
                units=layer["units"], input_size=layer["input_size"], kernel=ir.as_weight(layer["kernel"]),
                recurrent_kernel=ir.as_weight(layer["recurrent_kernel"]), bias=ir.as_weight(layer["bias"]),
                recurrent_bias=None if layer.get("recurrent_bias") is None else ir.as_weight(layer["recurrent_bias"]),
                activation=layer["activation"], recurrent_activation=layer.get("recurrent_activation", "sigmoid"),
                reset_after=layer.get("reset_after", True), return_sequences=layer["sequence"])
        if kind == "dense":
            return ir.Dense(fresh("dense"), ir.as_weight(layer["kernel"]), ir.as_weight(layer["bias"]), layer["activation"])
        if kind == "activation":
            return ir.Activation(fresh("activation"), layer["activation"])
        if kind == "affine":
            return ir.Affine(fresh("batch_normalization"), ir.as_weight(layer["scale"]), ir.as_weight(layer["offset"]))
        if kind == "conv":
            base = "depthwise_conv1d" if layer["depthwise"] else "conv1d"
            return ir.Conv1D(fresh(base), ir.as_weight(layer["kernel"]), ir.as_weight(layer["bias"]),
                             strides=layer["strides"], padding=layer["padding"], dilation_rate=layer["dilation_rate"],
                             groups=layer["groups"], activation=layer["activation"])
        if kind == "pad":
            return ir.Pad1D(fresh("zero_padding1d"), *layer["pad"])
        if kind == "pool":
            if layer.get("global"):
                return ir.Pooling1D(fresh(f"global_{layer['pool']}_pooling1d"), layer["pool"], global_pool=True)
            return ir.Pooling1D(fresh(f"{layer['pool']}_pooling1d"), layer["pool"], pool_size=layer["pool_size"],
                                strides=layer["strides"], padding=layer["padding"])
        if kind == "flatten":
            return ir.Flatten(fresh("flatten"), layer["steps"])
        if kind == "layer_norm":
            gamma, beta = (None if layer[k] is None else ir.as_weight(layer[k]) for k in ("gamma", "beta"))
            return ir.LayerNorm(fresh("layer_normalization"), "layer", layer["epsilon"], gamma, beta)
        if kind == "merge":
            return ir.Merge(fresh(layer["mode"]), layer["mode"])
        if kind == "concatenate":
            return ir.Concatenate(fresh("concatenate"))
        raise AssertionError(kind)

    def _confirm(self, spec: ir.ModelSpec, x: Sym, y: Sym) -> None:
        """The recognised model against the symbolic graph, float64, every batch row and timestep."""
        batch, steps, features = x.shape
        rng = np.random.default_rng(20240611)
        scales = np.array([0.5, 1.0, 2.0])
        values = rng.normal(size=(len(scales), batch, steps, features)) * scales[:, None, None, None]
        with np.errstate(all="ignore"):  # overflow in a hostile file's graph is a mismatch, not a warning
            graph_rows = evaluate(y.flat_rows(), lambda pos: values[:, pos[0], pos[1], :])
            got = np.stack(graph_rows, axis=1).reshape((len(scales),) + y.shape)
            wants = [graph.execute(spec, [values[s]], reference)[0] for s in range(len(scales))]
        for s, want in enumerate(wants):
            if want.shape != got[s].shape:
                raise UnsupportedModel(f"{self.label}: the recognised layers make shape {want.shape}, the graph "
                                       f"{got[s].shape}")
            err = np.abs(want - got[s])
            if not np.all(err <= _CONFIRM_ATOL + _CONFIRM_RTOL * np.abs(got[s])):
                raise UnsupportedModel(
                    f"{self.label}: the layers recognised in the graph do not reproduce it (max error "
                    f"{float(err.max()):.3g}); refusing rather than converting approximately",
                    [_describe(spec)])


def _describe(spec: ir.ModelSpec) -> str:
    return "recognised: " + " -> ".join(f"{type(n.op).__name__}({n.op.name})" for n in spec.nodes)


# ---------------------------------------------------------------------------------------------
# Recognition of layers from the symbolic last step
# ---------------------------------------------------------------------------------------------


def _single_atom(row: Lin) -> Optional[Atom]:
    """The atom ``a`` if ``row`` is exactly ``value(a)``."""
    if len(row.terms) == 1 and not np.any(row.bias):
        ((a, m),) = row.terms.items()
        if a.width == row.width and is_identity(m, a.width):
            return a
    return None


def _gate(row: Lin):
    """``(activation, preactivation row)`` if ``row`` is an activation of an affine row, else None."""
    a = _single_atom(row)
    if a is not None and a.kind == "act":
        return a.param, a.args[0]
    # Keras 3 hard_sigmoid lowered as relu6(x + 3) / 6.
    if len(row.terms) == 1 and not np.any(row.bias):
        ((a, m),) = row.terms.items()
        if (a.kind == "act" and a.param == "relu6" and m is not None and m.shape == (a.width, a.width)
                and np.allclose(m, np.eye(a.width) / 6.0)):
            pre = a.args[0]
            return "hard_sigmoid", Lin(pre.terms, pre.bias - 3.0)
    return None


def _atoms(row: Lin) -> set:
    return {id(a) for a in row.terms}


def _split(row: Lin, part: Lin):
    """``(M, rest)`` with ``row = part @ M + rest`` and ``rest`` free of ``part``'s atoms, or None."""
    atoms = list(part.terms)
    if not atoms or any(a not in row.terms for a in atoms):
        return None
    a0 = atoms[0]
    target = dense(row.terms[a0], a0.width)
    p0 = part.terms[a0]
    if is_identity(p0, a0.width):
        m = target
    else:
        m = np.linalg.lstsq(dense(p0, a0.width), target, rcond=None)[0]
    for a in atoms:
        if not np.allclose(dense(part.terms[a], a.width) @ m, dense(row.terms[a], a.width), rtol=1e-9, atol=1e-12):
            return None
    rest = Lin({k: v for k, v in row.terms.items() if k not in part.terms}, row.bias - part.bias @ m)
    return m, rest


_NORMS: "weakref.WeakKeyDictionary[Atom, Optional[Atom]]" = weakref.WeakKeyDictionary()


def _norm_atom(rsqrt: Atom) -> Optional[Atom]:
    """The atom ``d r`` of a LayerNormalization (param: epsilon), ``r`` = ``rsqrt`` when it is
    ``rsqrt(mean(d * d) + epsilon)`` over the features; one per ``rsqrt`` (else None)."""
    if rsqrt not in _NORMS:
        variance = rsqrt.args[0]
        square = next(iter(variance.terms)) if len(variance.terms) == 1 else None
        ok = (square is not None and square.kind == "mul" and variance.width == 1 and square.args[0] is square.args[1]
              and np.allclose(dense(variance.terms[square], square.width), 1.0 / square.width, rtol=1e-6, atol=0))
        _NORMS[rsqrt] = Atom("layer_norm", (square.args[0],), float(variance.bias[0]), square.width) if ok else None
    return _NORMS[rsqrt]


def _normalized(row: Lin) -> Lin:
    """``row`` with the products by a LayerNormalization's ``r = rsqrt(mean(d * d) + epsilon)`` (one
    number per row) written as its atom ``d r``: the converter's MEAN, SQUARED_DIFFERENCE, MEAN, ADD,
    RSQRT, then products with ``r`` (times gamma) of ``x``, of ``mean(x)`` or of ``d``, summed or
    subtracted in whatever order and width it chose, maybe under a Dense. ``r`` being one number,
    ``sum_k (p_k * (r G_k)) @ M_k = r S`` with ``S = sum_k (p_k * G_k) @ M_k``, which must be
    ``d @ V``: then the row is ``(d r) @ V`` (gamma, beta and any Dense in ``V`` and the bias).
    ``row`` itself when it has no such products, or they do not make a normalization."""
    by_norm: dict = {}
    terms = {}
    for a, m in row.terms.items():
        factor = None
        if a.kind == "mul":
            for p, q in _pairs(a.args):
                atom = next(iter(q.terms)) if len(q.terms) == 1 and not np.any(q.bias) else None
                if atom is not None and atom.kind == "act" and atom.param == "rsqrt" and atom.width == 1:
                    factor = p, atom, dense(q.terms[atom], 1)[0]
                    break
        if factor is None:
            terms[a] = m
            continue
        p, rsqrt, scale = factor
        norm = _norm_atom(rsqrt)
        if norm is None:
            return row
        part = lin_matmul(lin_scale(p, scale), dense(m, a.width))
        by_norm[norm] = lin_add(by_norm[norm], part) if norm in by_norm else part
    if not by_norm:
        return row
    for norm, summed in by_norm.items():
        centered = norm.args[0]
        atom = max(centered.terms, key=lambda a: np.abs(dense(centered.terms[a], a.width)).sum())
        if atom not in summed.terms:
            return row
        d, target = dense(centered.terms[atom], atom.width), dense(summed.terms[atom], atom.width)
        # V is not unique (d's columns sum to zero); a diagonal one (gamma alone) is tried first
        diagonal = np.diag((d * target).sum(axis=0) / np.maximum((d * d).sum(axis=0), 1e-300)) \
            if target.shape == d.shape else None
        v = next((m for m in (diagonal, np.linalg.lstsq(d, target, rcond=None)[0])
                  if m is not None and lin_equal(summed, lin_matmul(centered, m))), None)
        if v is None:
            return row
        terms[norm] = None if is_identity(v, norm.width) and v.shape[1] == norm.width else v
    return Lin(terms, row.bias)


def _common(row: Lin):
    """``(W, input row, bias)`` if ``row = input @ W + bias`` where the input row is the sum of
    ``row``'s atoms (the output of one layer); None if its atoms carry different matrices."""
    row = _normalized(row)
    if not row.terms:
        return None
    items = list(row.terms.items())
    a0, m0 = items[0]
    w = dense(m0, a0.width)
    signs = {}
    for a, m in items:
        if a.width != a0.width:
            return None
        if np.allclose(dense(m, a.width), w, rtol=1e-9, atol=1e-12):
            signs[a] = None
        elif len(items) == 2 and np.allclose(dense(m, a.width), -w, rtol=1e-9, atol=1e-12):
            signs[a] = -np.eye(a.width)  # the input is a difference (a Subtract)
        else:
            return None
    return w, Lin(signs, np.zeros(a0.width)), row.bias


def _pairs(args: tuple):
    return ((args[0], args[1]), (args[1], args[0]))


class _Recognizer:
    """Reads the layers off the graph's output, from the top down, into ``layers``: dicts in
    topological order, each with ``inputs`` (indices into ``layers``, -1 for the model input) and
    ``sequence`` (whether its consumers read the whole sequence or only the last step's row).

    Every layer is recognised from one row -- its output at the last timestep of batch row 0 --
    and says which rows its inputs are; a row met again (the input of a residual connection) is
    the layer already built."""

    def __init__(self, label: str, lengths: set, last_input: Lin):
        self.label, self.lengths, self.last_input = label, lengths, last_input
        self.layers: list[dict] = []
        self._made: dict = {}  # row key -> index of the layer that made it
        self._depth = 0

    def fail(self, what: str):
        raise UnsupportedModel(f"{self.label}: cannot recognise the model's layers", [what])

    def build(self, row: Lin, sequence: bool) -> int:
        """The index of the layer whose output ``row`` is (-1: the model input), built with its inputs."""
        row = _normalized(row)
        if lin_equal(row, self.last_input):
            return -1
        key = _row_key(row)
        if key in self._made:
            return self._made[key]
        if self._depth >= _MAX_LAYER_DEPTH:  # recursion below, a hostile file must not exhaust the stack
            self.fail(f"more than {_MAX_LAYER_DEPTH} layers one after the other")
        a = _single_atom(row)
        if a is not None and a.kind == "input":
            self.fail(f"the last output step reads input timestep {a.param[1]} directly, not the last one "
                      "(go_backwards or a reordered input is not supported)")
        layer = (self._lstm(row) or self._gru(row) or self._simple(row) or self._kept_whole(row)
                 or self._layer_norm(row) or self._merge(row) or self._dense(row))
        if layer is None:
            self.fail("an output that is neither an LSTM, GRU or SimpleRNN step, a convolution, pooling or merge, "
                      f"nor a Dense/activation layer of the layer below ({_row_summary(row)})")
        self._depth += 1
        try:
            index = self._made[key] = self._add(layer, sequence)
        finally:
            self._depth -= 1
        return index

    def _add(self, layer: dict, sequence: bool) -> int:
        """Build ``layer``'s inputs (rows, or layer dicts made with it: a Flatten, a Concatenate
        under a Dense), then the layer; its index."""
        inputs = []
        for source, needs_sequence in layer.pop("input_rows"):
            wants = sequence if needs_sequence is None else needs_sequence
            inputs.append(self._add(source, wants) if isinstance(source, dict) else self.build(source, wants))
        layer["inputs"], layer["sequence"] = inputs, sequence
        self.layers.append(layer)
        return len(self.layers) - 1

    # -- shared: input side of a preactivation -------------------------------------------------
    def _sides(self, pre: Lin, hrow: Lin):
        """Split a gate preactivation into recurrent kernel, kernel, input row and bias."""
        s = _split(pre, hrow)
        if s is None:
            return None
        u, rest = s
        c = _common(rest)
        if c is None:
            return None
        w, input_row, bias = c
        return w, u, input_row, bias

    @staticmethod
    def _same_inputs(rows: list) -> bool:
        return all(r.terms.keys() == rows[0].terms.keys() for r in rows[1:])

    # -- LSTM ------------------------------------------------------------------------------------
    def _lstm(self, row: Lin) -> Optional[dict]:
        """``h = σ(o) φ(c)``, ``c = σ(f) c_prev + σ(i) φ(g)`` (c possibly clipped by the fused op)."""
        a = _single_atom(row)
        if a is None or a.kind != "mul":
            return None
        for p, q in _pairs(a.args):
            go, gc = _gate(p), _gate(q)
            if go is None or gc is None:
                continue
            rec_act, pre_o = go
            act, cell = gc
            clip_atom = _single_atom(cell)
            if clip_atom is not None and clip_atom.kind == "clip":
                cell = clip_atom.args[0]
            found = self._cell_update(cell, rec_act, act, pre_o)
            if found is None:
                continue
            pre_i, pre_f, pre_g, c_prev = found
            h_prev = self._lstm_previous_output(pre_o, c_prev, rec_act, act)
            if h_prev is None:
                continue
            sides = [self._sides(pre, atom_row(h_prev)) for pre in (pre_i, pre_f, pre_g, pre_o)]
            if any(s is None for s in sides) or not self._same_inputs([s[2] for s in sides]):
                continue
            return self._recurrent("lstm", row.width, sides, act, rec_act)
        return None

    def _cell_update(self, cell: Lin, rec_act: str, act: str, pre_o: Lin):
        if len(cell.terms) != 2 or np.any(cell.bias):
            return None
        muls = list(cell.terms.items())
        if any(k.kind != "mul" or not is_identity(m, k.width) for k, m in muls):
            return None
        want = _atoms(pre_o)
        for (fc, _), (ig, _) in ((muls[0], muls[1]), (muls[1], muls[0])):
            for f_row, c_prev in _pairs(fc.args):
                gf = _gate(f_row)
                if gf is None or gf[0] != rec_act or _atoms(gf[1]) != want:
                    continue
                for i_row, g_row in _pairs(ig.args):
                    gi, gg = _gate(i_row), _gate(g_row)
                    if (gi is not None and gg is not None and gi[0] == rec_act and gg[0] == act
                            and _atoms(gi[1]) == want and _atoms(gg[1]) == want):
                        return gi[1], gf[1], gg[1], c_prev
        return None

    @staticmethod
    def _lstm_previous_output(pre_o: Lin, c_prev: Lin, rec_act: str, act: str) -> Optional[Atom]:
        """The atom of ``pre_o`` that is the previous step's ``h = σ(o') φ(c_prev)``."""
        for k in pre_o.terms:
            if k.kind != "mul":
                continue
            for p, q in _pairs(k.args):
                gp, gq = _gate(p), _gate(q)
                if gp is not None and gq is not None and gp[0] == rec_act and gq[0] == act and lin_equal(gq[1], c_prev):
                    return k
        return None

    # -- GRU -------------------------------------------------------------------------------------
    def _gru(self, row: Lin) -> Optional[dict]:
        """``h = z h_prev + (1 - z) φ(x W_h + b_h + [r (h_prev U_h + b_rh)] or [(r h_prev) U_h])``."""
        if len(row.terms) != 2 or np.any(row.bias):
            return None
        muls = list(row.terms.items())
        if any(k.kind != "mul" or not is_identity(m, k.width) for k, m in muls):
            return None
        for (zh, _), (hh, _) in ((muls[0], muls[1]), (muls[1], muls[0])):
            for z_row, h_prev in _pairs(zh.args):
                gz = _gate(z_row)
                if gz is None:
                    continue
                rec_act, pre_z = gz
                one_minus_z = lin_add(Lin({}, np.ones(z_row.width)), z_row, -1.0)
                for omz, cand in _pairs(hh.args):
                    gh = _gate(cand)
                    if gh is None or not lin_equal(omz, one_minus_z):
                        continue
                    found = self._gru_candidate(gh[1], h_prev, rec_act, pre_z)
                    if found is None:
                        continue
                    pre_r, reset_after, u_h, b_rh, rest_h = found
                    sz = self._sides(pre_z, h_prev)
                    sr = self._sides(pre_r, h_prev)
                    ch = _common(rest_h)
                    if sz is None or sr is None or ch is None:
                        continue
                    sh = (ch[0], u_h, ch[1], ch[2])
                    if not self._same_inputs([sz[2], sr[2], sh[2]]):
                        continue
                    layer = self._recurrent("gru", row.width, [sz, sr, sh], gh[0], rec_act)
                    if layer is None:
                        continue
                    layer["reset_after"] = reset_after
                    if reset_after:
                        layer["recurrent_bias"] = np.concatenate([np.zeros(2 * row.width), b_rh])
                    return layer
        return None

    def _gru_candidate(self, pre_h: Lin, h_prev: Lin, rec_act: str, pre_z: Lin):
        want = _atoms(pre_z)
        for k, m in pre_h.terms.items():
            if k.kind != "mul":
                continue
            for r_row, other in _pairs(k.args):
                gr = _gate(r_row)
                if gr is None or gr[0] != rec_act or _atoms(gr[1]) != want:
                    continue
                rest = Lin({a: v for a, v in pre_h.terms.items() if a is not k}, pre_h.bias)
                if lin_equal(other, h_prev):  # reset_after=False: (r * h_prev) @ U_h
                    return gr[1], False, dense(m, k.width), None, rest
                if not is_identity(m, k.width):
                    continue
                s = _split(other, h_prev)  # reset_after=True: r * (h_prev @ U_h + b_rh)
                if s is None or s[1].terms:
                    continue
                return gr[1], True, s[0], s[1].bias, rest
        return None

    # -- SimpleRNN -------------------------------------------------------------------------------
    def _simple(self, row: Lin) -> Optional[dict]:
        """``h = φ(x W + h_prev U + b)``, h_prev the same cell one step back, over all steps."""
        g = _gate(row)
        if g is None:
            return None
        act, pre = g
        for k in pre.terms:
            if k.kind != "act" or k.param != act or k.width != row.width:
                continue
            sides = self._sides(pre, atom_row(k))
            if sides is None:
                continue
            w, u, input_row, bias = sides
            if self._simple_chain(k, act, w, u, bias) in self.lengths:
                return self._recurrent("simple", row.width, [sides], act, None)
        return None

    def _simple_chain(self, atom: Atom, act: str, w, u, bias) -> int:
        """How many steps (counting the top one) the chain below ``atom`` has with these weights."""
        depth = 1
        while True:
            depth += 1
            pre = atom.args[0]
            nxt = None
            for k in pre.terms:
                if k.kind == "act" and k.param == act and k.width == atom.width:
                    s = self._sides(pre, atom_row(k))
                    if s is not None and _close(s[0], w) and _close(s[1], u) and _close(s[3], bias):
                        nxt = k
                        break
            if nxt is None:  # the first step: no recurrent term (zero initial state)
                c = _common(pre)
                return depth if c is not None and _close(c[0], w) and _close(c[2], bias) else -1
            atom = nxt
            if depth > max(self.lengths):
                return -1

    # -- layers the executor kept whole: convolution, pooling, concatenation, max/min merges ----------
    def _kept_whole(self, row: Lin) -> Optional[dict]:
        a = _single_atom(row)
        if a is None or a.kind != "layer":
            return None
        layer = a.param[0]
        if layer.kind == "merge":
            return {"kind": "merge", "mode": layer.attrs["mode"], "input_rows": [(r, None) for r in a.args]}
        if layer.kind == "concatenate":
            return {"kind": "concatenate", "input_rows": [(r, None) for r in a.args]}
        below = layer.input.rows[0, -1]
        if layer.kind == "global_pool":
            return {"kind": "pool", "pool": layer.attrs["pool"], "global": True, "input_rows": [(below, True)]}
        if layer.kind == "conv" and layer.attrs["padding"] is None:
            self.fail("a convolution of a batch rearranged by SPACE_TO_BATCH_ND whose outputs no BATCH_TO_SPACE_ND "
                      "puts back in order")
        found = {"kind": layer.kind, **layer.attrs, "input_rows": [(below, True)]}
        if layer.kind == "conv" and found["pad"] != (0, 0):  # an explicit PAD that is not a causal one
            found["input_rows"] = [({"kind": "pad", "pad": found["pad"], "input_rows": [(below, True)]}, True)]
        return found

    # -- LayerNormalization -------------------------------------------------------------------------
    def _layer_norm(self, row: Lin) -> Optional[dict]:
        """A LayerNormalization's atom (see :func:`_normalized`) times ``diag(gamma)`` plus ``beta``.
        Its input is ``d`` with the centering taken off where it is exactly ``I - 1/C`` (else ``d``
        itself: LN(d) = LN(x)). (Under a Dense, gamma and beta are folded into the Dense's weights.)"""
        if len(row.terms) != 1:
            return None
        ((norm, m),) = row.terms.items()
        width = row.width
        gamma = None if m is None else np.diag(m).copy()
        if norm.kind != "layer_norm" or norm.width != width or (m is not None and not np.array_equal(m, np.diag(gamma))):
            return None
        centered = norm.args[0]
        centering = np.eye(width) - 1.0 / width
        terms = {a: (None if a.width == width and np.allclose(dense(t, width), centering, rtol=0, atol=1e-12) else t)
                 for a, t in centered.terms.items()}
        layer_input = Lin(terms, centered.bias) if all(t is None for t in terms.values()) else centered
        return {"kind": "layer_norm", "epsilon": norm.param, "gamma": gamma,
                "beta": row.bias if np.any(row.bias) else None, "input_rows": [(layer_input, None)]}

    # -- element-wise merges: Add, Subtract, Multiply of layers' outputs ------------------------------
    def _merge(self, row: Lin) -> Optional[dict]:
        """A product of two rows that is no recurrent cell's (tried first); a sum of layers' outputs,
        or the difference of two."""
        a = _single_atom(row)
        if a is not None and a.kind == "mul":  # not an LSTM's or GRU's product (tried first)
            return {"kind": "merge", "mode": "multiply", "input_rows": [(r, None) for r in a.args]}
        if len(row.terms) < 2 or np.any(row.bias):
            return None
        items = list(row.terms.items())
        if all(is_identity(m, k.width) and k.width == row.width for k, m in items):
            return {"kind": "merge", "mode": "add", "input_rows": [(atom_row(k), None) for k, _ in items]}
        if (len(items) == 2 and all(k.width == row.width for k, _ in items) and is_identity(items[0][1], row.width)
                and np.array_equal(dense(items[1][1], row.width), -np.eye(row.width))):
            return {"kind": "merge", "mode": "subtract", "input_rows": [(atom_row(k), None) for k, _ in items]}
        return None

    # -- Dense / Activation / per-feature Affine (a BatchNormalization the converter left as MUL, ADD) --
    def _dense(self, row: Lin) -> Optional[dict]:
        a = _single_atom(row)
        activation = "linear"
        pre = row
        if a is not None and a.kind in ("act", "softmax", "log_softmax"):
            activation = a.param if a.kind == "act" else a.kind
            pre = a.args[0]
        elif a is not None and a.kind == "clip":
            return None
        c = _common(pre)
        if c is None:
            return self._dense_of_several(pre, activation)
        w, input_row, bias = c
        square_identity = w.shape[0] == w.shape[1] and np.array_equal(w, np.eye(w.shape[0]))
        if square_identity and not np.any(bias):
            if activation == "linear":
                return None  # no layer: the row is its input
            return {"kind": "activation", "activation": activation, "input_rows": [(input_row, None)]}
        if activation not in ir.ACTIVATION_IDS:
            return None
        if w.shape[0] == w.shape[1] and np.array_equal(w, np.diag(np.diag(w))):
            # Per feature: a BatchNormalization left as MUL + ADD, or a bias added after a convolution
            # (with its activation fused into the ADD); the Affine is folded into a linear map below it.
            affine = {"kind": "affine", "scale": np.diag(w).copy(), "offset": bias, "input_rows": [(input_row, None)]}
            if activation == "linear":
                return affine
            return {"kind": "activation", "activation": activation, "input_rows": [(affine, None)]}
        return {"kind": "dense", "kernel": w, "bias": bias, "activation": activation, "input_rows": [(input_row, None)]}

    def _dense_of_several(self, pre: Lin, activation: str) -> Optional[dict]:
        """A Dense layer over every timestep of one sequence (the model input or a convolution's or
        pooling's output): what a Flatten then a Dense make."""
        if not pre.terms or activation not in ir.ACTIVATION_IDS:
            return None
        flat = self._flattened(list(pre.terms))
        if flat is None:
            return None
        steps, ordered = flat
        kernel = np.concatenate([dense(pre.terms[k], k.width) for k in ordered])
        below = {"kind": "flatten", "steps": steps, "input_rows": [(atom_row(ordered[-1]), True)]}
        return {"kind": "dense", "kernel": kernel, "bias": pre.bias, "activation": activation, "input_rows": [(below, False)]}

    def _flattened(self, atoms: list):
        """``(steps, atoms in time order)`` if ``atoms`` are every timestep of batch row 0 of the model
        input or of one kept-whole layer's output (what a Flatten's rows hold), else None."""
        source = {(a.kind, id(a.param[0]) if a.kind == "layer" else None) for a in atoms}
        if len(source) != 1 or not all(a.kind in ("input", "layer") for a in atoms):
            return None
        positions = {(a.param[1], a.param[2]) if a.kind == "layer" else a.param: a for a in atoms}
        steps = len(atoms)
        if len(positions) != steps or set(positions) != {(0, t) for t in range(steps)}:
            return None
        if atoms[0].kind == "input" and not lin_equal(atom_row(positions[(0, steps - 1)]), self.last_input):
            return None
        if atoms[0].kind == "layer" and atoms[0].param[0].steps != steps:
            return None
        return steps, [positions[(0, t)] for t in range(steps)]

    @staticmethod
    def _recurrent(cell: str, units: int, sides: list, act: str, rec_act: Optional[str]) -> dict:
        kernel = np.concatenate([s[0] for s in sides], axis=1)
        recurrent = np.concatenate([s[1] for s in sides], axis=1)
        bias = np.concatenate([s[3] for s in sides])
        layer = {"kind": "recurrent", "cell": cell, "units": units, "input_size": kernel.shape[0],
                 "kernel": kernel, "recurrent_kernel": recurrent, "bias": bias, "activation": act,
                 "input_rows": [(sides[0][2], True)]}
        if rec_act is not None:
            layer["recurrent_activation"] = rec_act
        for name in (act, rec_act):
            if name is not None and name not in ir.ELEMENTWISE_ACTIVATIONS:
                return None
        return layer


def _row_key(row: Lin):
    """What identifies a row: its atoms (by identity), their matrices and its bias."""
    return (tuple((id(k), None if m is None else np.asarray(m).tobytes()) for k, m in row.terms.items()),
            row.bias.tobytes())


def _close(a, b) -> bool:
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-12)


def _row_summary(row: Lin) -> str:
    kinds = sorted({(a.param if a.kind == "act" else a.kind) for a in row.terms})
    return f"{row.width} features from {', '.join(map(str, kinds)) or 'constants'}"
