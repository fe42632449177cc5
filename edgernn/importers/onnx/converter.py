"""ONNX importer: ``.onnx`` files with LSTM, GRU and RNN nodes -> :class:`~edgernn.ir.ModelSpec`.

The file is read with the ``onnx`` package (``onnx.load`` and ``numpy_helper``), imported lazily;
nothing in it is executed. The graph is interpreted symbolically: every tensor is either a constant
(initializers, ``Constant`` nodes, shape arithmetic), a shape vector (``Shape`` of a data tensor),
a filled tensor (``ConstantOfShape``: the zero initial states exporters build), or a *data* tensor:
one canonical edgernn tensor -- ``(batch, T, features)`` or ``(batch, features)`` -- seen through
a layout that says which ONNX axis is the batch, the time, a unit axis, or a block of the features.
Layout ops (``Transpose``, ``Squeeze``/``Unsqueeze``, ``Reshape`` that merges feature blocks, or
batch and time around a per-step ``MatMul`` as tf2onnx writes a Dense on a sequence -- targets
given by ``Shape``/``Gather`` or as numbers matched to the declared static sizes --
``Gather``/``Slice`` of the last step, ``Identity``, ``Dropout``) only change the layout; the
recurrent nodes, ``Gemm``, ``MatMul`` (+ ``Add``) and activations make IR layers. So the model
edgernn builds takes and returns edgernn's layouts, batch first, whatever ``layout`` attribute or
``Transpose`` the graph used:

* a graph input that feeds a recurrent node's ``X`` becomes an input ``(batch, T, features)``;
  one that feeds ``initial_h``/``initial_c`` (ONNX ``(num_directions=1, batch, hidden)``) an input
  ``(batch, hidden)`` that becomes the node's initial state;
* a graph output becomes an output ``(batch, T, features)`` or ``(batch, features)``; ONNX's
  direction and hidden axes merge direction-major (``Y`` of a bidirectional node, ``(T, 2, batch,
  H)``, is ``(batch, T, 2H)``: forward then backward, as PyTorch and Keras concatenate them). A
  bidirectional node's ``Y_c`` (or ``Y_h`` when it has initial states) is two edgernn outputs,
  forward then backward, ``(batch, H)`` each.

Operator mapping (ONNX spec -> IR layout in :mod:`edgernn.ir`):

* ``W`` ``(dirs, gates * H, in)`` and ``R`` ``(dirs, gates * H, H)`` are transposed to
  ``(in, gates * H)``/``(H, gates * H)``. LSTM gate blocks i, o, f, c are reordered to the IR's
  i, f, c, o; GRU's z, r, h are the IR's order. ``B`` = ``[Wb, Rb]``: LSTM and RNN add both
  outside any gate product, so ``bias = Wb + Rb``; GRU with ``linear_before_reset=1`` ->
  ``reset_after=True``, ``bias = Wb``, ``recurrent_bias = Rb`` (``Rbh`` sits inside
  ``r * (...)``); with ``linear_before_reset=0`` -> ``reset_after=False``, ``bias = Wb + Rb``.
* ``P`` (peepholes, rows i, o, f) -> ``peephole`` rows i, f, o. ``clip`` -> ``cell_clip``.
* ``activations``: Sigmoid, Tanh, Relu, Softsign, Softplus, Elu(1), LeakyRelu(0.2),
  HardSigmoid(0.2, 0.5) -> ``hard_sigmoid_keras2``, HardSigmoid(1/6, 0.5) -> ``hard_sigmoid``,
  Affine(1, 0) -> linear, ScaledTanh(1, 1) -> tanh; any other function or parameter is refused
  by name. ``activation_alpha``/``activation_beta`` are consumed in order by the functions that
  take them, the spec's defaults filling in (as onnxruntime does). An LSTM's g and h must agree.
* ``direction``: forward; reverse (``go_backwards``; its ``Y`` in time order is computed as a
  Bidirectional whose forward half has zero weights, exactly zero, merged by sum);
  bidirectional -> ``ir.Bidirectional`` (concat).
* ``sequence_lens``: ignored when it is a constant equal to the (fixed) sequence length,
  otherwise refused; ``initial_h``/``initial_c``: zeros (``ConstantOfShape``, zero initializers)
  are the default state; a graph input or another node's ``Y_h``/``Y_c`` becomes the layer's
  initial state (unidirectional nodes); non-zero constants are refused (make them graph inputs).
* ``input_forget=1`` is refused.

Anything else -- any other op (``Loop``/``Scan`` named with the routes that work), a layout op
edgernn cannot follow (splitting the batch, slicing the time axis other than its last step) -- is
refused, all problems in one :class:`~edgernn.errors.UnsupportedModel`.

:func:`run_source` (conversion verification) runs the file with onnxruntime, or where onnxruntime
refuses it (``layout=1``) with onnx's reference evaluator, or onnxruntime on the model rewritten to
``layout=0`` when that evaluator ignores what the nodes use (activations, clip); static time and batch sizes the
graph declares are recorded (``Input.timesteps``, ``source["batch_size"]``) for its data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ... import ir
from ...errors import EdgernnError, InvalidModelFile, UnsupportedModel

__all__ = ["load_onnx_file", "run_source"]

_BIG = 2 ** 30  # Slice ends at or beyond this mean "to the end"


class _Refuse(Exception):
    """One problem with one node; gathered, the node's outputs become unknown."""


# ---------------------------------------------------------------------------------------------
# Expressions: canonical edgernn tensors, built lazily, emitted as IR nodes at the end
# ---------------------------------------------------------------------------------------------


class _Expr:
    rank: int
    features: int


@dataclass(eq=False)
class _InputE(_Expr):
    name: str
    features: int
    converter: "_Converter"

    @property
    def rank(self):
        return self.converter.input_rank(self.name)


@dataclass(eq=False)
class _Rec:
    """One direction of one ONNX recurrent node."""

    name: str
    layer: ir.Recurrent  # return_sequences is set at emission
    input: _Expr
    initial: tuple  # () or exprs of the initial states (h,) / (h, c)
    reverse: bool
    pair: Optional["_Rec"] = None  # the backward direction of the same bidirectional node


class _OfRec(_Expr):
    """Read off one direction ``rec``: as wide as its units."""

    @property
    def features(self):
        return self.rec.layer.units


class _SeqOrFinal(_Expr):
    """``what`` is ``"seq"`` for the output sequence (rank 3), else a final state (rank 2)."""

    @property
    def rank(self):
        return 3 if self.what == "seq" else 2


class _OnInner(_Expr):
    """A layer applied to each step (or the one vector) of ``inner``: keeps its rank."""

    @property
    def rank(self):
        return self.inner.rank


@dataclass(eq=False)
class _RecE(_OfRec, _SeqOrFinal):
    rec: _Rec
    what: str  # "seq" (forward only, time order), "h", "c" (final states)


@dataclass(eq=False)
class _BiE(_SeqOrFinal):
    """Both directions concatenated: ``seq`` (time order, Y) or ``last`` (final h of each, Y_h)."""

    forward: _Rec
    backward: _Rec
    what: str

    @property
    def features(self):
        return 2 * self.forward.layer.units


@dataclass(eq=False)
class _RevSeqE(_OfRec):
    """A reverse-only node's Y in time order."""

    rec: _Rec
    rank = 3


@dataclass(eq=False)
class _DenseE(_OnInner):
    inner: _Expr
    kernel: np.ndarray
    bias: Optional[np.ndarray]
    activation: str
    name: str

    @property
    def features(self):
        return int(self.kernel.shape[1])


@dataclass(eq=False)
class _ActE(_OnInner):
    inner: _Expr
    activation: str
    name: str

    @property
    def features(self):
        return self.inner.features


def _children(expr) -> list:
    if isinstance(expr, _RecE):
        return [expr.rec.input, *expr.rec.initial]
    if isinstance(expr, _BiE):
        return [expr.forward.input]
    if isinstance(expr, _RevSeqE):
        return [expr.rec.input]
    if isinstance(expr, (_DenseE, _ActE)):
        return [expr.inner]
    return []


# ---------------------------------------------------------------------------------------------
# Symbolic values
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Sym:
    """A non-feature axis of a graph input whose role (batch, time, unit) the graph decides."""

    input: str
    index: int
    size: Optional[int]  # static size, if the graph declares one

    def __repr__(self):
        return f"{self.input}[axis {self.index}]"


@dataclass(frozen=True)
class _Data:
    """An ONNX tensor that is a view of canonical tensor ``expr``.

    ``axes``: one entry per ONNX axis: ``"B"``, ``"T"``, ``"U"`` (size 1), ``("F", k0, k1)`` (the
    feature factors ``k0..k1-1`` merged, row-major), or a ``_Sym`` not yet resolved.
    ``factors``: the canonical feature axis split row-major (product = ``expr.features``).
    """

    expr: _Expr
    axes: tuple
    factors: tuple


@dataclass(frozen=True)
class _Stack:
    """Data tensors concatenated along ONNX axis ``axis`` (no canonical tensor holds them all)."""

    items: tuple
    axis: int


@dataclass(frozen=True)
class _Const:
    value: np.ndarray


@dataclass(frozen=True)
class _Shape:
    """A shape vector (or scalar): entries are ints or axis tokens (``"B"``, ``"T"``, ``_Sym``)."""

    dims: tuple
    scalar: bool = False


@dataclass(frozen=True)
class _Fill:
    value: float
    dims: tuple


class _Unknown:
    """The output of a node that was refused (no further problems are reported for its users)."""


_UNKNOWN = _Unknown()


def _is_feature(axis) -> bool:
    return isinstance(axis, tuple) and axis[0] == "F"


def _is_merged(axis) -> bool:
    """``("M", outer, inner)``: two non-feature axes merged row-major (tf2onnx's Tensordot)."""
    return isinstance(axis, tuple) and axis[0] == "M"


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

# ONNX RNN activation functions: (alphas, betas, default alpha, default beta), as onnxruntime reads them.
_RNN_FUNCTIONS = {
    "sigmoid": (0, 0, None, None), "tanh": (0, 0, None, None), "relu": (0, 0, None, None),
    "softsign": (0, 0, None, None), "softplus": (0, 0, None, None),
    "affine": (1, 1, 1.0, 0.0), "leakyrelu": (1, 0, 0.01, None), "thresholdedrelu": (1, 0, 1.0, None),
    "scaledtanh": (1, 1, 1.0, 1.0), "hardsigmoid": (1, 1, 0.2, 0.5), "elu": (1, 0, 1.0, None),
}


def _close(a, b) -> bool:
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


def _rnn_activation(name: str, alpha, beta) -> Optional[str]:
    """IR name of ONNX recurrent activation ``name`` with parameters, or None."""
    key = name.lower()
    if key in ("sigmoid", "tanh", "relu", "softsign", "softplus"):
        return key
    if key == "affine" and _close(alpha, 1) and _close(beta, 0):
        return "linear"
    if key == "scaledtanh" and _close(alpha, 1) and _close(beta, 1):
        return "tanh"
    if key == "leakyrelu" and _close(alpha, 0.2):
        return "leaky_relu"
    if key == "elu" and _close(alpha, 1):
        return "elu"
    if key == "hardsigmoid" and _close(beta, 0.5):
        if _close(alpha, 0.2):
            return "hard_sigmoid_keras2"  # clip(0.2 x + 0.5, 0, 1)
        if _close(alpha, 1 / 6):
            return "hard_sigmoid"  # relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)
    return None


# Element-wise graph ops whose ONNX definition (with default attributes) equals the IR activation.
_PLAIN_OPS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softsign": "softsign", "Softplus": "softplus",
              "Exp": "exponential", "Mish": "mish", "HardSwish": "hard_silu", "Selu": "selu"}


# ---------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------


# Control flow edgernn does not follow: loops over the time steps (or batch rows) an exporter left.
_LOOPS = {
    op: f"operator {op} is not supported (edgernn does not import loop bodies). tf2onnx writes Keras 3 GRU and "
        "SimpleRNN layers, Keras 2 SimpleRNN and GRU(reset_after=False) layers and Keras 3 TimeDistributed as "
        "loops; it makes LSTM/GRU nodes only of Keras LSTMs and Keras 2 (tf-keras) GRU(reset_after=True). "
        "Convert the .keras/.h5 file itself with edgernn, or export from tf-keras or PyTorch"
    for op in ("Loop", "Scan")
}


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out


def _outer_names(node) -> list:
    """Names a node's subgraphs (If branches) read from the enclosing graph."""
    names = []
    for a in node.attribute:
        graphs = ([a.g] if a.HasField("g") else []) + list(a.graphs)
        for g in graphs:
            made = {i.name for i in g.initializer} | {i.name for i in g.input}
            for n in g.node:
                names.extend(x for x in list(n.input) + _outer_names(n) if x and x not in made)
                made.update(n.output)
    return names


def _clean_name(name: str) -> str:
    name = name.strip("/").replace("/", ".")
    return re.sub(r"[^\w.:-]", "_", name) or "node"


@dataclass
class _IOLayout:
    """How edgernn's inputs and outputs map to the ONNX graph's (for run_source and the tests)."""

    inputs: list = field(default_factory=list)  # [(onnx name, roles per ONNX axis)]
    # [(onnx name, layout)]; layout: ("data", roles, factors) or ("stack", axis, [(size, layout), ...])
    outputs: list = field(default_factory=list)


class _Converter:
    def __init__(self, model, label: str):
        self.model = model
        self.graph = model.graph
        self.label = label
        self.problems: list[str] = []
        self.bind: dict = {}  # _Sym -> "B" | "T" | "U"
        self.env: dict = {}
        self.inputs: dict = {}  # graph input name -> (_Data, [syms])
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.names: set = set()
        self.memo_last: dict = {}
        self.batch_size: Optional[int] = None  # fixed by a constant the graph holds (zero states, sequence_lens)

    # -- roles -----------------------------------------------------------------------------------
    def role(self, axis):
        if isinstance(axis, _Sym):
            return self.bind.get(axis, axis)
        return axis

    def require(self, axis, role: str, where: str) -> None:
        """Axis ``axis`` must be ``role``: binds an unresolved graph-input axis, else checks."""
        current = self.role(axis)
        if isinstance(current, _Sym):
            if role == "U" and current.size not in (None, 1):
                raise _Refuse(f"{where}: axis {current} of size {current.size} used as a size-1 axis")
            self.bind[current] = role
            return
        if current != role:
            names = {"B": "batch", "T": "time", "U": "size-1"}
            found = (names.get(current, current) if isinstance(current, str)
                     else "merged batch and time" if _is_merged(current) else "feature")
            raise _Refuse(f"{where}: expected the {names.get(role, role)} axis, found the {found} axis")

    def _static_size(self, axis) -> Optional[int]:
        """The size of a batch, time or merged axis where the graph declares it, else None."""
        axis = self.role(axis)
        if isinstance(axis, _Sym):
            return axis.size
        if _is_merged(axis):
            parts = [self._static_size(a) for a in axis[1:]]
            return parts[0] * parts[1] if all(parts) else None
        return next((s.size for _, syms in self.inputs.values() for s in syms
                     if s.size and self.bind.get(s) == axis), None)

    def _matches(self, entry, axis) -> bool:
        """Whether Reshape target ``entry`` (a copied axis token or a number) keeps axis ``axis``."""
        if isinstance(entry, tuple):
            return self._same(entry[1], axis)
        return entry is not None and entry == self._static_size(axis)

    def _same(self, a, b) -> bool:
        """Whether axis tokens ``a`` and ``b`` are the same axis (roles resolved)."""
        a, b = self.role(a), self.role(b)
        return a is b or (not isinstance(a, _Sym) and not isinstance(b, _Sym) and a == b)

    def input_rank(self, name: str) -> int:
        _, syms = self.inputs[name]
        return 3 if any(self.bind.get(s) == "T" for s in syms) else 2

    def unique(self, name: str) -> str:
        base, k = _clean_name(name), 1
        candidate = base
        while candidate in self.names:
            k += 1
            candidate = f"{base}_{k}"
        self.names.add(candidate)
        return candidate

    # -- reading -------------------------------------------------------------------------------
    def convert(self, source: dict):
        from onnx import numpy_helper

        graph = self.graph
        for init in graph.initializer:
            try:
                self.env[init.name] = _Const(numpy_helper.to_array(init))
            except Exception as exc:  # noqa: BLE001 - external data missing, bad dtype
                raise InvalidModelFile(f"{self.label}: initializer {init.name!r} cannot be read: {exc}") from exc
        if len(graph.sparse_initializer):
            self.problems.append("sparse initializers are not supported")
        for value in graph.input:
            if value.name in self.env:
                continue  # an initializer listed as an input (older exporters): a constant
            self.env[value.name] = self._graph_input(value)
        needed = self._needed_nodes()
        for index, node in enumerate(graph.node):
            if index not in needed:
                continue
            where = f"node {node.name or node.output[0]!r} ({node.op_type})"
            if node.op_type in _LOOPS:
                self.problems.append(f"{where}: {_LOOPS[node.op_type]}")
                for name in node.output:
                    self.env[name] = _UNKNOWN
                continue
            inputs = [self.env.get(n, _UNKNOWN) if n else None for n in node.input]
            missing = [n for n in node.input if n and n not in self.env]
            if missing:
                raise InvalidModelFile(f"{self.label}: {where} reads {missing}, which no node makes before it")
            if any(isinstance(v, _Unknown) for v in inputs):
                outputs = [_UNKNOWN] * len(node.output)
            else:
                try:
                    outputs = self._node(node, inputs, where)
                except _Refuse as exc:
                    self.problems.append(str(exc))
                    outputs = [_UNKNOWN] * len(node.output)
            for name, value in zip(node.output, outputs):
                if name:
                    self.env[name] = value
        return self._finish(source)

    def _graph_input(self, value):
        t = value.type
        if not t.HasField("tensor_type"):
            self.problems.append(f"graph input {value.name!r} is not a tensor")
            return _UNKNOWN
        from onnx import TensorProto

        if t.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            self.problems.append(f"graph input {value.name!r} is not a float tensor (sequence_lens and other "
                                 "integer inputs must be constants)")
            return _UNKNOWN
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]
        if len(dims) not in (2, 3) or dims[-1] in (None, 0):
            self.problems.append(f"graph input {value.name!r} must be (batch, T, features) or (batch, features) "
                                 f"in some order with a fixed feature size, has shape {dims}")
            return _UNKNOWN
        syms = [_Sym(value.name, i, d) for i, d in enumerate(dims[:-1])]
        expr = _InputE(value.name, int(dims[-1]), self)
        data = _Data(expr, tuple(syms) + (("F", 0, 1),), (int(dims[-1]),))
        self.inputs[value.name] = (data, syms)
        return data

    def _needed_nodes(self) -> set:
        """Indices of the nodes the graph outputs depend on (protobuf hands out new wrappers: no ids)."""
        nodes = list(self.graph.node)
        producers = {}
        for index, node in enumerate(nodes):
            for name in node.output:
                if name:
                    producers[name] = index
        needed, todo = set(), [o.name for o in self.graph.output]
        while todo:
            index = producers.get(todo.pop())
            if index is None or index in needed:
                continue
            needed.add(index)
            if nodes[index].op_type in _LOOPS:
                continue  # refused as a whole: what only feeds it (its trip count, condition) is not read
            todo.extend(n for n in nodes[index].input if n)
            todo.extend(_outer_names(nodes[index]))
        return needed

    # -- one node ------------------------------------------------------------------------------
    def _node(self, node, inputs, where):
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise _Refuse(f"{where}: operator domain {node.domain!r} is not supported")
        attrs = _attrs(node)
        method = getattr(self, f"_op_{op}", None)
        if method is None:
            raise _Refuse(f"{where}: operator {op} is not supported")
        result = method(node, inputs, attrs, where)
        return result if isinstance(result, list) else [result]

    # constants and shapes ------------------------------------------------------------------------
    def _op_Constant(self, node, inputs, attrs, where):
        from onnx import numpy_helper

        for a in node.attribute:
            if a.name == "value":
                return _Const(numpy_helper.to_array(a.t))
            if a.name in ("value_float", "value_int"):
                return _Const(np.array(attrs[a.name], np.float32 if a.name == "value_float" else np.int64))
            if a.name in ("value_floats", "value_ints"):
                return _Const(np.array(attrs[a.name], np.float32 if a.name == "value_floats" else np.int64))
        raise _Refuse(f"{where}: only dense tensor constants are supported")

    def _op_Shape(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, _Const):
            dims = tuple(x.value.shape)
        elif isinstance(x, _Fill):
            dims = x.dims
        elif isinstance(x, _Data):
            dims = tuple(self._axis_size(x, a) for a in x.axes)
        else:
            raise _Refuse(f"{where}: Shape of a {type(x).__name__.strip('_')} is not supported")
        start, end = attrs.get("start", 0), attrs.get("end", None)
        return _Shape(tuple(dims[slice(start, end)]))

    def _axis_size(self, data: _Data, axis):
        axis = self.role(axis)
        if axis == "U":
            return 1
        if _is_feature(axis):
            return int(np.prod(data.factors[axis[1]:axis[2]]))
        return axis  # a token: "B", "T" or a _Sym

    def _op_ConstantOfShape(self, node, inputs, attrs, where):
        from onnx import numpy_helper

        value = 0.0
        if "value" in attrs:
            value = float(numpy_helper.to_array(attrs["value"]).reshape(-1)[0])
        shape = inputs[0]
        if isinstance(shape, _Const):
            return _Const(np.full(tuple(int(d) for d in shape.value.reshape(-1)), value, np.float32))
        if isinstance(shape, _Shape):
            return _Fill(value, shape.dims)
        raise _Refuse(f"{where}: ConstantOfShape needs a shape")

    def _fold(self, node, inputs, where):
        """Evaluate a node whose inputs are all constants with onnx's reference evaluator."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        names = [f"in{i}" if inputs[i] is not None else "" for i in range(len(inputs))]
        copy = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))], domain=node.domain)
        copy.attribute.extend(node.attribute)
        feeds = {n: v.value for n, v in zip(names, inputs) if n}
        try:
            graph = helper.make_graph(
                [copy], "fold",
                [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                 for n, v in feeds.items()],
                [helper.make_empty_tensor_value_info(f"out{i}") for i in range(len(node.output))])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
            results = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:  # noqa: BLE001
            raise _Refuse(f"{where}: cannot evaluate it on constants: {exc}") from exc
        return [_Const(np.asarray(r)) for r in results]

    # ops that only move data around (and their constant folding) -------------------------------
    def _ints(self, value, where, what) -> list[int]:
        if isinstance(value, _Const):
            return [int(v) for v in np.asarray(value.value).reshape(-1)]
        raise _Refuse(f"{where}: {what} must be a constant")

    def _axes_arg(self, node, inputs, attrs, where, index=1):
        if "axes" in attrs:
            return list(attrs["axes"])
        if len(inputs) > index and inputs[index] is not None:
            return self._ints(inputs[index], where, "axes")
        return None

    def _all_const(self, inputs) -> bool:
        return all(v is None or isinstance(v, _Const) for v in inputs)

    def _op_Equal(self, node, inputs, attrs, where):
        values = []
        for v in inputs:
            if isinstance(v, _Shape) and all(isinstance(d, int) for d in v.dims):
                v = _Const(np.array(v.dims if not v.scalar else v.dims[0], np.int64))
            values.append(v)
        if self._all_const(values):
            return self._fold(node, values, where)
        raise _Refuse(f"{where}: Equal of values known only at run time")

    def _op_If(self, node, inputs, attrs, where):
        """An If whose condition is a constant (PyTorch's export of ``squeeze(dim)`` on a dynamic
        shape): the branch taken is followed inline."""
        cond = inputs[0]
        if not isinstance(cond, _Const) or cond.value.size != 1:
            raise _Refuse(f"{where}: If on a condition known only at run time")
        branch = attrs["then_branch" if bool(cond.value.reshape(-1)[0]) else "else_branch"]
        from onnx import numpy_helper

        for init in branch.initializer:
            self.env[init.name] = _Const(numpy_helper.to_array(init))
        for inner in branch.node:
            inner_where = f"node {inner.name or inner.output[0]!r} ({inner.op_type}, in {where})"
            values = [self.env.get(n, _UNKNOWN) if n else None for n in inner.input]
            if any(isinstance(v, _Unknown) for v in values):
                raise _Refuse(f"{inner_where}: reads a value edgernn cannot follow")
            for name, value in zip(inner.output, self._node(inner, values, inner_where)):
                if name:
                    self.env[name] = value
        return [self.env.get(o.name, _UNKNOWN) for o in branch.output]

    def _op_Expand(self, node, inputs, attrs, where):
        """Expand of a scalar fill to a shape: the zero states some exporters (tf2onnx) build."""
        x, shape = inputs
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        value = x.value if isinstance(x, _Fill) else (x.value.reshape(-1) if isinstance(x, _Const) else None)
        if value is None or (isinstance(value, np.ndarray) and (value.size != 1 and np.any(value != value.flat[0]))):
            raise _Refuse(f"{where}: Expand of data is not supported")
        fill = float(value if not isinstance(value, np.ndarray) else value.flat[0])
        if isinstance(shape, _Shape):
            return _Fill(fill, shape.dims)
        raise _Refuse(f"{where}: Expand to a shape edgernn cannot follow")

    def _op_Identity(self, node, inputs, attrs, where):
        return inputs[0]

    def _op_Dropout(self, node, inputs, attrs, where):
        training = inputs[2] if len(inputs) > 2 else None
        if training is not None and not (isinstance(training, _Const) and not training.value.any()):
            raise _Refuse(f"{where}: Dropout in training mode")
        if len(node.output) > 1 and node.output[1]:
            if any(node.output[1] in n.input for n in self.graph.node) or node.output[1] in [o.name for o in self.graph.output]:
                raise _Refuse(f"{where}: the dropout mask output is used")
        return [inputs[0], _UNKNOWN]

    def _op_Cast(self, node, inputs, attrs, where):
        from onnx import TensorProto

        x = inputs[0]
        if isinstance(x, _Const):
            return self._fold(node, inputs, where)
        if isinstance(x, _Shape):
            return x
        if isinstance(x, (_Data, _Stack, _Fill)) and attrs.get("to") in (TensorProto.FLOAT, TensorProto.DOUBLE):
            return x
        raise _Refuse(f"{where}: Cast of data to a non-float type is not supported")

    def _op_Transpose(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, _Const):
            return self._fold(node, inputs, where)
        rank = self._rank(x, where)
        perm = list(attrs.get("perm", range(rank - 1, -1, -1)))
        return self._map(x, where, lambda d: replace(d, axes=tuple(d.axes[p] for p in perm)),
                         fill=lambda f: _Fill(f.value, tuple(f.dims[p] for p in perm)),
                         stack_axis=lambda a: perm.index(a))

    def _rank(self, x, where) -> int:
        if isinstance(x, _Data):
            return len(x.axes)
        if isinstance(x, _Stack):
            return len(x.items[0].axes)
        if isinstance(x, _Fill):
            return len(x.dims)
        if isinstance(x, _Const):
            return x.value.ndim
        raise _Refuse(f"{where}: unsupported input")

    def _map(self, x, where, data_fn, fill=None, stack_axis=None):
        """Apply a layout change to data, each item of a stack, or a filled tensor."""
        if isinstance(x, _Data):
            return data_fn(x)
        if isinstance(x, _Stack):
            if stack_axis is None:
                raise _Refuse(f"{where}: not supported on a stack of several layers' states")
            axis = stack_axis(x.axis)
            if axis is None:
                raise _Refuse(f"{where}: not supported across a stack of several layers' states")
            return _Stack(tuple(data_fn(item) for item in x.items), axis)
        if isinstance(x, _Fill) and fill is not None:
            return fill(x)
        raise _Refuse(f"{where}: not supported on a {type(x).__name__.strip('_')}")

    def _op_Squeeze(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, (_Const,)):
            return self._fold(node, inputs, where)
        if isinstance(x, _Shape):
            return _Shape(x.dims, scalar=True) if len(x.dims) == 1 else x
        rank = self._rank(x, where)
        axes = self._axes_arg(node, inputs, attrs, where)
        if axes is None:
            if isinstance(x, _Data):
                axes = [i for i, a in enumerate(x.axes) if self._axis_size(x, a) == 1]
            elif isinstance(x, _Fill):
                axes = [i for i, d in enumerate(x.dims) if d == 1]
            else:
                raise _Refuse(f"{where}: Squeeze without axes on a stack")
        axes = sorted({a % rank for a in axes})

        def data_fn(d: _Data):
            out = d
            for position in reversed(axes):
                out = self._drop_unit(out, position, where)
            return out

        def fill_fn(f: _Fill):
            if any(f.dims[a] != 1 for a in axes if isinstance(f.dims[a], int)):
                raise _Refuse(f"{where}: squeezes an axis whose size is not 1")
            return _Fill(f.value, tuple(d for i, d in enumerate(f.dims) if i not in axes))

        def stack_fn(a):
            if a in axes:
                return None
            return a - sum(1 for s in axes if s < a)

        return self._map(x, where, data_fn, fill_fn, stack_fn)

    def _drop_unit(self, d: _Data, position: int, where: str) -> _Data:
        """Remove axis ``position`` of size 1 (a unit axis, a size-1 feature block, a size-1 input axis)."""
        axis = self.role(d.axes[position])
        rest = d.axes[:position] + d.axes[position + 1:]
        if isinstance(axis, _Sym):
            self.require(axis, "U", where)
            return replace(d, axes=rest)
        if axis == "U":
            return replace(d, axes=rest)
        if _is_feature(axis) and self._axis_size(d, axis) == 1:
            k0, k1 = axis[1], axis[2]
            width = k1 - k0

            def shift(a):
                a = self.role(a)
                if _is_feature(a) and a[1] >= k1:
                    return ("F", a[1] - width, a[2] - width)
                return a

            factors = d.factors[:k0] + d.factors[k1:]
            if not factors:
                raise _Refuse(f"{where}: squeezes away the feature axis")
            return replace(d, axes=tuple(shift(a) for a in rest), factors=factors)
        raise _Refuse(f"{where}: squeezes the {'batch' if axis == 'B' else 'time' if axis == 'T' else 'feature'} axis")

    def _op_Unsqueeze(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, _Const):
            return self._fold(node, inputs, where)
        axes = self._axes_arg(node, inputs, attrs, where)
        if axes is None:
            raise _Refuse(f"{where}: Unsqueeze without axes")
        if isinstance(x, _Shape):
            if x.scalar and axes in ([0], [-1]):
                return _Shape(x.dims)
            raise _Refuse(f"{where}: Unsqueeze of a shape vector")
        rank = self._rank(x, where) + len(axes)
        axes = sorted(a % rank for a in axes)

        def insert(seq, filler):
            seq = list(seq)
            for a in axes:
                seq.insert(a, filler)
            return tuple(seq)

        def stack_fn(a):
            for s in axes:
                if s <= a:
                    a += 1
            return a

        return self._map(x, where, lambda d: replace(d, axes=insert(d.axes, "U")),
                         lambda f: _Fill(f.value, insert(f.dims, 1)), stack_fn)

    def _op_Concat(self, node, inputs, attrs, where):
        axis = attrs.get("axis", 0)
        present = [v for v in inputs if v is not None]
        if all(isinstance(v, _Const) for v in present):
            return self._fold(node, inputs, where)
        if all(isinstance(v, (_Const, _Shape)) for v in present):
            dims = []
            for v in present:
                if isinstance(v, _Shape):
                    dims.extend(v.dims)
                else:
                    dims.extend(int(d) for d in v.value.reshape(-1))
            return _Shape(tuple(dims))
        if all(isinstance(v, _Fill) for v in present) and len({v.value for v in present}) == 1:
            # tf2onnx's zero initial states of a bidirectional node: two (1, batch, H) zeros stacked.
            sizes = [v.dims[axis % len(v.dims)] for v in present]
            if all(isinstance(n, int) for n in sizes):
                dims = list(present[0].dims)
                dims[axis % len(dims)] = sum(sizes)
                return _Fill(present[0].value, tuple(dims))
        if not all(isinstance(v, (_Data, _Stack)) for v in present):
            raise _Refuse(f"{where}: Concat of data with constants is not supported")
        rank = self._rank(present[0], where)
        axis %= rank
        # torch.cat([h_n[-2], h_n[-1]], dim=1): both directions' final states along the features.
        if len(present) == 2 and all(isinstance(v, _Data) for v in present):
            a, b = present
            ea, eb = a.expr, b.expr
            if (isinstance(ea, _RecE) and isinstance(eb, _RecE) and ea.what == eb.what == "h"
                    and not ea.rec.reverse and eb.rec.reverse and ea.rec.input is eb.rec.input
                    and not ea.rec.initial and not eb.rec.initial
                    and getattr(ea.rec, "pair", None) is eb.rec and a.axes == b.axes
                    and self.role(a.axes[axis]) == ("F", 0, len(a.factors))):
                axes = tuple(("F", 0, 2) if i == axis else self.role(x) for i, x in enumerate(a.axes))
                return _Data(_BiE(ea.rec, eb.rec, "last"), axes, (2, ea.rec.layer.units))
        items = []
        for v in present:
            if isinstance(v, _Stack):
                if v.axis != axis:
                    raise _Refuse(f"{where}: Concat across a stack along another axis")
                items.extend(v.items)
            else:
                role = self.role(v.axes[axis])
                if role not in ("U",) and not (_is_feature(role) and role == ("F", 0, 1) and len(v.factors) >= 2):
                    raise _Refuse(f"{where}: Concat along an axis that is not a stacking axis (edgernn has no "
                                  "concatenation layer)")
                items.append(v)
        return _Stack(tuple(items), axis)

    def _op_Gather(self, node, inputs, attrs, where):
        x, index = inputs
        axis = attrs.get("axis", 0)
        if isinstance(x, _Const) and isinstance(index, _Const):
            return self._fold(node, inputs, where)
        if isinstance(x, _Shape) and isinstance(index, _Const) and index.value.ndim == 1:
            return _Shape(tuple(x.dims[int(i)] for i in index.value))  # e.g. tf2onnx's Tensordot: (batch, T)
        if not isinstance(index, _Const) or index.value.size != 1:
            raise _Refuse(f"{where}: Gather needs one constant index")
        keep = index.value.ndim > 0
        i = int(index.value.reshape(-1)[0])
        if isinstance(x, _Shape):
            picked = x.dims[i]
            return _Shape((picked,), scalar=not keep)
        return self._pick(x, axis, i, keep, where)

    def _pick(self, x, axis: int, i: int, keep: bool, where: str):
        """Element ``i`` of axis ``axis`` (kept as a size-1 axis if ``keep``)."""
        rank = self._rank(x, where)
        axis %= rank
        if isinstance(x, _Fill):
            dims = list(x.dims)
            if keep:
                dims[axis] = 1
            else:
                del dims[axis]
            return _Fill(x.value, tuple(dims))
        if isinstance(x, _Stack):
            if axis != x.axis:
                return self._map(x, where, lambda d: self._pick(d, axis, i, keep, where),
                                 stack_axis=lambda a: a if keep or a < axis else a - 1)
            sizes = [self._axis_size(item, item.axes[axis]) for item in x.items]
            total = sum(sizes)
            i = i % total if -total <= i < total else None
            if i is None:
                raise _Refuse(f"{where}: index out of range")
            for item, size in zip(x.items, sizes):
                if i < size:
                    return self._pick(item, axis, i, keep, where)
                i -= size
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: not supported on a {type(x).__name__.strip('_')}")
        role = self.role(x.axes[axis])
        rest = x.axes[:axis] + x.axes[axis + 1:]
        if isinstance(role, _Sym):
            raise _Refuse(f"{where}: selects from axis {role} of the input, whose role (batch or time) the graph "
                          "does not show")
        if role == "U":
            if i not in (0, -1):
                raise _Refuse(f"{where}: index {i} of a size-1 axis")
            return x if keep else replace(x, axes=rest)
        if role == "T":
            if i == -1:
                expr = self._last(x.expr, where)
            elif i == 0:
                expr = self._first(x.expr, where)
            else:
                raise _Refuse(f"{where}: selects timestep {i}; only the last (-1) or, of a reverse direction, "
                              "the first (0) is supported")
            return replace(x, expr=expr, axes=x.axes[:axis] + ("U",) + x.axes[axis + 1:] if keep else rest)
        if role == "B":
            raise _Refuse(f"{where}: selects from the batch axis")
        # A feature block: the direction axis of a bidirectional node's output.
        if _is_feature(role) and role[1] == 0 and role[2] == 1 and x.factors[0] == 2 and isinstance(x.expr, _BiE):
            i %= 2
            bi = x.expr
            rec = bi.forward if i == 0 else bi.backward
            if bi.what == "seq":
                expr = _RecE(rec, "seq") if i == 0 else _RevSeqE(rec)
            else:
                expr = _RecE(rec, "h")

            def shift(a):
                a = self.role(a)
                return ("F", a[1] - 1, a[2] - 1) if _is_feature(a) else a

            axes = tuple(shift(a) for a in (x.axes[:axis] + ("U",) + x.axes[axis + 1:] if keep else rest))
            return _Data(expr, axes, x.factors[1:])
        raise _Refuse(f"{where}: selects part of the features (only a bidirectional node's direction axis can be "
                      "selected)")

    def _op_Slice(self, node, inputs, attrs, where):
        x = inputs[0]
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if self.opset < 10:
            starts, ends, axes, steps = attrs.get("starts"), attrs.get("ends"), attrs.get("axes"), None
        else:
            starts = self._ints(inputs[1], where, "starts")
            ends = self._ints(inputs[2], where, "ends")
            axes = self._ints(inputs[3], where, "axes") if len(inputs) > 3 and inputs[3] is not None else None
            steps = self._ints(inputs[4], where, "steps") if len(inputs) > 4 and inputs[4] is not None else None
        axes = list(range(len(starts))) if axes is None else axes
        steps = steps or [1] * len(starts)
        if isinstance(x, _Shape):
            if len(axes) == 1 and steps[0] == 1:
                return _Shape(tuple(x.dims[slice(starts[0], ends[0])]))
            raise _Refuse(f"{where}: strided Slice of a shape")
        rank = self._rank(x, where)
        for start, end, axis, step in zip(starts, ends, axes, steps):
            x = self._slice(x, axis % rank, start, end, step, where)
        return x

    def _slice(self, x, axis, start, end, step, where):
        if step != 1:
            raise _Refuse(f"{where}: Slice with step {step} is not supported")
        if isinstance(x, _Fill):
            size = x.dims[axis]
            if isinstance(size, int):
                new = len(range(size)[slice(start, end)])
            elif start == 0 and end >= _BIG:
                new = size
            else:
                raise _Refuse(f"{where}: Slice of a symbolic axis")
            return _Fill(x.value, x.dims[:axis] + (new,) + x.dims[axis + 1:])
        if isinstance(x, _Stack):
            if axis != x.axis:
                return self._map(x, where, lambda d: self._slice(d, axis, start, end, step, where),
                                 stack_axis=lambda a: a)
            sizes = [self._axis_size(item, item.axes[axis]) for item in x.items]
            total = sum(sizes)
            chosen = list(range(total))[slice(start, end)]
            items, offset = [], 0
            for item, size in zip(x.items, sizes):
                mine = [c - offset for c in chosen if offset <= c < offset + size]
                if len(mine) == size:
                    items.append(item)
                elif len(mine) == 1:
                    items.append(self._pick(item, axis, mine[0], True, where))
                elif mine:
                    raise _Refuse(f"{where}: Slice that splits a bidirectional state")
                offset += size
            return items[0] if len(items) == 1 else _Stack(tuple(items), axis)
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: not supported on a {type(x).__name__.strip('_')}")
        role = self.role(x.axes[axis])
        size = self._axis_size(x, role)
        if isinstance(size, int):
            chosen = list(range(size))[slice(start, end)]
            if len(chosen) == size:
                return x
            if len(chosen) == 1:
                return self._pick(x, axis, chosen[0], True, where)
            raise _Refuse(f"{where}: Slice that keeps part of an axis")
        if start == 0 and end >= _BIG:
            return x
        if role == "T" and end >= _BIG and start == -1:
            return self._pick(x, axis, -1, True, where)
        if role == "T" and start == 0 and end == 1:
            return self._pick(x, axis, 0, True, where)
        raise _Refuse(f"{where}: Slice [{start}:{end}] of the {'time' if role == 'T' else 'batch'} axis; only the "
                      "last step is supported")

    def _op_Reshape(self, node, inputs, attrs, where):
        x, shape = inputs[0], inputs[1]
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if isinstance(shape, _Const):
            target = [int(v) for v in shape.value.reshape(-1)]
        elif isinstance(shape, _Shape):
            target = list(shape.dims)
        else:
            raise _Refuse(f"{where}: Reshape needs a constant shape")
        allowzero = attrs.get("allowzero", 0)
        return self._map(x, where, lambda d: self._reshape(d, target, allowzero, where),
                         fill=lambda f: self._reshape_fill(f, target, where))

    def _op_Flatten(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, _Const):
            return self._fold(node, inputs, where)
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: Flatten of a {type(x).__name__.strip('_')}")
        axis = attrs.get("axis", 1) % (len(x.axes) + 1)
        head = [self.role(a) for a in x.axes[:axis] if self.role(a) != "U"]
        tail = [self._axis_size(x, a) for a in x.axes[axis:]]
        if len(head) > 1 or not all(isinstance(t, int) for t in tail):
            raise _Refuse(f"{where}: Flatten that merges the batch or time axis")
        target = (head or [1]) + [int(np.prod(tail))]
        return self._reshape(x, target, 0, where)

    def _reshape_fill(self, f: _Fill, target, where):
        if all(isinstance(d, int) for d in f.dims) and all(isinstance(t, int) for t in target):
            return _Fill(f.value, tuple(np.empty(f.dims, np.int8).reshape(target).shape))
        raise _Refuse(f"{where}: Reshape of a symbolic filled tensor")

    def _reshape(self, d: _Data, target: list, allowzero: int, where: str) -> _Data:
        """Reshape as a layout change: unit axes come and go, adjacent feature blocks merge in order."""
        axes = [self.role(a) for a in d.axes]
        entries = []
        for i, t in enumerate(target):
            if isinstance(t, int) and t == 0 and not allowzero:
                if i >= len(axes):
                    raise _Refuse(f"{where}: Reshape copies axis {i}, which does not exist")
                entries.append(("copy", axes[i]))
            elif isinstance(t, int):
                entries.append(t)
            else:
                entries.append(("copy", self.role(t)))
        # The batch and time axes (a merged axis counts as its two parts).
        symbolic = [p for a in axes if not (a == "U" or _is_feature(a)) for p in (a[1:] if _is_merged(a) else (a,))]
        copied = [e[1] for e in entries if isinstance(e, tuple)]
        if -1 in entries:
            left = [a for a in symbolic if not any(self._same(a, c) for c in copied)]
            static = int(np.prod([self._axis_size(d, a) for a in axes if a == "U" or _is_feature(a)]))
            known = int(np.prod([e for e in entries if isinstance(e, int) and e != -1] or [1]))
            if len(left) == 1:
                if static != known:
                    raise _Refuse(f"{where}: Reshape that merges the {left[0]} axis with features")
                entries[entries.index(-1)] = ("copy", left[0])
            elif not left and known and static % known == 0:
                entries[entries.index(-1)] = static // known
            elif len(left) == 2 and static == known and not _is_merged(left[0]) and not _is_merged(left[1]):
                # tf2onnx's Tensordot (a Dense on a sequence): Reshape to (-1, features) merges
                # the batch and time axes into one; the MatMul (+ Add) acts per row, the Reshape
                # after it splits them back. Followed as a merged axis ("M", outer, inner).
                entries[entries.index(-1)] = ("copy", ("M", left[0], left[1]))
            elif len(left) == 2 and (sizes := [self._static_size(a) for a in left]).count(None) == 1 \
                    and known == static * (sizes[0] or sizes[1]):
                # -1 for the one dynamic axis, a number for the other (a static time length)
                entries[entries.index(-1)] = ("copy", left[sizes.index(None)])
            elif all(sizes := [self._static_size(a) for a in left]) and known:
                # Static batch and time sizes (an export with fixed shapes): -1 is a number, and the
                # numbers are matched to the axes below.
                entries[entries.index(-1)] = static * math.prod(sizes) // known
            else:
                raise _Refuse(f"{where}: Reshape that merges the batch and time axes with features")
        out, i, k = [], 0, 0
        while k < len(entries):
            e = entries[k]
            k += 1
            nxt = entries[k] if k < len(entries) else None
            if e == 1 and not (i < len(axes) and _is_feature(axes[i]) and self._axis_size(d, axes[i]) == 1) and not (
                    i < len(axes) and _is_merged(axes[i]) and self._static_size(axes[i][1]) == 1
                    and self._matches(nxt, axes[i][2])):  # not a batch of 1 split off
                out.append("U")
                continue
            while i < len(axes) and axes[i] == "U":
                i += 1
            j = next((j for j in range(i + 1, len(axes)) if axes[j] != "U"), len(axes))  # the axis after
            if not isinstance(e, tuple) and i < len(axes) and not _is_feature(axes[i]):
                # A static size where the batch or time axis stands (a graph exported with fixed
                # shapes writes numbers where others write Shape -> Gather): the axis it stands for.
                size = self._static_size(axes[i])
                if e == size:  # the same axis
                    e = ("copy", axes[i])
                elif _is_merged(axes[i]) and e == self._static_size(axes[i][1]) and self._matches(nxt, axes[i][2]):
                    e = ("copy", axes[i][1])  # a merged axis split back
                elif (j < len(axes) and not _is_feature(axes[j]) and not _is_merged(axes[i])
                      and not _is_merged(axes[j]) and size and self._static_size(axes[j])
                      and e == size * self._static_size(axes[j])):
                    e = ("copy", ("M", axes[i], axes[j]))  # two axes merged
                else:
                    raise _Refuse(f"{where}: Reshape to size {e} where the batch or time axis stands")
            if isinstance(e, tuple):
                if _is_merged(e[1]) and not (i < len(axes) and self._same(axes[i], e[1])):
                    # merge two adjacent axes, in their order
                    if j >= len(axes) or not (self._same(axes[i], e[1][1]) and self._same(axes[j], e[1][2])):
                        raise _Refuse(f"{where}: Reshape that merges axes that are not next to each other")
                    out.append(("M", axes[i], axes[j]))
                    i = j + 1
                elif i < len(axes) and _is_merged(axes[i]) and not self._same(axes[i], e[1]):
                    # split a merged axis back, in the same order: Keras 2's TimeDistributed writes
                    # (-1, T, units), tf2onnx's Tensordot (batch, T, units)
                    if not (self._same(axes[i][1], e[1]) and self._matches(nxt, axes[i][2])):
                        raise _Refuse(f"{where}: Reshape that splits the merged batch and time axes differently")
                    out.extend(axes[i][1:])
                    i += 1
                    k += 1
                elif i >= len(axes) or not self._same(axes[i], e[1]):
                    raise _Refuse(f"{where}: Reshape that moves the batch or time axis")
                else:
                    out.append(axes[i])
                    i += 1
                continue
            k0 = k1 = None
            product = 1
            while product < e:
                if i >= len(axes) or not _is_feature(axes[i]) or (k1 is not None and axes[i][1] != k1):
                    raise _Refuse(f"{where}: Reshape that splits or reorders features, or mixes them with the "
                                  "batch or time axis")
                k0 = axes[i][1] if k0 is None else k0
                k1 = axes[i][2]
                product *= self._axis_size(d, axes[i])
                i += 1
                while i < len(axes) and axes[i] == "U" and product < e:
                    i += 1
            if product != e:
                raise _Refuse(f"{where}: Reshape that splits features")
            out.append(("F", k0, k1))
        if any(a != "U" for a in axes[i:]):
            raise _Refuse(f"{where}: Reshape that drops axes")
        return replace(d, axes=tuple(out))

    # layers ---------------------------------------------------------------------------------------
    def _feature_axis(self, d: _Data, position: int, where: str):
        axis = self.role(d.axes[position])
        if axis != ("F", 0, len(d.factors)):
            raise _Refuse(f"{where}: acts on axis {position}, which is not the whole feature axis")
        return axis

    def _dense(self, d: _Data, kernel, bias, where, name, position=None) -> _Data:
        position = len(d.axes) - 1 if position is None else position
        self._feature_axis(d, position, where)
        if kernel.shape[0] != d.expr.features:
            raise _Refuse(f"{where}: weight of shape {kernel.shape} does not fit {d.expr.features} features")
        expr = _DenseE(d.expr, ir.as_weight(kernel), None if bias is None else ir.as_weight(bias), "linear", name)
        axes = d.axes[:position] + (("F", 0, 1),) + d.axes[position + 1:]
        return _Data(expr, axes, (int(kernel.shape[1]),))

    def _op_Gemm(self, node, inputs, attrs, where):
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if not isinstance(a, _Data) or not isinstance(b, _Const) or (c is not None and not isinstance(c, _Const)):
            raise _Refuse(f"{where}: Gemm needs data times a constant weight (plus a constant bias)")
        if len(a.axes) != 2:
            raise _Refuse(f"{where}: Gemm input of rank {len(a.axes)}")
        trans_a = attrs.get("transA", 0)
        rows = 1 if trans_a else 0
        w = np.asarray(b.value, np.float64)
        w = w.T if attrs.get("transB", 0) else w
        w = w * attrs.get("alpha", 1.0)
        bias = None
        if c is not None:
            cv = np.asarray(c.value, np.float64) * attrs.get("beta", 1.0)
            if cv.size not in (1, w.shape[1]) or (cv.ndim == 2 and cv.shape[0] != 1):
                raise _Refuse(f"{where}: Gemm bias of shape {cv.shape} is not one row")
            bias = np.broadcast_to(cv.reshape(-1), (w.shape[1],))
        out = self._dense(a, w, bias, where, node.name or node.output[0], position=1 - rows)
        # Gemm's output is (rows, N): put the rows axis first.
        return replace(out, axes=(out.axes[rows], out.axes[1 - rows]))

    def _op_MatMul(self, node, inputs, attrs, where):
        a, b = inputs
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if not isinstance(a, _Data) or not isinstance(b, _Const) or b.value.ndim != 2:
            raise _Refuse(f"{where}: MatMul needs data times a constant 2-D weight")
        return self._dense(a, np.asarray(b.value, np.float64), None, where, node.name or node.output[0])

    def _op_Add(self, node, inputs, attrs, where):
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        data = [v for v in inputs if isinstance(v, _Data)]
        const = [v for v in inputs if isinstance(v, _Const)]
        if len(data) != 1 or len(const) != 1:
            raise _Refuse(f"{where}: Add is supported only as a constant bias after MatMul/Gemm")
        d, c = data[0], np.asarray(const[0].value, np.float64)
        if not isinstance(d.expr, _DenseE):
            raise _Refuse(f"{where}: Add of a constant to a tensor that is not a MatMul/Gemm result")
        units = d.expr.features
        if c.size not in (1, units) or (c.ndim and c.shape[-1] not in (1, units)) or c.ndim > len(d.axes):
            raise _Refuse(f"{where}: Add of a constant of shape {c.shape} that is not a bias over the features")
        self._feature_axis(d, len(d.axes) - 1, where)
        bias = np.broadcast_to(c.reshape(-1), (units,)) + (0 if d.expr.bias is None else d.expr.bias)
        return replace(d, expr=replace(d.expr, bias=ir.as_weight(bias)))

    def _activation(self, x, name, where, node, axis=None):
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: applied to a {type(x).__name__.strip('_')}")
        if axis is not None:
            self._feature_axis(x, axis % len(x.axes), where)
        return replace(x, expr=_ActE(x.expr, name, node.name or node.output[0]))

    def _op_Elu(self, node, inputs, attrs, where):
        return self._param_activation(node, inputs, attrs, where, {"alpha": (1.0, 1.0)}, "elu")

    def _op_Celu(self, node, inputs, attrs, where):
        return self._param_activation(node, inputs, attrs, where, {"alpha": (1.0, 1.0)}, "celu")

    def _op_LeakyRelu(self, node, inputs, attrs, where):
        return self._param_activation(node, inputs, attrs, where, {"alpha": (0.01, 0.2)}, "leaky_relu")

    def _op_Gelu(self, node, inputs, attrs, where):
        if attrs.get("approximate", "none") != "none":
            raise _Refuse(f"{where}: Gelu(approximate={attrs['approximate']!r}) is not supported")
        return self._activation(inputs[0], "gelu", where, node)

    def _op_HardSigmoid(self, node, inputs, attrs, where):
        alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
        name = _rnn_activation("hardsigmoid", alpha, beta)
        if name is None:
            raise _Refuse(f"{where}: HardSigmoid(alpha={alpha}, beta={beta}) is not an edgernn activation")
        return self._activation(inputs[0], name, where, node)

    def _param_activation(self, node, inputs, attrs, where, params, ir_name):
        for key, (default, wanted) in params.items():
            value = attrs.get(key, default)
            if not _close(value, wanted):
                raise _Refuse(f"{where}: {node.op_type}({key}={value}) is not supported (edgernn's {ir_name} has "
                              f"{key}={wanted})")
        return self._activation(inputs[0], ir_name, where, node)

    def _op_Clip(self, node, inputs, attrs, where):
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if self.opset < 11:
            low, high = attrs.get("min"), attrs.get("max")
        else:
            low = float(inputs[1].value) if len(inputs) > 1 and isinstance(inputs[1], _Const) else None
            high = float(inputs[2].value) if len(inputs) > 2 and isinstance(inputs[2], _Const) else None
            if any(v is not None and not isinstance(v, _Const) for v in inputs[1:]):
                raise _Refuse(f"{where}: Clip bounds must be constants")
        names = {(0.0, 6.0): "relu6", (-1.0, 1.0): "hard_tanh", (0.0, None): "relu"}
        key = (None if low is None else float(low), None if high is None else float(high))
        if key not in names:
            raise _Refuse(f"{where}: Clip({low}, {high}) is not an edgernn activation (Clip(0, 6) = relu6, "
                          "Clip(-1, 1) = hard_tanh)")
        return self._activation(inputs[0], names[key], where, node)

    def _softmax(self, node, inputs, attrs, where, name):
        x = inputs[0]
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: applied to a {type(x).__name__.strip('_')}")
        rank = len(x.axes)
        axis = attrs.get("axis", -1 if self.opset >= 13 else 1) % rank
        if self.opset < 13 and any(self._axis_size(x, a) != 1 for a in x.axes[axis + 1:]):
            raise _Refuse(f"{where}: {node.op_type} (opset {self.opset}) over several axes")
        return self._activation(x, name, where, node, axis=axis)

    def _op_Softmax(self, node, inputs, attrs, where):
        return self._softmax(node, inputs, attrs, where, "softmax")

    def _op_LogSoftmax(self, node, inputs, attrs, where):
        return self._softmax(node, inputs, attrs, where, "log_softmax")

    def _op_Mul(self, node, inputs, attrs, where):
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        a, b = inputs
        # SiLU as PyTorch exports it: x * Sigmoid(x).
        for x, s in ((a, b), (b, a)):
            if (isinstance(x, _Data) and isinstance(s, _Data) and isinstance(s.expr, _ActE)
                    and s.expr.activation == "sigmoid" and s.expr.inner is x.expr and s.axes == x.axes):
                return replace(x, expr=_ActE(x.expr, "silu", node.name or node.output[0]))
        raise _Refuse(f"{where}: Mul is supported only as x * Sigmoid(x) (SiLU)")

    # the recurrent nodes ---------------------------------------------------------------------
    def _op_LSTM(self, node, inputs, attrs, where):
        return self._recurrent(node, inputs, attrs, where, "lstm")

    def _op_GRU(self, node, inputs, attrs, where):
        return self._recurrent(node, inputs, attrs, where, "gru")

    def _op_RNN(self, node, inputs, attrs, where):
        return self._recurrent(node, inputs, attrs, where, "simple")

    def _recurrent(self, node, inputs, attrs, where, cell):
        inputs = list(inputs) + [None] * (8 - len(inputs))
        x, w, r, b, seq_lens, h0, c0, p = inputs[:8]
        gates = ir.CELL_GATES[cell]
        problems = []
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: X must be a data tensor")
        for what, value in (("W", w), ("R", r), ("B", b), ("P", p)):
            if value is not None and not isinstance(value, _Const):
                raise _Refuse(f"{where}: {what} must be an initializer (a constant)")
        w, r = np.asarray(w.value, np.float64), np.asarray(r.value, np.float64)
        if w.ndim != 3 or r.ndim != 3:
            raise InvalidModelFile(f"{self.label}: {where}: W and R must be 3-D")
        dirs = w.shape[0]
        hidden = int(attrs.get("hidden_size", r.shape[-1]))
        direction = attrs.get("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise _Refuse(f"{where}: direction {direction!r}")
        if dirs != (2 if direction == "bidirectional" else 1):
            raise InvalidModelFile(f"{self.label}: {where}: W has {dirs} directions for direction={direction!r}")
        input_size = w.shape[2]
        if w.shape != (dirs, gates * hidden, input_size) or r.shape != (dirs, gates * hidden, hidden):
            raise InvalidModelFile(f"{self.label}: {where}: W {w.shape} / R {r.shape} do not fit hidden_size={hidden}")
        layout = attrs.get("layout", 0)
        if attrs.get("input_forget", 0):
            problems.append(f"{where}: input_forget=1 (coupled input and forget gates) is not supported")
        clip = attrs.get("clip")
        # X: (T, batch, in) for layout 0, (batch, T, in) for layout 1.
        order = ("T", "B") if layout == 0 else ("B", "T")
        if len(x.axes) != 3:
            raise _Refuse(f"{where}: X of rank {len(x.axes)}")
        self.require(x.axes[0], order[0], where + " X")
        self.require(x.axes[1], order[1], where + " X")
        self._feature_axis(x, 2, where + " X")
        if x.expr.features != input_size:
            raise _Refuse(f"{where}: X has {x.expr.features} features, W expects {input_size}")
        # sequence_lens: only a constant of full lengths, which changes nothing.
        if seq_lens is not None:
            t_axis = x.axes[0 if layout == 0 else 1]
            steps = t_axis.size if isinstance(t_axis, _Sym) else None
            lens = np.asarray(seq_lens.value) if isinstance(seq_lens, _Const) else None
            if lens is not None and lens.ndim == 1:
                self.batch_size = int(lens.size)
            if lens is None or steps is None or not np.all(lens == steps):
                problems.append(f"{where}: sequence_lens is supported only as a constant equal to the fixed sequence "
                                "length (every sequence full); pad-free variable lengths are not supported")
        # Activations per direction.
        count = {"lstm": 3, "gru": 2, "simple": 1}[cell]
        defaults = {"lstm": ["Sigmoid", "Tanh", "Tanh"], "gru": ["Sigmoid", "Tanh"], "simple": ["Tanh"]}[cell]
        names = list(attrs.get("activations", defaults * dirs))
        if len(names) == count and dirs == 2:
            names = names * 2
        if len(names) != count * dirs:
            raise InvalidModelFile(f"{self.label}: {where}: {len(names)} activations for {dirs} direction(s)")
        alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
        resolved = []
        for name in names:
            spec = _RNN_FUNCTIONS.get(name.lower())
            if spec is None:
                problems.append(f"{where}: activation {name} is not supported")
                resolved.append(None)
                continue
            n_alpha, n_beta, d_alpha, d_beta = spec
            alpha = alphas.pop(0) if n_alpha and alphas else d_alpha
            beta = betas.pop(0) if n_beta and betas else d_beta
            ir_name = _rnn_activation(name, alpha, beta)
            if ir_name is None:
                params = ", ".join(f"{k}={v}" for k, v in (("alpha", alpha), ("beta", beta)) if v is not None)
                problems.append(f"{where}: activation {name}({params}) is not an edgernn activation")
            resolved.append(ir_name)
        # Biases and peepholes.
        bias = np.asarray(b.value, np.float64) if b is not None else None
        if bias is not None and bias.shape != (dirs, 2 * gates * hidden):
            raise InvalidModelFile(f"{self.label}: {where}: B has shape {bias.shape}")
        peep = None
        if p is not None:
            peep = np.asarray(p.value, np.float64)
            if cell != "lstm" or peep.shape != (dirs, 3 * hidden):
                raise InvalidModelFile(f"{self.label}: {where}: P has shape {peep.shape}")
        # Initial states.
        initial = []
        for what, value in (("initial_h", h0), ("initial_c", c0)):
            if what == "initial_c" and cell != "lstm":
                continue
            initial.append(self._initial_state(value, what, dirs, hidden, layout, where))
        if any(s is not None for s in initial) and dirs == 2:
            problems.append(f"{where}: initial states of a bidirectional node are supported only as zeros")
        if cell == "lstm" and (initial[0] is None) != (initial[1] is None):
            problems.append(f"{where}: an LSTM with initial_h but not initial_c (or the reverse) is not supported; "
                            "give both as graph inputs")
        if problems:
            raise _Refuse("; ".join(problems))
        initial_exprs = tuple(s.expr for s in initial) if initial and initial[0] is not None else ()
        base = node.name or node.output[0]
        recs = []
        for d in range(dirs):
            reverse = direction == "reverse" or d == 1
            layer = self._layer(cell, w[d], r[d], None if bias is None else bias[d], None if peep is None else peep[d],
                                hidden, input_size, resolved[d * count:(d + 1) * count],
                                attrs.get("linear_before_reset", 0), clip, reverse, base, where)
            name = base if dirs == 1 else f"{base}_{'backward' if d else 'forward'}"
            recs.append(_Rec(name, layer, x.expr, initial_exprs, reverse))
        if dirs == 2:
            recs[0].pair = recs[1]
        # Outputs in ONNX layouts: Y (T, dirs, B, H) / (B, T, dirs, H); Y_h, Y_c (dirs, B, H) / (B, dirs, H).
        outputs = []
        seq_axes = ("T", "D", "B", "F") if layout == 0 else ("B", "T", "D", "F")
        state_axes = ("D", "B", "F") if layout == 0 else ("B", "D", "F")
        if dirs == 1:
            expr = _RevSeqE(recs[0]) if recs[0].reverse else _RecE(recs[0], "seq")
            outputs.append(_Data(expr, tuple("U" if a == "D" else ("F", 0, 1) if a == "F" else a for a in seq_axes),
                                 (hidden,)))
        else:
            outputs.append(_Data(_BiE(recs[0], recs[1], "seq"),
                                 tuple(("F", 0, 1) if a == "D" else ("F", 1, 2) if a == "F" else a for a in seq_axes),
                                 (2, hidden)))
        for what in ("h", "c") if cell == "lstm" else ("h",):
            single = tuple("U" if a == "D" else ("F", 0, 1) if a == "F" else a for a in state_axes)
            if dirs == 1:
                outputs.append(_Data(_RecE(recs[0], what), single, (hidden,)))
            elif what == "h" and not initial_exprs:
                outputs.append(_Data(_BiE(recs[0], recs[1], "last"),
                                     tuple(("F", 0, 1) if a == "D" else ("F", 1, 2) if a == "F" else a
                                           for a in state_axes), (2, hidden)))
            else:
                outputs.append(_Stack(tuple(_Data(_RecE(rec, what), single, (hidden,)) for rec in recs),
                                      state_axes.index("D")))
        return outputs

    def _initial_state(self, value, what, dirs, hidden, layout, where):
        """None for an absent or zero state, else the ``_Data`` of a (batch, hidden) state."""
        if value is None:
            return None
        if isinstance(value, _Fill):
            if value.value == 0.0:
                return None
            raise _Refuse(f"{where}: {what} is a non-zero constant; make it a graph input")
        if isinstance(value, _Const):
            if not np.any(value.value):
                if value.value.ndim == 3:  # (dirs, batch, H) or, layout 1, (batch, dirs, H)
                    self.batch_size = int(value.value.shape[1 if layout == 0 else 0])
                return None
            raise _Refuse(f"{where}: {what} is a non-zero constant initializer; edgernn takes initial states only "
                          "as graph inputs (or zeros)")
        if not isinstance(value, _Data):
            raise _Refuse(f"{where}: {what} is not a tensor edgernn can follow")
        if dirs != 1 or len(value.axes) != 3:
            raise _Refuse(f"{where}: {what} of a bidirectional node")
        d_axis, b_axis = (0, 1) if layout == 0 else (1, 0)
        self.require(value.axes[d_axis], "U", where + f" {what}")
        self.require(value.axes[b_axis], "B", where + f" {what}")
        self._feature_axis(value, 2, where + f" {what}")
        if value.expr.features != hidden:
            raise _Refuse(f"{where}: {what} has {value.expr.features} features, hidden_size is {hidden}")
        return value

    def _layer(self, cell, w, r, b, p, hidden, input_size, activations, linear_before_reset, clip, reverse, base,
               where) -> ir.Recurrent:
        h = hidden
        if cell == "lstm":
            # ONNX gate blocks i, o, f, c -> IR i, f, c, o.
            order = [0, 2, 3, 1]
        else:
            order = list(range(ir.CELL_GATES[cell]))  # GRU z, r, h = IR order; RNN one block

        def blocks(a):
            return np.concatenate([a[k * h:(k + 1) * h] for k in order], axis=0)

        kernel = blocks(w).T  # (gates*H, in) -> (in, gates*H)
        recurrent = blocks(r).T
        bias = recurrent_bias = None
        reset_after = True
        if cell == "gru":
            reset_after = bool(linear_before_reset)
        if b is not None:
            wb, rb = blocks(b[:len(b) // 2]), blocks(b[len(b) // 2:])
            if cell == "gru" and reset_after:
                bias, recurrent_bias = wb, rb  # Rbh sits inside r * (R_h h + Rbh): kept apart
            else:
                bias = wb + rb  # added outside every gate product
        elif cell == "gru" and reset_after:
            recurrent_bias = None
        peephole = None
        if p is not None:
            peephole = np.stack([p[0:h], p[2 * h:3 * h], p[h:2 * h]])  # ONNX i, o, f -> IR i, f, o
        if cell == "lstm":
            f, g, hh = activations
            if g != hh:
                raise _Refuse(f"{where}: LSTM activations g={g} and h={hh} differ; edgernn uses one for both")
            recurrent_activation, activation = f, g
        elif cell == "gru":
            recurrent_activation, activation = activations
        else:
            recurrent_activation, activation = "sigmoid", activations[0]
        return ir.Recurrent(
            name=_clean_name(base), cell=cell, units=h, input_size=input_size, kernel=ir.as_weight(kernel),
            recurrent_kernel=ir.as_weight(recurrent), bias=None if bias is None else ir.as_weight(bias),
            recurrent_bias=None if recurrent_bias is None else ir.as_weight(recurrent_bias),
            activation=activation, recurrent_activation=recurrent_activation, reset_after=reset_after,
            go_backwards=reverse, peephole=None if peephole is None else ir.as_weight(peephole),
            cell_clip=None if clip is None else float(clip))

    # last / first step, pushed through per-step layers ---------------------------------------------
    def _last(self, expr, where):
        key = ("last", id(expr))
        if key in self.memo_last:
            return self.memo_last[key]
        if isinstance(expr, _RecE) and expr.what == "seq":
            result = _RecE(expr.rec, "h")  # a forward layer's last output is its final h
        elif isinstance(expr, _DenseE):
            result = replace(expr, inner=self._last(expr.inner, where))
        elif isinstance(expr, _ActE):
            result = replace(expr, inner=self._last(expr.inner, where))
        elif isinstance(expr, _BiE):
            raise _Refuse(f"{where}: the last step of a bidirectional output (its backward half has read one step "
                          "only) cannot be computed by edgernn; use the node's Y_h (final states) instead")
        elif isinstance(expr, _RevSeqE):
            raise _Refuse(f"{where}: the last step of a reverse direction's output cannot be computed by edgernn; "
                          "use its Y_h (the first step)")
        else:
            raise _Refuse(f"{where}: the last step of the input itself is not supported")
        self.memo_last[key] = result
        return result

    def _first(self, expr, where):
        key = ("first", id(expr))
        if key in self.memo_last:
            return self.memo_last[key]
        if isinstance(expr, _RevSeqE):
            result = _RecE(expr.rec, "h")  # a reverse layer's output at time 0 is its final h
        elif isinstance(expr, (_DenseE, _ActE)):
            result = replace(expr, inner=self._first(expr.inner, where))
        else:
            raise _Refuse(f"{where}: selects the first timestep; only a reverse direction's is supported")
        self.memo_last[key] = result
        return result

    # -- the end: emit the IR ----------------------------------------------------------------------
    def _finish(self, source: dict):
        outputs = []
        for value in self.graph.output:
            v = self.env.get(value.name, _UNKNOWN)
            if isinstance(v, _Unknown):
                if value.name not in self.env or not self.problems:
                    self.problems.append(f"graph output {value.name!r} is never made")
                continue
            if not isinstance(v, (_Data, _Stack)):
                self.problems.append(f"graph output {value.name!r} is a constant, not computed from the inputs")
                continue
            if any(_is_merged(self.role(a)) for item in (v.items if isinstance(v, _Stack) else (v,))
                   for a in item.axes):
                self.problems.append(f"graph output {value.name!r} has the batch and time axes merged into one")
                continue
            outputs.append((value.name, v))
        if self.problems:
            raise UnsupportedModel(f"{self.label}: cannot convert", self.problems)
        # Graph inputs whose roles no node decided: batch first, then time.
        for name, (data, syms) in self.inputs.items():
            free = [s for s in syms if s not in self.bind]
            taken = {self.bind[s] for s in syms if s in self.bind}
            for s in free:
                role = "B" if "B" not in taken else "T" if "T" not in taken else "U"
                self.bind[s] = role
                taken.add(role)
            roles = [self.bind[s] for s in syms]
            if roles.count("B") != 1 or roles.count("T") > 1:
                self.problems.append(f"graph input {name!r}: its axes are used as {roles}; edgernn needs one batch "
                                     "axis and at most one time axis")
        if self.problems:
            raise UnsupportedModel(f"{self.label}: cannot convert", self.problems)
        emitter = _Emitter(self)
        layout = _IOLayout()
        names = []
        try:
            emitter.count([item.expr for _, value in outputs
                           for item in (value.items if isinstance(value, _Stack) else (value,))])
            for onnx_name, value in outputs:
                items = value.items if isinstance(value, _Stack) else (value,)
                for item in items:
                    names.append(emitter.tensor(item.expr))
                layout.outputs.append((onnx_name, self._layout_of(value)))
        except _Refuse as exc:
            raise UnsupportedModel(f"{self.label}: cannot convert", [str(exc)]) from None
        used = [name for name in self.inputs if name in emitter.used_inputs]
        spec_inputs = []
        for name in used:
            data, syms = self.inputs[name]
            # Static time and batch sizes the graph declares: the model itself takes any, but the
            # source runs only at those, so verification (edgernn/verify.py) builds its data with them.
            steps = next((s.size for s in syms if self.bind[s] == "T" and s.size), None)
            batch = next((s.size for s in syms if self.bind[s] == "B" and s.size), None)
            if batch or self.batch_size:
                source.setdefault("batch_size", batch or self.batch_size)
            spec_inputs.append(ir.Input(name, data.expr.features, self.input_rank(name), steps))
            layout.inputs.append((name, [self.bind[s] for s in syms] + ["F"]))
        if not spec_inputs:
            raise UnsupportedModel(f"{self.label}: no output depends on a graph input")
        if not any(isinstance(n.op, (ir.Recurrent, ir.Bidirectional)) for n in emitter.nodes):
            raise UnsupportedModel(f"{self.label}: no LSTM, GRU or RNN node feeds the outputs")
        spec = ir.ModelSpec(tuple(spec_inputs), tuple(emitter.nodes), tuple(names), source)
        return spec, layout

    def _layout_of(self, value):
        if isinstance(value, _Stack):
            return ("stack", value.axis, [(self._axis_size(item, item.axes[value.axis]), self._layout_of(item))
                                          for item in value.items])
        roles = [self.role(a) for a in value.axes]
        return ("data", [list(r) if isinstance(r, tuple) else r for r in roles], list(value.factors))


def _elementwise(ir_name):
    def op(self, node, inputs, attrs, where):
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        return self._activation(inputs[0], ir_name, where, node)

    return op


for _op, _name in _PLAIN_OPS.items():
    setattr(_Converter, f"_op_{_op}", _elementwise(_name))
del _op, _name


class _Emitter:
    """Turns the expressions the outputs need into IR nodes, each once, in dependency order."""

    def __init__(self, converter: _Converter):
        self.c = converter
        self.nodes: list[ir.Node] = []
        self.memo: dict = {}
        self.used_inputs: set = set()
        self.refs: dict = {}
        self.needs: dict = {}  # id(rec) -> set of "seq", "h", "c"

    def count(self, exprs) -> None:
        """Count the references to every expression the outputs need (before emitting any)."""
        seen: set = set()
        for expr in exprs:
            self._count(expr, seen)

    def _count(self, expr, seen):
        self.refs[id(expr)] = self.refs.get(id(expr), 0) + 1
        if id(expr) in seen:
            return
        seen.add(id(expr))
        if isinstance(expr, _RecE):
            self.needs.setdefault(id(expr.rec), set()).add(expr.what)
        for child in _children(expr):
            self._count(child, seen)

    def tensor(self, expr) -> str:
        return self._emit(expr)

    def _emit(self, expr) -> str:
        key = id(expr)
        if key in self.memo:
            return self.memo[key]
        c = self.c
        if isinstance(expr, _InputE):
            self.used_inputs.add(expr.name)
            name = expr.name
        elif isinstance(expr, _RecE):
            name = self._emit_rec(expr)
        elif isinstance(expr, _BiE):
            f, b = expr.forward, expr.backward
            if f.initial or b.initial:
                raise _Refuse(f"node {f.name}: a bidirectional output with initial states (edgernn's Bidirectional "
                              "layer starts from zeros)")
            sequences = expr.what == "seq"
            op = ir.Bidirectional(c.unique(f.name.rsplit("_forward", 1)[0]),
                                  replace(f.layer, name=_clean_name(f.name), return_sequences=sequences),
                                  replace(b.layer, name=_clean_name(b.name), return_sequences=sequences), "concat")
            name = self._node(op, [self._emit(f.input)])
        elif isinstance(expr, _RevSeqE):
            rec = expr.rec
            if rec.initial:
                raise _Refuse(f"node {rec.name}: the Y of a reverse node with initial states (only Y_h/Y_c)")
            backward = replace(rec.layer, name=_clean_name(rec.name), return_sequences=True)
            zero = replace(backward, name=_clean_name(rec.name) + "_zero_forward", go_backwards=False,
                           kernel=np.zeros_like(backward.kernel), recurrent_kernel=np.zeros_like(backward.recurrent_kernel),
                           bias=None, recurrent_bias=None, peephole=None, activation="linear",
                           recurrent_activation="sigmoid", cell_clip=None)
            # A forward half of zero weights and linear activations outputs exactly 0 at every step
            # (its cell input is 0, so c and h stay 0): the sum is the reverse direction in time order.
            op = ir.Bidirectional(c.unique(rec.name), zero, backward, "sum")
            name = self._node(op, [self._emit(rec.input)])
        elif isinstance(expr, _DenseE):
            name = self._dense(expr, "linear")
        elif isinstance(expr, _ActE):
            inner = expr.inner
            if (isinstance(inner, _DenseE) and inner.activation == "linear" and self.refs.get(id(inner), 0) <= 1
                    and id(inner) not in self.memo):
                name = self._dense(inner, expr.activation)  # Gemm/MatMul + activation: one Dense
                self.memo[id(inner)] = None  # fused: never emitted on its own
            else:
                op = ir.Activation(c.unique(expr.name), expr.activation)
                name = self._node(op, [self._emit(inner)])
        else:  # pragma: no cover
            raise _Refuse(f"unknown expression {expr!r}")
        self.memo[key] = name
        return name

    def _dense(self, expr: _DenseE, activation: str) -> str:
        op = ir.Dense(self.c.unique(expr.name), expr.kernel, expr.bias, activation)
        return self._node(op, [self._emit(expr.inner)])

    def _node(self, op, inputs, initial=(), extra=0) -> str:
        outputs = tuple(f"{op.name}:{k}" for k in range(1 + extra))
        self.nodes.append(ir.Node(op, tuple(inputs), outputs, initial_state=tuple(initial)))
        return outputs[0] if not extra else outputs

    def _emit_rec(self, expr: _RecE) -> str:
        rec = expr.rec
        key = ("rec", id(rec))
        if key not in self.memo:
            needs = self.needs.get(id(rec), {expr.what})
            sequences = "seq" in needs
            states = "c" in needs or (sequences and "h" in needs)
            layer = replace(rec.layer, name=self.c.unique(rec.name), return_sequences=sequences)
            x = self._emit(rec.input)
            initial = [self._emit(s) for s in rec.initial]
            extra = layer.state_count if states else 0
            outs = self._node(layer, [x], initial, extra)
            outs = (outs,) if isinstance(outs, str) else outs
            made = {}
            if sequences:
                made["seq"] = outs[0]
                if states:
                    made["h"] = outs[1]
            else:
                made["h"] = outs[0]  # the last output of a cell without projection is its final h
            if "c" in needs:
                made["c"] = outs[2]
            self.memo[key] = made
        return self.memo[key][expr.what]


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def _read(path: Path):
    try:
        import onnx
    except ImportError as exc:
        raise UnsupportedModel(f"{path.name}: reading .onnx files needs the onnx package "
                               "(pip install edgernn[onnx])") from exc
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - DecodeError, missing external data
        raise InvalidModelFile(f"{path.name}: not a readable ONNX model: {exc}") from exc
    if not len(model.graph.node) and not len(model.graph.output):
        raise InvalidModelFile(f"{path.name}: not an ONNX model (empty graph)")
    return model


def _convert(model, label: str, source: dict):
    import onnx

    source = {"format": "onnx", **source, "framework": "onnx", "framework_version": onnx.__version__,
              "producer": model.producer_name or None, "opset": None}
    converter = _Converter(model, label)
    source["opset"] = converter.opset
    try:
        return converter.convert(source)
    except EdgernnError:
        raise
    except _Refuse as exc:
        raise UnsupportedModel(f"{label}: cannot convert", [str(exc)]) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise InvalidModelFile(f"{label}: malformed model ({type(exc).__name__}: {exc})") from exc


def load_onnx_file(path, **options) -> ir.ModelSpec:
    """Read an ``.onnx`` file into a ModelSpec (see the module docstring for the mapping)."""
    if options:
        raise TypeError(f"load_onnx_file() got unexpected options: {', '.join(sorted(options))}")
    path = Path(path)
    return _convert(_read(path), path.name, {"file": path.name})[0]


def io_layout(source) -> _IOLayout:
    """How the converted model's inputs and outputs map to the ONNX graph's (names, axis roles)."""
    path = Path(source)
    return _convert(_read(path), path.name, {"file": path.name})[1]


def to_onnx_input(array: np.ndarray, roles: list) -> np.ndarray:
    """An edgernn input ((batch, T, F) or (batch, F)) laid out as the ONNX graph input ``roles`` says."""
    canonical = [r for r in ("B", "T") if r in roles] + ["F"]
    moved = np.transpose(array, [canonical.index(r) for r in roles if r != "U"])
    for i, r in enumerate(roles):
        if r == "U":
            moved = np.expand_dims(moved, i)
    return moved


def to_edgernn_output(array: np.ndarray, layout) -> list:
    """An ONNX output as the edgernn output(s) it maps to (a stack gives one array per item)."""
    kind = layout[0]
    if kind == "stack":
        _, axis, items = layout
        out, start = [], 0
        for size, item in items:
            part = np.take(array, range(start, start + size), axis=axis)
            out.extend(to_edgernn_output(part, item))
            start += size
        return out
    _, roles, factors = layout
    roles = [tuple(r) if isinstance(r, list) else r for r in roles]
    keep = [i for i, r in enumerate(roles) if r != "U"]
    array = array.reshape([array.shape[i] for i in keep])
    roles = [roles[i] for i in keep]
    order = [roles.index("B")] + ([roles.index("T")] if "T" in roles else [])
    features = sorted((i for i, r in enumerate(roles) if isinstance(r, tuple)), key=lambda i: roles[i][1])
    array = np.transpose(array, order + features)
    return [array.reshape(array.shape[:len(order)] + (int(np.prod(factors)),))]


# What onnx's reference evaluator (onnx.reference) implements of the recurrent nodes: its LSTM and
# GRU ignore ``activations``, ``clip`` and ``input_forget``; its RNN knows Tanh and Affine only.
_REFERENCE_DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _reference_problem(model) -> Optional[str]:
    """Why onnx's reference evaluator would compute ``model``'s recurrent nodes wrongly, or None."""
    for node in model.graph.node:
        defaults = _REFERENCE_DEFAULTS.get(node.op_type)
        if defaults is None:
            continue
        attrs = _attrs(node)
        names = [a.lower() for a in attrs.get("activations", [])]
        if any(n != d.lower() for n, d in zip(names, defaults * 2)) or attrs.get("clip") is not None \
                or attrs.get("input_forget", 0):
            return (f"node {node.name or node.output[0]!r} ({node.op_type}) uses activations, clip or input_forget, "
                    "which onnx's reference evaluator does not implement")
    return None


def _as_layout_0(model):
    """A copy of ``model`` whose ``layout=1`` recurrent nodes are ``layout=0`` nodes between
    Transposes (X and initial states (batch, ...) -> (T or dirs, batch, ...); Y (T, dirs, batch, H)
    -> (batch, T, dirs, H), Y_h/Y_c (dirs, batch, H) -> (batch, dirs, H)), or None if it has none."""
    import onnx
    from onnx import helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes, changed = [], False
    for node in copy.graph.node:
        if node.op_type not in _REFERENCE_DEFAULTS or not _attrs(node).get("layout", 0):
            nodes.append(node)
            continue
        changed = True
        inputs, outputs = list(node.input), list(node.output)
        for k in (0, 5, 6):  # X, initial_h, initial_c
            if k < len(inputs) and inputs[k]:
                nodes.append(helper.make_node("Transpose", [inputs[k]], [inputs[k] + "__layout0"], perm=[1, 0, 2]))
                inputs[k] += "__layout0"
        after = []
        for k, name in enumerate(outputs):
            if name:
                after.append(helper.make_node("Transpose", [name + "__layout0"], [name],
                                              perm=[2, 0, 1, 3] if k == 0 else [1, 0, 2]))
                outputs[k] = name + "__layout0"
        attributes = [a for a in node.attribute if a.name != "layout"]
        rewritten = helper.make_node(node.op_type, inputs, outputs, name=node.name)
        rewritten.attribute.extend(attributes)
        nodes += [rewritten] + after
    if not changed:
        return None
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _source_runner(source):
    """``(run(output_names, feeds), {input name: shape}, runtime name)`` for the ``.onnx`` file:
    onnxruntime's CPU session; when onnxruntime refuses the model (its CPU LSTM/GRU/RNN kernels refuse
    ``layout=1``), onnx's own reference evaluator (``onnx.reference``, an independent NumPy
    implementation of the operators) if it implements the model's recurrent nodes, else onnxruntime
    on the model with its ``layout=1`` nodes rewritten to ``layout=0`` between Transposes."""
    import onnx
    import onnxruntime
    from importlib import metadata

    def session_of(model_or_path):
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # a refusal is reported in the verification record, not on stderr
        return onnxruntime.InferenceSession(model_or_path, options, providers=["CPUExecutionProvider"])

    ort = f"onnxruntime {metadata.version('onnxruntime')}"
    try:
        session = session_of(str(source))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's Fail/NotImplemented/InvalidGraph
        from onnx.reference import ReferenceEvaluator

        found = re.search(r"[^.:]*not supported[^.]*", str(exc))
        refused = (found.group(0) if found else str(exc) or type(exc).__name__).strip()[:200]
        model = _read(Path(source))
        shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                  for v in model.graph.input}
        problem = _reference_problem(model)
        if problem is None:
            name = f"onnx {onnx.__version__} reference evaluator (onnxruntime refuses the model: {refused})"
            return ReferenceEvaluator(model).run, shapes, name
        rewritten = _as_layout_0(model)
        if rewritten is None:
            raise RuntimeError(f"onnxruntime refuses the model ({refused}) and {problem}") from exc
        session = session_of(rewritten.SerializeToString())
        return session.run, shapes, (f"{ort} on the model rewritten to layout=0 (onnxruntime refuses layout=1, "
                                     f"and {problem})")
    return session.run, {info.name: info.shape for info in session.get_inputs()}, ort


def source_runtime(source) -> str:
    """The runtime :func:`run_source` runs ``source`` with (named in the verification record)."""
    return _source_runner(source)[2]


def run_source(source, inputs, **options) -> list[np.ndarray]:
    """Run the ``.onnx`` file on ``inputs`` (edgernn's shapes, one array per input of the converted
    model) with onnxruntime, or onnx's reference evaluator where onnxruntime refuses the model (see
    :func:`source_runtime`); returns what the converted model's ``predict`` returns, as a list."""
    if options:
        raise TypeError(f"run_source() got unexpected options: {', '.join(sorted(options))}")
    layout = io_layout(source)
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    inputs = [np.asarray(x, np.float32) for x in inputs]
    run, shapes, _ = _source_runner(source)
    wanted = [name for name, _ in layout.outputs]
    # A graph exported without a dynamic batch axis runs only at its own batch size: run the rows
    # in chunks of that size (the last one padded with zeros) and keep the real rows.
    fixed = None
    for name, roles in layout.inputs:
        if "B" in roles and isinstance(shapes[name][roles.index("B")], int):
            fixed = shapes[name][roles.index("B")]
    total = inputs[0].shape[0]
    chunk = fixed or total
    pieces: list[list[np.ndarray]] = []
    for start in range(0, max(total, 1), max(chunk, 1)):
        part = [x[start : start + chunk] for x in inputs]
        rows = part[0].shape[0]
        if rows < chunk:
            part = [np.concatenate([p, np.zeros((chunk - rows,) + p.shape[1:], np.float32)]) for p in part]
        feeds = {name: to_onnx_input(x, roles) for (name, roles), x in zip(layout.inputs, part)}
        results = run(wanted, feeds)
        out = []
        for (name, item_layout), array in zip(layout.outputs, results):
            out.extend(to_edgernn_output(np.asarray(array, np.float32), item_layout))
        pieces.append([o[:rows] for o in out])
    return [np.concatenate(parts) for parts in zip(*pieces)]
