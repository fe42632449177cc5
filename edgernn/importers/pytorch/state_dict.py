"""State dicts: the chain inferred from parameter names and shapes alone.

State dicts carry weights only. The architecture is read from key names and shapes:
``weight_ih_l{k}`` (layers), ``*_reverse`` (bidirectional), ``weight_hr_l{k}`` (proj_size),
``bias_ih_l{k}`` (bias), ``<prefix>.weight``/``<prefix>.bias`` (Linear, or the ``nn.LayerNorm`` or
``nn.Embedding`` the ``modules`` option names there: their parameters alone do not say what they are). The cell type comes from
``weight_hh_l0``: ``(gates * H, H)`` (or ``(4 * H, proj_size)`` with ``weight_hr_l0`` of shape
``(proj_size, H)``) gives the gate multiple unambiguously (``weight_ih`` alone could not tell a GRU
of hidden 4k from an LSTM of hidden 3k). A live module's recurrent modules are described by the
same rules (``_rnn_from_params``), so that a module and its state dict convert alike.

Parameters are grouped into modules by their prefix, modules into top-level units by the prefix's
first component, numbered children in numeric order; units are put in forward order by key order
(``.pt``), the ``order`` option, or the one order in which their sizes chain (``.safetensors``).
Parameterless modules come from the ``activations`` option.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from ...errors import InvalidModelFile, UnsupportedModel
from .activations import _IR_NAMES, _SKIP_CLASSES, _activation_of
from .chain import _RNN, _Act, _Chain, _Embedding, _LayerNorm, _Linear, _in_order, _orders_that_chain
from .options import _flag, _mode_for, _named_modules


# Gate blocks in weight_hh_l0 -> PyTorch mode (a plain nn.RNN's nonlinearity comes from the options).
_GATES_TO_MODE = {4: "LSTM", 3: "GRU", 1: "RNN"}

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


def _named_module(path: str, params: dict, named: dict, where: str, problems: list[str]):
    """The module the ``modules`` option names at ``path``, from its ``weight`` (and ``bias``):
    ``nn.LayerNorm(F)`` (``weight``, ``bias`` ``(F,)``, either or both absent only with
    ``elementwise_affine=False``/``bias=False``), or ``nn.Embedding`` (``weight (vocab, dim)``)."""
    cls = named["class"]
    weight, bias = params.get("weight"), params.get("bias")
    unexpected = sorted(set(params) - {"weight", "bias"})
    if cls == "Embedding":
        if np.ndim(weight) != 2 or bias is not None or unexpected:
            problems.append(f"{where} (option modules: Embedding) has parameters {sorted(params)} with weight of shape "
                            f"{np.shape(weight)}; an nn.Embedding has one weight (vocab, dim)")
            return None
        return _Embedding(path, np.asarray(weight))
    sizes = {np.shape(a) for a in (weight, bias) if a is not None}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1 or unexpected:
        problems.append(f"{where} (option modules: LayerNorm) has parameters {sorted(params)} of shapes "
                        f"{sorted(sizes)}; an nn.LayerNorm(F) has a weight and a bias of shape (F,)")
        return None
    return _LayerNorm(path, int(next(iter(sizes))[0]), named["eps"], None if weight is None else np.asarray(weight),
                      None if bias is None else np.asarray(bias))


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
    named = _named_modules(options)
    for path in sorted(set(named) - set(groups)):
        problems.append(f"option modules names {path!r}, which is not a module of the state dict")
    for prefix, params in groups.items():
        where = f"module {prefix!r}" if prefix else "the module"
        if prefix in named and kinds[prefix] != "rnn":
            layer = _named_module(prefix, params, named[prefix], where, problems)
            if layer is not None:
                layers[prefix] = layer
        elif kinds[prefix] == "rnn":
            rnn = _rnn_from_params(params, prefix, options, problems, where)
            if rnn is not None:
                if rnn.mode == "RNN":
                    problems.append(f"{where}: a state dict cannot tell nn.RNN's tanh from relu; pass "
                                    "nonlinearity='tanh' or nonlinearity='relu' (or mode='RNN_TANH'/'RNN_RELU')")
                rnn.batch_first = _flag(options.get("batch_first", False), "batch_first")
                layers[prefix] = rnn
        else:
            weight, bias = params.get("weight"), params.get("bias")
            if np.ndim(weight) == 3:
                problems.append(f"{where}: a 3-D weight is a Conv1d, whose stride, padding and place in forward() a "
                                "state dict does not keep: convert the module, or save it with torch.jit.script or "
                                "torch.jit.trace")
                continue
            if np.ndim(weight) == 1:
                problems.append(f"{where}: a 1-D weight is a normalisation layer, which one the state dict does not "
                                f"say; if it is nn.LayerNorm over the last axis, name it with the option "
                                f"modules={{{prefix!r}: 'LayerNorm'}} (or {{'class': 'LayerNorm', 'eps': ...}} when "
                                "its eps is not 1e-5)")
                continue
            if weight is None or np.ndim(weight) != 2:
                problems.append(f"{where}: a Linear needs a 2-D weight")
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


def _chain_from_state_dict(state: dict, options: dict, label: str, ordered: bool, source: dict) -> _Chain:
    """The chain of a state dict; ``ordered`` when its key order is the modules' registration order."""
    problems: list[str] = []
    units = _units_from_state_dict(state, options, label, problems)
    if problems:
        raise UnsupportedModel(f"{label}: cannot convert", problems)
    if not units:
        raise InvalidModelFile(f"{label}: the state dict holds no parameters")
    order = options.get("order")
    how = "keys" if ordered else "sizes"
    if order is not None:
        units, how = _in_order(units, order, label), "option"
    elif not ordered and len(units) > 1:
        # safetensors keeps no order: take the one order in which every module's input size is the
        # previous module's output size, if there is exactly one.
        fits = _orders_that_chain(units)
        if fits is None:
            raise UnsupportedModel(f"{label}: {len(units)} top-level modules; give their forward order with "
                                   f"the option order=[...]")
        rnn_units = [u[0] for u in units if any(isinstance(x, _RNN) for x in u[1])]
        if len(fits) != 1:
            names = [u[0] for u in units]
            why = "no order of them chains" if not fits else "several orders chain"
            raise UnsupportedModel(f"{label}: a safetensors file keeps no module order and {why} by sizes; "
                                   f"give it with the option order={names!r} (forward order); recurrent: "
                                   f"{rnn_units}")
        units, how = fits[0], "sizes"
    layers = [layer for _, unit in units for layer in unit]
    sized = [layer for layer in layers if isinstance(layer, (_RNN, _Linear))]
    bare = len(sized) == 1 and isinstance(sized[0], _RNN) and sized[0].path == "" and len(layers) == 1
    return _Chain(layers, bare, label, source, how)
