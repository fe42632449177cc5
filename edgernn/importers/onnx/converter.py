"""The conversion: the graph walked node by node in file order (the nodes its outputs need), each
node mapped by the op family's module to symbolic values, every problem gathered; then the axis
roles left open are decided, the expressions the outputs need are emitted as IR, and the inputs and
outputs are recorded with their ONNX layouts. Entry points: :func:`load_onnx_file`, :func:`io_layout`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ... import ir
from ...errors import EdgernnError, InvalidModelFile, UnknownOption, UnsupportedModel
from .._fold import fold_into_linear_maps, with_flatten_steps
from .._refusals import end_refusal
from .activations import _ActivationOps
from .axes import _AxisOps
from .constants import _ConstantOps
from .container import _attrs, _read
from .conv import CHANNELS_FIRST_OPS, _ConvOps
from .dense import _DenseOps
from .emit import _Emitter
from .expressions import _InputE
from .graph import _clean_name, _LOOPS, _needed_nodes
from .merge import _MergeOps
from .producers import dynamo_note
from .recurrent import _RecurrentOps
from .reshape import _ReshapeOps
from .roles import _Roles
from .select import _SelectOps
from .values import _Codes, _Const, _Data, _is_merged, _Refuse, _Stack, _Sym, _Unknown, _UNKNOWN


@dataclass
class _IOLayout:
    """How edgernn's inputs and outputs map to the ONNX graph's (for run_source and the tests)."""

    inputs: list = field(default_factory=list)  # [(onnx name, roles per ONNX axis)]
    # [(onnx name, layout)]; layout: ("data", roles, factors) or ("stack", axis, [(size, layout), ...])
    outputs: list = field(default_factory=list)
    codes: dict = field(default_factory=dict)  # onnx name of an integer-codes input -> its NumPy dtype


# The length of integer codes recorded for a graph whose codes' time axis is dynamic: verification
# runs the source on codes of this length; predict takes any.
CODES_STEPS = 16


class _Converter(_Roles, _ConstantOps, _AxisOps, _SelectOps, _ReshapeOps, _DenseOps, _ActivationOps, _RecurrentOps,
                 _ConvOps, _MergeOps):
    """One conversion: the environment of symbolic values, the axis roles bound so far, the problems."""

    def __init__(self, model, label: str):
        self.model = model
        self.graph = model.graph
        self.label = label
        self.problems: list[str] = []
        self.bind: dict = {}  # _Sym -> "B" | "T" | "U"
        self.env: dict = {}
        self.inputs: dict = {}  # graph input name -> (_Data, [syms])
        self.feature_axis: dict = {}  # graph input name -> its features' axis (1 when a Conv reads it)
        self.codes: dict = {}  # graph input of integer codes (an embedding's) -> its NumPy dtype
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.names: set = set()
        self.memo_last: dict = {}
        self.batch_size: Optional[int] = None  # fixed by a constant the graph holds (zero states, sequence_lens)

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
        needed = _needed_nodes(graph)
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

        codes = {TensorProto.INT64: "int64", TensorProto.INT32: "int32"}.get(t.tensor_type.elem_type)
        if codes and all(n.op_type == "Gather" and list(n.input[1:]) == [value.name] and n.input[0] != value.name
                         for n in self.graph.node if value.name in n.input):
            return self._codes_input(value, codes)
        if t.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            self.problems.append(f"graph input {value.name!r} is not a float tensor (sequence_lens and other "
                                 "integer inputs must be constants)")
            return _UNKNOWN
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]
        # The features are the last axis, or axis 1 of an input a Conv (pooling, BatchNormalization) reads.
        position = len(dims) - 1
        if len(dims) == 3 and any(n.op_type in CHANNELS_FIRST_OPS and n.input and n.input[0] == value.name
                                  for n in self.graph.node):
            position = 1
        if len(dims) not in (2, 3) or dims[position] in (None, 0):
            self.problems.append(f"graph input {value.name!r} must be (batch, T, features) or (batch, features) "
                                 f"in some order with a fixed feature size, has shape {dims}")
            return _UNKNOWN
        syms = [_Sym(value.name, i, d) for i, d in enumerate(dims) if i != position]
        expr = _InputE(value.name, int(dims[position]), self)
        axes = list(syms)
        axes.insert(position, ("F", 0, 1))
        data = _Data(expr, tuple(axes), (int(dims[position]),))
        self.feature_axis[value.name] = position
        self.inputs[value.name] = (data, syms)
        return data

    def _codes_input(self, value, dtype: str):
        """A graph input of integer codes that only ``Gather`` nodes read (as indices): an embedding's
        input, ``(batch, T)`` or ``(T, batch)``; edgernn's is an ``int`` input (batch, T)."""
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        if len(dims) != 2:
            self.problems.append(f"graph input {value.name!r}: integer codes of shape {dims} are not (batch, T)")
            return _UNKNOWN
        syms = [_Sym(value.name, i, d) for i, d in enumerate(dims)]
        data = _Data(_InputE(value.name, 0, self), tuple(syms), ())
        self.inputs[value.name] = (data, syms)
        self.codes[value.name] = dtype
        return _Codes(data)

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
            roles = [self.bind[s] for s in syms]
            if name in self.codes:  # (batch, T) codes; T is the graph's, else CODES_STEPS (predict takes any)
                spec_inputs.append(ir.Input(name, steps or CODES_STEPS, 2, dtype="int"))
                layout.codes[name] = self.codes[name]
            else:
                spec_inputs.append(ir.Input(name, data.expr.features, self.input_rank(name), steps))
                roles.insert(self.feature_axis[name], "F")
            layout.inputs.append((name, roles))
        if not spec_inputs:
            raise UnsupportedModel(f"{self.label}: no output depends on a graph input")
        if not any(isinstance(n.op, (ir.Recurrent, ir.Bidirectional, ir.Conv1D)) for n in emitter.nodes):
            raise UnsupportedModel(f"{self.label}: no LSTM, GRU, RNN or Conv node feeds the outputs")
        spec = ir.ModelSpec(tuple(spec_inputs), tuple(emitter.nodes), tuple(names), source)
        return fold_into_linear_maps(with_flatten_steps(spec)), layout

    def _layout_of(self, value):
        if isinstance(value, _Stack):
            return ("stack", value.axis, [(self._axis_size(item, item.axes[value.axis]), self._layout_of(item))
                                          for item in value.items])
        roles = [self.role(a) for a in value.axes]
        return ("data", [list(r) if isinstance(r, tuple) else r for r in roles], list(value.factors))


def _convert(model, label: str, source: dict):
    """Convert ``model``; a refusal ends with what the exporter can do instead (a file of PyTorch's
    dynamo exporter) and where docs/onnx.md lists what converts."""
    try:
        return _convert_model(model, label, source)
    except UnsupportedModel as exc:
        raise end_refusal(exc, "docs/onnx.md", dynamo_note(model))


def _convert_model(model, label: str, source: dict):
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
    """Read an ``.onnx`` file into a ModelSpec (see the package docstring for the mapping)."""
    if options:
        raise UnknownOption("load_onnx_file", options)
    path = Path(path)
    return _convert(_read(path), path.name, {"file": path.name})[0]


def io_layout(source) -> _IOLayout:
    """How the converted model's inputs and outputs map to the ONNX graph's (names, axis roles)."""
    path = Path(source)
    return _convert(_read(path), path.name, {"file": path.name})[1]
