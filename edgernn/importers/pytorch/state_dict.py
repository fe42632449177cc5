"""PyTorch importer: ``nn.Module`` objects, ``.pt``/``.pth`` files (state_dict or TorchScript) and
``.safetensors`` state dicts -> :class:`~edgernn.ir.ModelSpec`.

torch is imported lazily, inside the functions that need it; ``.safetensors`` files are read with
the ``safetensors`` package's NumPy API and need no torch at all. No file is ever unpickled without
restriction: a state_dict is read with ``torch.load(..., weights_only=True)`` (tensors and plain
containers only, no Python object is built, no code runs), a TorchScript archive with
``torch.jit.load`` (only when the zip holds a ``code/`` folder).

How a module maps (the rules are the same for a live module, a TorchScript file and a state dict):

* A bare ``nn.LSTM``/``nn.GRU``/``nn.RNN``: one IR layer per PyTorch layer (``ir.Bidirectional``
  with ``merge_mode="concat"`` for ``bidirectional=True``, so layer ``k + 1`` reads both
  directions concatenated, as PyTorch does). ``predict`` returns PyTorch's ``output`` (the first
  element of the tuple) as ``(batch, T, features)`` whatever ``batch_first`` was. The final states
  ``h_n``/``c_n`` of a unidirectional module are the stream's state after a run:
  ``s = m.stream(B); s.run(x); s.get_state()["<name>_l<k>/h"]`` is ``h_n[k]`` (and ``/c`` is
  ``c_n[k]``), where ``<name>`` is ``lstm``, ``gru`` or ``rnn`` for a bare module and the module's
  path in a composed one.
* A composed module: its children in registration order (recursively through ``nn.Sequential``,
  ``nn.ModuleList`` and plain container modules), each applied to the previous one's output:
  recurrent modules, ``nn.Linear`` (-> ``ir.Dense``, an activation module right after it fused
  into the Dense), activation modules (-> ``ir.Activation``), ``nn.Dropout``/``nn.Identity``
  (skipped: the identity at inference). The module's ``forward`` is not visible, so how the last
  recurrent module's output reaches the head is an explicit option:

  - ``head="last"``: the head sees the output's last step, ``output[:, -1]`` (batch_first) or
    ``output[-1]``; ``predict`` returns ``(batch, outputs)``. Refused for a bidirectional last
    module (its backward half at the last step has read one step only; no IR layer computes it).
  - ``head="every"``: the head runs on every step; ``predict`` returns ``(batch, T, outputs)``.
  - ``head="final"``: the head sees the last layer's final hidden state, ``h_n[-1]``, or for a
    bidirectional module ``torch.cat([h_n[-2], h_n[-1]], dim=1)``; ``predict`` returns
    ``(batch, outputs)``.

  A composed module without ``head`` is refused with an error naming the option. The input of a
  composed module is ``(batch, T, features)`` for ``predict`` too; run by PyTorch it is laid out
  as its first recurrent module's ``batch_first`` says.

Weight reshuffles (IR layout in :mod:`edgernn.ir`): PyTorch stores ``(gates * H, in)``, the IR
``(in, gates * H)``: every matrix is transposed. LSTM rows i, f, g, o are the IR's i, f, c, o (same
order); ``bias_ih + bias_hh`` summed. GRU rows r, z, n are reordered to z, r, h; ``reset_after=True``
(PyTorch's candidate is ``tanh(W_in x + b_in + r * (W_hn h + b_hn))``); ``bias_ih`` -> ``bias`` and
``bias_hh`` -> ``recurrent_bias``, kept apart because ``b_hn`` sits inside ``r * (...)``. RNN ->
``simple`` with activation tanh or relu, biases summed. ``weight_hr`` (``proj_size``) -> the LSTM
``projection``, transposed.

State dicts carry weights only. The architecture is read from key names and shapes:
``weight_ih_l{k}`` (layers), ``*_reverse`` (bidirectional), ``weight_hr_l{k}`` (proj_size),
``bias_ih_l{k}`` (bias), ``<prefix>.weight``/``<prefix>.bias`` (Linear). The cell type comes from
``weight_hh_l0``: ``(gates * H, H)`` (or ``(4 * H, proj_size)`` with ``weight_hr_l0`` of shape
``(proj_size, H)``) gives the gate multiple unambiguously (``weight_ih`` alone could not tell a GRU
of hidden 4k from an LSTM of hidden 3k). What a state dict cannot carry is given as keyword
options named as PyTorch names them: ``nonlinearity="tanh"|"relu"`` (or
``mode="RNN_TANH"|"RNN_RELU"``) for an ``nn.RNN``, ``batch_first`` (used when the rebuilt module is
run), ``head``, ``activations={"<path>": "ReLU", ...}`` for parameterless modules (a gap in a
Sequential's numbering, ``head.1``, or an activation after a module, keyed by that module's path)
and ``order=["rnn", "fc"]`` when a safetensors file (which keeps no order) allows several.
"""

from __future__ import annotations

import itertools
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ... import ir
from ...errors import InvalidModelFile, UnsupportedModel

__all__ = ["from_torch_module", "load_torch_file", "load_safetensors_file", "run_source"]

HEADS = ("last", "every", "final")
# PyTorch's RNNBase.mode -> (IR cell, activation); plain nn.RNN modes carry the nonlinearity.
_MODES = {"LSTM": ("lstm", "tanh"), "GRU": ("gru", "tanh"), "RNN_TANH": ("simple", "tanh"),
          "RNN_RELU": ("simple", "relu")}
_GATES_TO_MODE = {4: "LSTM", 3: "GRU", 1: "RNN"}
_RNN_CLASSES = {"LSTM", "GRU", "RNN"}
_SKIP_CLASSES = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
                 "Identity"}
_CONTAINER_CLASSES = {"Sequential", "ModuleList", "ModuleDict"}
_OPTIONS = {"head", "mode", "nonlinearity", "batch_first", "activations", "order"}


# ---------------------------------------------------------------------------------------------
# Activations: PyTorch module class (and its parameters) -> IR name
# ---------------------------------------------------------------------------------------------

# Classes whose PyTorch definition equals the IR's (see edgernn.reference.activations).
_PLAIN_ACTIVATIONS = {
    "ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "ReLU6": "relu6", "SELU": "selu",
    "SiLU": "silu", "Mish": "mish", "Softsign": "softsign", "LogSigmoid": "log_sigmoid",
    "Tanhshrink": "tanh_shrink", "Hardsigmoid": "hard_sigmoid", "Hardswish": "hard_silu",
}
# Accepted in the ``activations`` option as well (IR names, lower case).
_IR_NAMES = set(ir.ELEMENTWISE_ACTIVATIONS + ir.VECTOR_ACTIVATIONS)


def _activation_of(cls: str, attrs: dict, where: str, problems: list[str]) -> Optional[str]:
    """The IR activation of PyTorch activation module ``cls`` with ``attrs``; None (+ problem) if none."""
    if cls in _PLAIN_ACTIVATIONS:
        return _PLAIN_ACTIVATIONS[cls]

    def param(name, default, wanted, ir_name):
        value = attrs.get(name, default)
        if value is None or not np.isclose(float(value), wanted, rtol=0, atol=1e-7):
            problems.append(f"{where}: {cls}({name}={value}) is not supported (edgernn's {ir_name} has "
                            f"{name}={wanted})")
            return None
        return ir_name

    if cls in ("Softmax", "LogSoftmax"):
        dim = attrs.get("dim")
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            problems.append(f"{where}: {cls}(dim={dim}) is supported only over the feature (last) axis: "
                            "give dim=-1")
            return None
        return "softmax" if cls == "Softmax" else "log_softmax"
    if cls == "ELU":
        return param("alpha", 1.0, 1.0, "elu")
    if cls == "CELU":
        return param("alpha", 1.0, 1.0, "celu")
    if cls == "LeakyReLU":
        return param("negative_slope", 0.01, 0.2, "leaky_relu")
    if cls == "Softplus":
        if param("beta", 1.0, 1.0, "softplus") is None:
            return None
        return "softplus"  # threshold=20: x itself above it, within 2e-9 of log(1 + e^x) there
    if cls == "Hardtanh":
        if attrs.get("min_val", -1.0) != -1.0 or attrs.get("max_val", 1.0) != 1.0:
            problems.append(f"{where}: Hardtanh(min_val={attrs.get('min_val')}, max_val={attrs.get('max_val')}) "
                            "is supported only as Hardtanh(-1, 1)")
            return None
        return "hard_tanh"
    if cls == "GELU":
        if attrs.get("approximate", "none") != "none":
            problems.append(f"{where}: GELU(approximate={attrs.get('approximate')!r}) is not supported "
                            "(edgernn's gelu is the exact erf form)")
            return None
        return "gelu"
    problems.append(f"{where}: module {cls} is not supported")
    return None


_ACTIVATION_CLASSES = set(_PLAIN_ACTIVATIONS) | {"Softmax", "LogSoftmax", "ELU", "CELU", "LeakyReLU", "Softplus",
                                                 "Hardtanh", "GELU"}


# ---------------------------------------------------------------------------------------------
# The description every source is reduced to: a chain of layers in forward order
# ---------------------------------------------------------------------------------------------


@dataclass
class _RNN:
    path: str
    mode: str  # LSTM, GRU, RNN_TANH, RNN_RELU
    params: dict  # PyTorch parameter name (weight_ih_l0, ...) -> numpy array
    num_layers: int
    bidirectional: bool
    bias: bool
    proj_size: int
    hidden_size: int
    input_size: int
    batch_first: bool = False

    @property
    def output_size(self) -> int:
        return (self.proj_size or self.hidden_size) * (2 if self.bidirectional else 1)


@dataclass
class _Linear:
    path: str
    weight: np.ndarray  # (out, in), as PyTorch stores it
    bias: Optional[np.ndarray]

    @property
    def input_size(self):
        return int(self.weight.shape[1])

    @property
    def output_size(self):
        return int(self.weight.shape[0])


@dataclass
class _Act:
    path: str
    activation: str  # IR name
    dim: Optional[int] = None  # Softmax/LogSoftmax: the axis, checked against the rank where it acts


@dataclass
class _Chain:
    """A source reduced to layers in forward order; ``bare`` when it is a single recurrent module."""

    layers: list
    bare: bool
    label: str
    source: dict = field(default_factory=dict)


def _check_options(options: dict, function: str) -> None:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(f"{function}() got unexpected options: {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(_OPTIONS))})")


def _flag(value, name: str) -> bool:
    """A boolean option; the CLI passes JSON, so ``true``/``"true"``/``1`` are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise UnsupportedModel(f"option {name}={value!r} must be true or false")


def _head_option(options: dict) -> Optional[str]:
    head = options.get("head")
    if head is not None and head not in HEADS:
        raise UnsupportedModel(f"option head={head!r} must be one of {', '.join(repr(h) for h in HEADS)}")
    return head


def _mode_for(options: dict, path: str):
    """The ``mode`` option for recurrent module ``path`` (a string, or a dict keyed by path)."""
    mode = options.get("mode")
    if isinstance(mode, dict):
        mode = mode.get(path, mode.get(path or "", None))
    if mode is None:
        return None
    mode = str(mode).upper()
    aliases = {"RNN": "RNN", "RNN_TANH": "RNN_TANH", "RNN_RELU": "RNN_RELU", "LSTM": "LSTM", "GRU": "GRU"}
    if mode not in aliases:
        raise UnsupportedModel(f"option mode={options.get('mode')!r}: expected 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU'")
    return aliases[mode]


# ---------------------------------------------------------------------------------------------
# Building the IR from a chain
# ---------------------------------------------------------------------------------------------


def _gru_rows(a: np.ndarray, h: int) -> np.ndarray:
    """PyTorch GRU gate blocks r, z, n (rows, axis 0) -> IR order z, r, h."""
    return np.concatenate([a[h:2 * h], a[:h], a[2 * h:3 * h]], axis=0)


def _recurrent_layer(rnn: _RNN, k: int, suffix: str, name: str, input_size: int, return_sequences: bool,
                     go_backwards: bool) -> ir.Recurrent:
    """IR layer of PyTorch layer ``k`` (direction ``suffix``: "" or "_reverse") of ``rnn``."""
    p = rnn.params
    h = rnn.hidden_size
    w_ih = np.asarray(p[f"weight_ih_l{k}{suffix}"], np.float64)
    w_hh = np.asarray(p[f"weight_hh_l{k}{suffix}"], np.float64)
    b_ih = p.get(f"bias_ih_l{k}{suffix}") if rnn.bias else None
    b_hh = p.get(f"bias_hh_l{k}{suffix}") if rnn.bias else None
    cell, activation = _MODES[rnn.mode]
    recurrent_bias = None
    bias = None
    if cell == "gru":
        # Gate reorder r, z, n -> z, r, h; the recurrent bias stays apart (b_hn sits inside r * (...)).
        w_ih, w_hh = _gru_rows(w_ih, h), _gru_rows(w_hh, h)
        if b_ih is not None:
            bias = _gru_rows(np.asarray(b_ih, np.float64), h)
            recurrent_bias = _gru_rows(np.asarray(b_hh, np.float64), h)
    elif b_ih is not None:
        # LSTM (i, f, g, o = IR i, f, c, o) and RNN: both biases are added outside any gate product.
        bias = np.asarray(b_ih, np.float64) + np.asarray(b_hh, np.float64)
    projection = None
    if rnn.proj_size:
        projection = ir.as_weight(np.asarray(p[f"weight_hr_l{k}{suffix}"]).T)  # (proj, H) -> (H, proj)
    return ir.Recurrent(
        name=name, cell=cell, units=h, input_size=input_size,
        kernel=ir.as_weight(w_ih.T), recurrent_kernel=ir.as_weight(w_hh.T),  # (G*H, n) -> (n, G*H)
        bias=None if bias is None else ir.as_weight(bias),
        recurrent_bias=None if recurrent_bias is None else ir.as_weight(recurrent_bias),
        activation=activation, recurrent_activation="sigmoid", reset_after=True,
        return_sequences=return_sequences, go_backwards=go_backwards, projection=projection)


def _rnn_name(rnn: _RNN, k: int) -> str:
    base = rnn.path or {"LSTM": "lstm", "GRU": "gru"}.get(rnn.mode, "rnn")
    return f"{base}_l{k}"


def _build(chain: _Chain, head: Optional[str]) -> tuple[ir.ModelSpec, str]:
    """The ModelSpec of ``chain`` with ``head`` semantics; returns (spec, the head used)."""
    label = chain.label
    layers = chain.layers
    rnns = [i for i, layer in enumerate(layers) if isinstance(layer, _RNN)]
    if not rnns:
        raise UnsupportedModel(f"{label}: no recurrent module (nn.LSTM, nn.GRU, nn.RNN) found")
    last_rnn = rnns[-1]
    if chain.bare:
        if head not in (None, "every"):
            raise UnsupportedModel(f"{label}: a bare {layers[0].mode} module returns its output sequence; "
                                   f"head={head!r} applies to modules with a head only")
        head = "every"
    elif head is None:
        raise UnsupportedModel(
            f"{label}: how forward() passes the output of recurrent module {layers[last_rnn].path!r} on is not "
            "visible; choose it with the option head='last' (the head sees output[:, -1]), head='every' "
            "(the head runs on every step) or head='final' (the head sees h_n of the last layer, both "
            "directions concatenated)")
    if head == "last" and layers[last_rnn].bidirectional:
        raise UnsupportedModel(
            f"{label}: head='last' on bidirectional module {layers[last_rnn].path!r} means output[:, -1], whose "
            "backward half has read only the last step; edgernn cannot compute that. Use head='final' "
            "(torch.cat([h_n[-2], h_n[-1]], 1)) or head='every'")

    problems: list[str] = []
    nodes: list[ir.Node] = []
    features = None
    rank = 3
    tensor = "x"
    for index, layer in enumerate(layers):
        where = f"module {layer.path!r}" if layer.path else "the module"
        if isinstance(layer, _RNN):
            if features is not None and features != layer.input_size:
                problems.append(f"{where} takes {layer.input_size} features but gets {features}")
            if rank != 3:
                problems.append(f"{where} reads a sequence, but it comes after the head collapsed the time axis")
            size = layer.input_size
            for k in range(layer.num_layers):
                name = _rnn_name(layer, k)
                sequences = not (index == last_rnn and k == layer.num_layers - 1 and head in ("last", "final"))
                forward = _recurrent_layer(layer, k, "", name, size, sequences, False)
                if layer.bidirectional:
                    backward = _recurrent_layer(layer, k, "_reverse", name + "_reverse", size, sequences, True)
                    op = ir.Bidirectional(name, forward, backward, "concat")
                else:
                    op = forward
                out = f"{name}:0"
                nodes.append(ir.Node(op, (tensor,), (out,)))
                tensor, size = out, op.output_size
                if not sequences:
                    rank = 2
            features = size
        elif isinstance(layer, _Linear):
            if features is not None and features != layer.input_size:
                problems.append(f"{where} (Linear) takes {layer.input_size} features but gets {features}")
            bias = None if layer.bias is None else ir.as_weight(layer.bias)
            op = ir.Dense(layer.path or "linear", ir.as_weight(np.asarray(layer.weight).T), bias)
            out = f"{op.name}:0"
            nodes.append(ir.Node(op, (tensor,), (out,)))
            tensor, features = out, layer.output_size
        elif isinstance(layer, _Act):
            if layer.dim is not None and layer.dim not in (-1, rank - 1):
                problems.append(f"{where}: {layer.activation} over dim={layer.dim} of a rank-{rank} tensor is not "
                                "over the feature (last) axis; only dim=-1 is supported")
            previous = nodes[-1].op if nodes else None
            if isinstance(previous, ir.Dense) and previous.activation == "linear":
                # Linear followed by an activation module: one Dense with that activation.
                nodes[-1] = ir.Node(replace(previous, activation=layer.activation), nodes[-1].inputs, nodes[-1].outputs)
            else:
                op = ir.Activation(layer.path or "activation", layer.activation)
                out = f"{op.name}:0"
                nodes.append(ir.Node(op, (tensor,), (out,)))
                tensor = out
    first = next(layer for layer in layers if isinstance(layer, (_RNN, _Linear)))
    if problems:
        raise UnsupportedModel(f"{label}: the modules do not chain", problems)
    source = {"format": "pytorch", **chain.source, "head": head}
    spec = ir.ModelSpec((ir.Input("x", first.input_size),), tuple(nodes), (tensor,), source)
    return spec, head


# ---------------------------------------------------------------------------------------------
# Live modules and TorchScript: walk the module tree
# ---------------------------------------------------------------------------------------------


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().float().numpy().copy()


def _class_name(module) -> str:
    """The PyTorch class of a module; TorchScript modules keep it as ``original_name``."""
    return getattr(module, "original_name", None) or type(module).__name__


_TRACED_RNN = re.compile(r"torch\.(lstm|gru|rnn_tanh|rnn_relu)\((.*)\)")


def _traced_call(module):
    """For a traced (not scripted) RNN, its ``torch.<op>(...)`` call from the module's code text.

    Traced modules keep no Python attributes (batch_first, mode); the code PyTorch stores in the
    archive names the op and passes them as constants: ``torch.lstm(input, hx, params, has_biases,
    num_layers, dropout, train, bidirectional, batch_first)``. Read as text only, never run.
    """
    try:
        code = module.code
    except Exception:  # noqa: BLE001 - not TorchScript, or no code
        return None
    match = _TRACED_RNN.search(code or "")
    if not match:
        return None
    args = [a.strip() for a in re.split(r",(?![^\[]*\])", match.group(2))]
    return match.group(1), args


def _attr(module, name, default=None):
    try:
        return getattr(module, name)
    except Exception:  # noqa: BLE001 - TorchScript raises for missing attributes
        return default


def _rnn_from_module(module, path: str, options: dict, problems: list[str], where: str) -> Optional[_RNN]:
    params = {name: _numpy(p) for name, p in module.named_parameters(recurse=False)}
    described = _rnn_from_params(params, path, options, problems, where)
    if described is None:
        return None
    mode = _attr(module, "mode")
    batch_first = _attr(module, "batch_first")
    traced = None if mode is not None else _traced_call(module)
    if traced is not None:
        op, args = traced
        mode = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}[op]
        if batch_first is None and args and args[-1] in ("True", "False"):
            batch_first = args[-1] == "True"
    if mode is not None:
        if _base_mode(mode) != _base_mode(described.mode):
            problems.append(f"{where}: mode {mode} does not fit its weights ({described.mode})")
        described.mode = mode
    elif described.mode == "RNN":
        problems.append(f"{where}: cannot tell tanh from relu; pass nonlinearity='tanh' or 'relu'")
    if batch_first is None:
        batch_first = _flag(options.get("batch_first", False), "batch_first")
    described.batch_first = bool(batch_first)
    return described


def _base_mode(mode: str) -> str:
    return "RNN" if mode.startswith("RNN") else mode


def _activation_attrs(module, cls: str) -> dict:
    attrs = {}
    for name in ("dim", "alpha", "negative_slope", "beta", "threshold", "min_val", "max_val", "approximate"):
        value = _attr(module, name)
        if value is not None and not callable(value):
            attrs[name] = value
    if not attrs:  # a traced module keeps no attributes: read the constants of its one call
        try:
            code = module.code
        except Exception:  # noqa: BLE001
            code = ""
        match = re.search(r"torch\.\w+\([^,()]+((?:,\s*[-\w.]+)*)\)", code or "")
        numbers = [a.strip() for a in match.group(1).split(",")[1:]] if match else []
        keys = {"Softmax": ["dim"], "LogSoftmax": ["dim"], "ELU": ["alpha"], "CELU": ["alpha"],
                "LeakyReLU": ["negative_slope"], "Softplus": ["beta", "threshold"],
                "Hardtanh": ["min_val", "max_val"]}.get(cls, [])
        for key, text in zip(keys, numbers):
            try:
                attrs[key] = int(text) if re.fullmatch(r"-?\d+", text) else float(text)
            except ValueError:
                pass
        if cls == "GELU" and code and "approximate=\"tanh\"" in code:
            attrs["approximate"] = "tanh"
    return attrs


def _walk(module, path: str, options: dict, layers: list, problems: list[str], label: str) -> None:
    """Append the layers of ``module`` (at ``path``) in registration order."""
    cls = _class_name(module)
    where = f"module {path!r} ({cls})" if path else cls
    if cls in _RNN_CLASSES:
        rnn = _rnn_from_module(module, path, options, problems, where)
        if rnn is not None:
            layers.append(rnn)
        return
    if cls == "Linear":
        weight = _attr(module, "weight")
        bias = _attr(module, "bias")
        layers.append(_Linear(path, _numpy(weight), None if bias is None else _numpy(bias)))
        return
    if cls in _SKIP_CLASSES:
        return
    if cls in _ACTIVATION_CLASSES:
        attrs = _activation_attrs(module, cls)
        activation = _activation_of(cls, attrs, where, problems)
        if activation is not None:
            layers.append(_Act(path, activation, attrs.get("dim") if activation in ir.VECTOR_ACTIVATIONS else None))
        return
    children = list(module.named_children())
    own = [name for name, _ in module.named_parameters(recurse=False)]
    if not children:
        if cls in _CONTAINER_CLASSES and not own:
            return
        problems.append(f"{where} is not supported (supported: LSTM, GRU, RNN, Linear, activations, Dropout, "
                        "Identity, and modules composed of them)")
        return
    if own:
        problems.append(f"{where} holds parameters of its own ({', '.join(own)}) that its forward() uses in a "
                        "way edgernn cannot see")
    for name, child in children:
        _walk(child, f"{path}.{name}" if path else name, options, layers, problems, label)


def _chain_from_module(module, options: dict, label: str, source: dict) -> _Chain:
    problems: list[str] = []
    layers: list = []
    _walk(module, "", options, layers, problems, label)
    if problems:
        raise UnsupportedModel(f"{label}: cannot convert", problems)
    bare = _class_name(module) in _RNN_CLASSES
    return _Chain(layers, bare, label, source)


def from_torch_module(module, **options) -> ir.ModelSpec:
    """Convert an in-memory ``torch.nn.Module`` (or a TorchScript module) into a ModelSpec.

    Options: ``head`` (``"last"``, ``"every"``, ``"final"``; required for a composed module, see the
    module docstring), ``nonlinearity``/``mode``/``batch_first`` for traced TorchScript modules,
    which keep no attributes.
    """
    _check_options(options, "from_torch_module")
    head = _head_option(options)
    label = f"PyTorch module {_class_name(module)}"
    import torch  # noqa: F401 - a torch object is being converted, so torch is there

    chain = _chain_from_module(module, options, label, {"file": None, "class": _class_name(module),
                                                        "framework_version": torch.__version__})
    return _build(chain, head)[0]


# ---------------------------------------------------------------------------------------------
# State dicts: the architecture from key names and shapes
# ---------------------------------------------------------------------------------------------

_RNN_KEY = re.compile(r"^(?:(?P<prefix>.*)\.)?(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<k>\d+)"
                      r"(?P<rev>_reverse)?$")
_LINEAR_KEY = re.compile(r"^(?:(?P<prefix>.*)\.)?(?P<kind>weight|bias)$")


def _rnn_from_params(params: dict, path: str, options: dict, problems: list[str], where: str) -> Optional[_RNN]:
    """An ``_RNN`` from its parameters ``weight_ih_l0``, ...; mode from the shapes, refined by options."""
    count = len(problems)
    layers = sorted({int(m.group("k")) for m in map(_RNN_KEY.match, params) if m})
    if not layers or layers != list(range(len(layers))):
        problems.append(f"{where}: layers {layers} are not numbered 0, 1, ...")
        return None
    bidirectional = any(name.endswith("_reverse") for name in params)
    has_bias = "bias_ih_l0" in params
    proj = "weight_hr_l0" in params
    w_hh = np.asarray(params.get("weight_hh_l0", np.zeros((0, 0))))
    if w_hh.ndim != 2 or "weight_ih_l0" not in params:
        problems.append(f"{where}: weight_ih_l0 and a 2-D weight_hh_l0 are needed")
        return None
    if proj:
        w_hr = np.asarray(params["weight_hr_l0"])
        if w_hr.ndim != 2 or w_hr.shape[0] != w_hh.shape[1]:
            problems.append(f"{where}: weight_hr_l0 {w_hr.shape} does not fit weight_hh_l0 {w_hh.shape}")
            return None
        hidden, proj_size = int(w_hr.shape[1]), int(w_hr.shape[0])
    else:
        hidden, proj_size = int(w_hh.shape[1]), 0
    if hidden < 1 or w_hh.shape[0] % hidden or w_hh.shape[0] // hidden not in _GATES_TO_MODE:
        problems.append(f"{where}: weight_hh_l0 of shape {w_hh.shape} is not (gates * H, H) with 4, 3 or 1 gates")
        return None
    gates = w_hh.shape[0] // hidden
    mode = _GATES_TO_MODE[gates]
    if proj and mode != "LSTM":
        problems.append(f"{where}: weight_hr (proj_size) exists only for LSTM")
    wanted = _mode_for(options, path)
    nonlinearity = options.get("nonlinearity")
    if wanted is not None:
        if (wanted if wanted in ("LSTM", "GRU") else "RNN") != mode:
            problems.append(f"{where}: option mode={wanted!r} does not fit its weights, which have {gates} gate "
                            f"block(s) of {hidden} ({mode})")
        elif wanted in ("RNN_TANH", "RNN_RELU"):
            mode = wanted
    if mode == "RNN" and nonlinearity is not None:
        if str(nonlinearity).lower() not in ("tanh", "relu"):
            problems.append(f"{where}: option nonlinearity={nonlinearity!r} must be 'tanh' or 'relu'")
        else:
            mode = "RNN_" + str(nonlinearity).upper()
    directions = ("", "_reverse") if bidirectional else ("",)
    input_size = int(np.asarray(params["weight_ih_l0"]).shape[1]) if np.ndim(params["weight_ih_l0"]) == 2 else 0
    out = proj_size or hidden
    for k in layers:
        size = input_size if k == 0 else out * len(directions)
        for d in directions:
            shapes = {f"weight_ih_l{k}{d}": (gates * hidden, size), f"weight_hh_l{k}{d}": (gates * hidden, out)}
            if has_bias:
                shapes.update({f"bias_ih_l{k}{d}": (gates * hidden,), f"bias_hh_l{k}{d}": (gates * hidden,)})
            if proj:
                shapes[f"weight_hr_l{k}{d}"] = (proj_size, hidden)
            for key, shape in shapes.items():
                if key not in params:
                    problems.append(f"{where}: {key} is missing")
                elif tuple(np.shape(params[key])) != shape:
                    problems.append(f"{where}: {key} has shape {tuple(np.shape(params[key]))}, expected {shape}")
    expected = {f"{kind}_l{k}{d}" for k in layers for d in directions
                for kind in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if has_bias else ())
                + (("weight_hr",) if proj else ())}
    for key in sorted(set(params) - expected):
        problems.append(f"{where}: unexpected parameter {key}")
    if len(problems) > count:
        return None
    return _RNN(path, mode, dict(params), len(layers), bidirectional, has_bias, proj_size, hidden, input_size)


def _natural(path: str):
    return [int(part) if part.isdigit() else part for part in path.split(".")]


def _units_from_state_dict(state: dict, options: dict, label: str, problems: list[str]) -> list[tuple[str, list]]:
    """Group a state dict into modules: [(top-level name, [layer, ...] in numeric order), ...]."""
    groups: dict[str, dict] = {}
    kinds: dict[str, str] = {}
    for key, value in state.items():
        m = _RNN_KEY.match(key)
        kind = "rnn" if m else None
        if m is None:
            m = _LINEAR_KEY.match(key)
            kind = "linear" if m else None
        if m is None:
            problems.append(f"parameter {key!r} belongs to no supported module (LSTM, GRU, RNN, Linear)")
            continue
        prefix = m.group("prefix") or ""
        if kinds.setdefault(prefix, kind) != kind:
            problems.append(f"module {prefix!r} mixes recurrent and Linear parameters")
            continue
        groups.setdefault(prefix, {})[key[len(prefix) + 1:] if prefix else key] = value
    layers: dict[str, object] = {}
    for prefix, params in groups.items():
        where = f"module {prefix!r}" if prefix else "the module"
        if kinds[prefix] == "rnn":
            rnn = _rnn_from_params(params, prefix, options, problems, where)
            if rnn is not None:
                if rnn.mode == "RNN":
                    problems.append(f"{where}: a state dict cannot tell nn.RNN's tanh from relu; pass "
                                    "nonlinearity='tanh' or nonlinearity='relu' (or mode='RNN_TANH'/'RNN_RELU')")
                rnn.batch_first = _flag(options.get("batch_first", False), "batch_first")
                layers[prefix] = rnn
        else:
            weight, bias = params.get("weight"), params.get("bias")
            if weight is None or np.ndim(weight) != 2:
                problems.append(f"{where}: a Linear needs a 2-D weight (a 1-D weight is a normalisation layer, "
                                "which is not supported)")
                continue
            if bias is not None and tuple(np.shape(bias)) != (np.shape(weight)[0],):
                problems.append(f"{where}: bias of shape {np.shape(bias)} does not fit weight {np.shape(weight)}")
                continue
            layers[prefix] = _Linear(prefix, np.asarray(weight), None if bias is None else np.asarray(bias))
    # Parameterless modules (activations, dropout) from the ``activations`` option.
    activations = options.get("activations") or {}
    if not isinstance(activations, dict):
        raise UnsupportedModel(f"option activations={activations!r} must map module paths to activation names")
    extra: dict[str, object] = {}
    for path, name in activations.items():
        where = f"option activations[{path!r}]"
        cls = str(name)
        if cls in _SKIP_CLASSES or cls.lower() in ("dropout", "identity"):
            extra[path] = None
            continue
        ir_name = cls.lower() if cls.lower() in _IR_NAMES else _activation_of(cls, {"dim": -1}, where, problems)
        if ir_name is not None:
            extra[path] = _Act(path, ir_name)
    # Top-level units: modules sharing the first path component, numbered children in numeric order.
    units: dict[str, list] = {}
    for prefix in list(layers) + [p for p in extra if p not in layers]:
        top = prefix.split(".")[0] if prefix else ""
        units.setdefault(top, [])
        if prefix not in units[top]:
            units[top].append(prefix)
    result = []
    for top, prefixes in units.items():
        members = sorted(prefixes, key=_natural)
        ordered: list = []
        for prefix in members:
            if prefix in layers:
                ordered.append(layers[prefix])
            if prefix in extra and extra[prefix] is not None:
                act = extra[prefix]
                ordered.append(_Act(prefix if prefix not in layers else prefix + ":activation", act.activation))
        # A gap in a Sequential's numbering is a parameterless module: it must be named.
        numbered: dict[str, list[int]] = {}
        for prefix in members:
            parent, _, last = prefix.rpartition(".")
            if last.isdigit() and prefix:
                numbered.setdefault(parent, []).append(int(last))
        for parent, indices in numbered.items():
            for gap in sorted(set(range(min(indices), max(indices) + 1)) - set(indices)):
                path = f"{parent}.{gap}" if parent else str(gap)
                problems.append(
                    f"module {path!r} has no parameters, so the state dict does not say what it is; "
                    f"name it with the option activations={{{path!r}: 'ReLU'}} (or 'Dropout', 'Tanh', ...)")
        result.append((top, ordered))
    unknown = [p for p in extra if p not in layers and not _is_gap(p, layers)]
    for path in unknown:
        problems.append(f"option activations names {path!r}, which is neither a module of the state dict "
                        "nor a gap in a Sequential's numbering")
    return result


def _is_gap(path: str, layers: dict) -> bool:
    parent, _, last = path.rpartition(".")
    return last.isdigit() and any(p.rpartition(".")[0] == parent for p in layers)


def _unit_sizes(layers: list):
    sized = [layer for layer in layers if isinstance(layer, (_RNN, _Linear))]
    if not sized:
        return None
    return sized[0].input_size, sized[-1].output_size


def _chains(units: list) -> bool:
    size = None
    for _, layers in units:
        sizes = _unit_sizes(layers)
        if sizes is None:
            continue
        if size is not None and sizes[0] != size:
            return False
        size = sizes[1]
    return True


def _chain_from_state_dict(state: dict, options: dict, label: str, ordered: bool, source: dict) -> _Chain:
    """The chain of a state dict; ``ordered`` when its key order is the modules' registration order."""
    problems: list[str] = []
    units = _units_from_state_dict(state, options, label, problems)
    if problems:
        raise UnsupportedModel(f"{label}: cannot convert", problems)
    if not units:
        raise InvalidModelFile(f"{label}: the state dict holds no parameters")
    order = options.get("order")
    if order is not None:
        names = [u[0] for u in units]
        if not isinstance(order, (list, tuple)) or sorted(map(str, order)) != sorted(names):
            raise UnsupportedModel(f"{label}: option order={order!r} must list the top-level modules "
                                   f"{names} once each, in forward order")
        units = sorted(units, key=lambda u: list(map(str, order)).index(u[0]))
    elif not ordered and len(units) > 1:
        # safetensors keeps no order: take the one order in which every module's input size is the
        # previous module's output size, if there is exactly one.
        if len(units) > 7:
            raise UnsupportedModel(f"{label}: {len(units)} top-level modules; give their forward order with "
                                   f"the option order=[...]")
        fits = [list(p) for p in itertools.permutations(units) if _chains(p)]
        rnn_units = [u[0] for u in units if any(isinstance(x, _RNN) for x in u[1])]
        if len(fits) != 1:
            names = [u[0] for u in units]
            why = "no order of them chains" if not fits else "several orders chain"
            raise UnsupportedModel(f"{label}: a safetensors file keeps no module order and {why} by sizes; "
                                   f"give it with the option order={names!r} (forward order); recurrent: "
                                   f"{rnn_units}")
        units = fits[0]
    layers = [layer for _, unit in units for layer in unit]
    sized = [layer for layer in layers if isinstance(layer, (_RNN, _Linear))]
    bare = len(sized) == 1 and isinstance(sized[0], _RNN) and sized[0].path == "" and len(layers) == 1
    return _Chain(layers, bare, label, source)


def _tensor_state(obj, label: str) -> dict:
    """The ``{name: numpy array}`` of a loaded state dict (or of the one state dict in a checkpoint)."""
    import torch

    def is_state(d):
        return isinstance(d, dict) and d and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())

    if is_state(obj):
        return {k: _numpy(v) for k, v in obj.items()}
    if isinstance(obj, dict):
        nested = [k for k, v in obj.items() if is_state(v)]
        if len(nested) == 1:  # a checkpoint {"model_state_dict": ..., "epoch": ...}
            return {k: _numpy(v) for k, v in obj[nested[0]].items()}
    raise InvalidModelFile(f"{label}: the file holds a {type(obj).__name__}, not a state dict of tensors "
                           "(save model.state_dict() or a TorchScript module)")


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``<archive>/code/`` folder (torch.save's has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(len(parts) > 2 and parts[1] == "code" for parts in (n.split("/") for n in archive.namelist()))


def _load_torch(path: Path, options: dict):
    """(kind, object): ("script", ScriptModule) or ("state", {name: numpy array})."""
    try:
        import torch
    except ImportError as exc:
        raise UnsupportedModel(f"{path.name}: reading a .pt/.pth file needs torch (pip install edgernn[torch]); "
                               "a .safetensors state dict needs only the safetensors package") from exc
    label = path.name
    if _is_torchscript(path):
        try:
            return "script", torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - a malformed archive
            raise InvalidModelFile(f"{label}: not a loadable TorchScript archive: {exc}") from exc
    from . import _load_weights_only  # the package's one unpickling call, restricted

    try:
        obj = _load_weights_only(torch, path)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        # torch's message suggests turning the restriction off; keep only the line that says what was refused.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        found = [line for line in lines if "Unsupported" in line] or [line for line in lines if "Unpickler" in line]
        first = (found or lines or [type(exc).__name__])[0]
        first = re.sub(r"\x1b\[[0-9;]*m", "", first)[:300]
        raise InvalidModelFile(
            f"{label}: not a state dict that loads with weights_only=True ({first}); edgernn never unpickles "
            "arbitrary objects: save model.state_dict() with torch.save, or a TorchScript module") from exc
    return "state", _tensor_state(obj, label)


def _file_chain(path, options: dict) -> tuple[_Chain, object]:
    path = Path(path)
    kind, obj = _load_torch(path, options)
    import torch

    source = {"file": path.name, "framework_version": torch.__version__}
    if kind == "script":
        label = f"{path.name} (TorchScript {_class_name(obj)})"
        return _chain_from_module(obj, options, label, {**source, "container": "torchscript"}), obj
    label = f"{path.name} (state dict)"
    return _chain_from_state_dict(obj, options, label, True, {**source, "container": "state_dict"}), obj


def load_torch_file(path, **options) -> ir.ModelSpec:
    """Read a ``.pt``/``.pth`` file: a state dict saved with ``torch.save`` or a TorchScript archive.

    Options (see the module docstring): ``head``, ``nonlinearity``, ``mode``, ``batch_first``,
    ``activations``, ``order``.
    """
    _check_options(options, "load_torch_file")
    head = _head_option(options)
    chain, _ = _file_chain(path, options)
    return _build(chain, head)[0]


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors.numpy import load_file
    except ImportError as exc:
        raise UnsupportedModel(f"{path.name}: reading .safetensors needs the safetensors package "
                               "(pip install edgernn[safetensors])") from exc
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, bad header, unsupported dtype
        raise InvalidModelFile(f"{path.name}: not a readable safetensors file: {exc}") from exc
    bad = [k for k, v in state.items() if v.dtype.kind != "f"]
    if bad:
        raise InvalidModelFile(f"{path.name}: non-float tensors {bad}")
    return state


def load_safetensors_file(path, **options) -> ir.ModelSpec:
    """Read a ``.safetensors`` state dict (no torch needed); the same inference as for ``.pt`` files.

    safetensors keeps no key order, so the modules' order is the one in which their sizes chain
    (or the ``order`` option).
    """
    _check_options(options, "load_safetensors_file")
    head = _head_option(options)
    path = Path(path)
    state = _read_safetensors(path)
    chain = _chain_from_state_dict(state, options, f"{path.name} (safetensors state dict)", False,
                                   {"file": path.name, "container": "safetensors"})
    return _build(chain, head)[0]


# ---------------------------------------------------------------------------------------------
# Running the source (verification)
# ---------------------------------------------------------------------------------------------

_TORCH_ACTIVATIONS = {
    "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "relu6": "relu6", "selu": "selu", "silu": "silu",
    "mish": "mish", "softsign": "softsign", "log_sigmoid": "logsigmoid", "tanh_shrink": "tanhshrink",
    "hard_sigmoid": "hardsigmoid", "hard_silu": "hardswish", "elu": "elu", "celu": "celu", "softplus": "softplus",
    "hard_tanh": "hardtanh", "gelu": "gelu", "linear": None,
}


def _apply_activation(torch, name: str, y):
    F = torch.nn.functional
    if name == "softmax":
        return torch.softmax(y, -1)
    if name == "log_softmax":
        return torch.log_softmax(y, -1)
    if name == "leaky_relu":
        return F.leaky_relu(y, 0.2)
    if name == "hard_sigmoid_keras2":
        return torch.clamp(0.2 * y + 0.5, 0.0, 1.0)
    if name == "exponential":
        return torch.exp(y)
    fn = _TORCH_ACTIVATIONS.get(name)
    return y if fn is None else getattr(F, fn)(y)


def _rebuilt_run(chain: _Chain, head: str, x):
    """Run ``chain`` with PyTorch's own modules (rebuilt from the state dict), batch-first."""
    import torch

    y = x
    rnns = [i for i, layer in enumerate(chain.layers) if isinstance(layer, _RNN)]
    for index, layer in enumerate(chain.layers):
        if isinstance(layer, _RNN):
            cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(layer.mode, torch.nn.RNN)
            kwargs = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=True,
                          bidirectional=layer.bidirectional)
            if layer.mode == "LSTM":
                kwargs["proj_size"] = layer.proj_size
            if layer.mode.startswith("RNN_"):
                kwargs["nonlinearity"] = layer.mode[4:].lower()
            module = cls(layer.input_size, layer.hidden_size, **kwargs).double()
            module.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in layer.params.items()})
            out, states = module(y)
            h_n = states[0] if layer.mode == "LSTM" else states
            y = out
            if index == rnns[-1] and head == "last":
                y = out[:, -1]
            elif index == rnns[-1] and head == "final":
                y = torch.cat([h_n[-2], h_n[-1]], 1) if layer.bidirectional else h_n[-1]
        elif isinstance(layer, _Linear):
            w = torch.from_numpy(np.asarray(layer.weight, np.float64))
            b = None if layer.bias is None else torch.from_numpy(np.asarray(layer.bias, np.float64))
            y = torch.nn.functional.linear(y, w, b)
        else:
            y = _apply_activation(torch, layer.activation, y)
    return y


def _first_batch_first(chain: _Chain) -> bool:
    return next(layer.batch_first for layer in chain.layers if isinstance(layer, _RNN))


def _run_module(torch, module, chain: _Chain, head: str, x: np.ndarray) -> np.ndarray:
    """Run a live or TorchScript module on ``x`` (batch, T, F) laid out as its first RNN wants."""
    batch_first = _first_batch_first(chain)
    dtype = next((p.dtype for p in module.parameters()), torch.float32)
    inp = torch.from_numpy(np.asarray(x, np.float32)).to(dtype)
    if not batch_first:
        inp = inp.transpose(0, 1)
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(inp)
    finally:
        module.train(training)
    while isinstance(out, (tuple, list)):
        out = out[0]
    if head == "every" and not batch_first:
        out = out.transpose(0, 1)
    return out.detach().cpu().float().numpy()


def run_source(source, inputs, **options) -> list[np.ndarray]:
    """Run the source with PyTorch on ``inputs`` (one (batch, T, features) array); [output] as float32.

    A module or TorchScript file runs its own ``forward``; a state dict runs PyTorch's modules rebuilt
    from it with the same mapping rules. Shapes are those of ``predict``. Raises ImportError without torch.
    """
    import torch

    _check_options(options, "run_source")
    head = _head_option(options)
    x = np.asarray(inputs[0] if isinstance(inputs, (list, tuple)) else inputs, np.float32)
    if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        path = Path(source)
        if path.suffix.lower() == ".safetensors":
            state = _read_safetensors(path)
            chain = _chain_from_state_dict(state, options, path.name, False, {})
            module = None
        else:
            chain, obj = _file_chain(path, options)
            module = obj if not isinstance(obj, dict) else None
    else:
        label = f"PyTorch module {_class_name(source)}"
        chain = _chain_from_module(source, options, label, {})
        module = source
    _, head = _build(chain, head)
    if module is not None:
        return [_run_module(torch, module, chain, head, x)]
    with torch.no_grad():
        y = _rebuilt_run(chain, head, torch.from_numpy(x.astype(np.float64)))
    return [y.numpy().astype(np.float32)]
