"""Live modules and TorchScript: the module tree walked into a chain, its layers in the order forward()
calls them where a graph of the calls shows it (:mod:`.calls`), else in registration order.

Recurrent modules, ``nn.Linear``, activation modules and the identity at inference are read from the
module's parameters and attributes; container modules are walked recursively. A traced (not
scripted) TorchScript module keeps no Python attributes: its mode, ``batch_first`` and activation
constants are read from the code text PyTorch stores with it, never run.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from ... import ir
from ...errors import UnsupportedModel
from .._refusals import points_to
from .activations import _ACTIVATION_CLASSES, _SKIP_CLASSES, _activation_of
from .build import _build
from .calls import call_order
from .chain import _RNN, _Act, _Chain, _Embedding, _LayerNorm, _Linear, _in_order, _units
from .conv import FRONT_END_CLASSES, _Conv, _Pad, _Pool, _Upsample, _code_args, _literal, front_end_layer
from .forward import GraphRefusal, read_forward
from .options import _check_options, _flag, _head_option
from .state_dict import _rnn_from_params


_RNN_CLASSES = {"LSTM", "GRU", "RNN"}
_CONTAINER_CLASSES = {"Sequential", "ModuleList", "ModuleDict"}


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


def _layer_norm_from_module(module, path: str, where: str, problems: list[str]) -> Optional[_LayerNorm]:
    """``nn.LayerNorm`` over the last axis only; a traced module keeps no attributes, so its shape
    and ``eps`` are read from its one call, ``torch.layer_norm(input, [F], weight, bias[, eps])``."""
    shape, eps = _attr(module, "normalized_shape"), _attr(module, "eps")
    if shape is None:
        args = _code_args(module, "layer_norm")
        if not args or len(args) < 2:
            problems.append(f"{where}: its options could not be read (a traced module whose code has no "
                            "recognisable call)")
            return None
        shape, eps = _literal(args[1]), _literal(args[4]) if len(args) > 4 else 1e-5
    shape = tuple(shape) if isinstance(shape, (list, tuple)) else (shape,)
    if len(shape) != 1 or not isinstance(shape[0], int):
        problems.append(f"{where}: normalized_shape={shape} normalizes more than the last axis; only one int "
                        "(the features) is supported")
        return None
    weight, bias = _attr(module, "weight"), _attr(module, "bias")
    return _LayerNorm(path, shape[0], float(eps), None if weight is None else _numpy(weight),
                      None if bias is None else _numpy(bias))


def _embedding_from_module(module, path: str, where: str, problems: list[str]) -> Optional[_Embedding]:
    """``nn.Embedding``; ``max_norm`` is refused: it renormalizes the rows it looks up, in place, on every
    call (a traced module shows it as ``torch.embedding_renorm_`` in its code)."""
    max_norm = _attr(module, "max_norm")
    try:
        renorm = "embedding_renorm_" in (module.code or "")
    except Exception:  # noqa: BLE001 - not TorchScript, or no code
        renorm = False
    if max_norm is not None or renorm:
        problems.append(f"{where}: max_norm={max_norm!r} renormalizes the rows it looks up, which edgernn does not do")
        return None
    return _Embedding(path, _numpy(_attr(module, "weight")))


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
    if cls == "Embedding":
        layer = _embedding_from_module(module, path, where, problems)
        if layer is not None:
            layers.append(layer)
        return
    if cls == "LayerNorm":
        layer = _layer_norm_from_module(module, path, where, problems)
        if layer is not None:
            layers.append(layer)
        return
    if cls in _SKIP_CLASSES:
        return
    if cls in FRONT_END_CLASSES:
        layer = front_end_layer(module, cls, path, where, _attr, _numpy, problems)
        if isinstance(layer, dict):  # nn.Flatten: what it does depends on the layout, read from forward()
            layers.append(_FlattenModule(path, layer))
        elif layer is not None:
            layers.append(layer)
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
        problems.append(f"{where} is not supported (supported: LSTM, GRU, RNN, Linear, Conv1d, MaxPool1d, "
                        "AvgPool1d, AdaptiveAvgPool1d(1), AdaptiveMaxPool1d(1), BatchNorm1d, ConstantPad1d, ZeroPad1d, Upsample, LayerNorm, Embedding, Flatten, activations, "
                        "Dropout, Identity, and modules composed of them)")
        return
    if own:
        problems.append(f"{where} holds parameters of its own ({', '.join(own)}) that its forward() uses in a "
                        "way edgernn cannot see")
    for name, child in children:
        _walk(child, f"{path}.{name}" if path else name, options, layers, problems, label)


def _is_layer(module) -> bool:
    """Whether ``module`` is one layer of a chain (or skipped as one): not walked into."""
    cls = _class_name(module)
    return (cls in _RNN_CLASSES or cls in ("Linear", "Embedding") or cls in _ACTIVATION_CLASSES or cls in _SKIP_CLASSES
            or cls in FRONT_END_CLASSES)


class _FlattenModule(dict):
    """An ``nn.Flatten`` found in the module tree: its ``start_dim`` and ``end_dim``, and its path."""

    def __init__(self, path: str, dims: dict):
        super().__init__(dims)
        self.path = path


def _by_calls(layers: list, calls: Optional[list]) -> Optional[list]:
    """``layers`` in the order of ``calls`` (the paths forward() calls), if it calls each exactly once."""
    if calls is None:
        return None
    by_path = {layer.path: layer for layer in layers}
    called = [path for path in calls if path in by_path]
    if len(by_path) != len(layers) or sorted(called) != sorted(by_path):
        return None
    return [by_path[path] for path in called]


def _layouts(layers: list) -> list[str]:
    """The input layouts to try reading forward() with, the likeliest first (its refusal is the one
    reported): integer codes (N, T) or (T, N) where an Embedding comes first, (N, C, T) where there is
    a convolution or pooling, else the first recurrent module's."""
    rnn = next((layer for layer in layers if isinstance(layer, _RNN)), None)
    if layers and isinstance(layers[0], _Embedding):
        return ["NT", "TN"] if rnn is None or rnn.batch_first else ["TN", "NT"]
    sequence = "NTC" if rnn is None or rnn.batch_first else "TNC"
    conv = any(isinstance(layer, (_Conv, _Pool, _Pad, _Upsample)) for layer in layers)
    first = "NCT" if conv else sequence
    return [first] + [layout for layout in ("NTC", "TNC", "NCT", "NC") if layout != first]


def _chain_from_module(module, options: dict, label: str, source: dict, head: Optional[str] = None) -> _Chain:
    """The chain of a module: its layers in the order forward() calls them, with the head and the
    layouts forward() shows (:mod:`.forward`); where no graph can be had (torch.fx cannot trace
    forward(), or its trace does not compute what the module does), or the ``order`` option is
    given, in the order of the calls (:mod:`.calls`) or of registration (the ``order`` option orders
    the top-level modules)."""
    problems: list[str] = []
    layers: list = []
    _walk(module, "", options, layers, problems, label)
    if problems:
        raise UnsupportedModel(f"{label}: cannot convert", problems)
    bare = _class_name(module) in _RNN_CLASSES
    front_end = [layer for layer in layers if not isinstance(layer, (_RNN, _Linear, _LayerNorm, _Act, _Embedding))]
    if not bare and options.get("order") is None:
        sized = next((layer for layer in layers if hasattr(layer, "input_size")), None)
        if isinstance(sized, _Embedding):  # the probe's codes index its rows
            sized = _Linear(sized.path, sized.weight.T, None)
        try:
            read = read_forward(module, {layer.path: layer for layer in layers}, _layouts(layers),
                                sized.input_size if sized is not None else 1)
        except GraphRefusal as refusal:
            raise UnsupportedModel(f"{label}: {refusal}") from None
        if read is not None:
            if head is not None and read.head is not None and head != read.head:
                raise UnsupportedModel(f"{label}: option head={head!r}, but forward() passes the recurrent output on "
                                       f"as head={read.head!r}; leave the option out")
            return _Chain(read.layers, False, label, source, "calls", read.head, read.input_layout,
                          read.output_layout, read.reads, read.heads, read.input_names)
    if front_end:
        names = ", ".join(repr(layer.path) for layer in front_end)
        raise UnsupportedModel(
            f"{label}: modules {names} lay their tensors out (N, C, T); edgernn follows that through forward() "
            "only where torch.fx or TorchScript gives its graph" + (
                ", and the option order= replaces that graph" if options.get("order") is not None else
                ", and torch.fx could not trace this forward() faithfully (save it with torch.jit.script or "
                "torch.jit.trace)"))
    how = "registration"
    if not bare and options.get("order") is not None:
        layers = [layer for _, unit in _in_order(_units(layers), options["order"], label) for layer in unit]
        how = "option"
    elif not bare:
        called = _by_calls(layers, call_order(module, _is_layer))
        if called is not None:
            layers, how = called, "calls"
    return _Chain(layers, bare, label, source, how)


@points_to("docs/pytorch.md")
def from_torch_module(module, **options) -> ir.ModelSpec:
    """Convert an in-memory ``torch.nn.Module`` (or a TorchScript module) into a ModelSpec.

    Options: ``head`` (``"last"``, ``"every"``, ``"final"``; required for a composed module, see the
    package docstring), ``nonlinearity``/``mode``/``batch_first`` for traced TorchScript modules,
    which keep no attributes.
    """
    _check_options(options, "from_torch_module")
    head = _head_option(options)
    label = f"PyTorch module {_class_name(module)}"
    import torch  # noqa: F401 - a torch object is being converted, so torch is there

    chain = _chain_from_module(module, options, label, {"file": None, "class": _class_name(module),
                                                        "framework_version": torch.__version__}, head)
    return _build(chain, head)[0]
