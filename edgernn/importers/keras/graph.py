"""The graph the converter walks: the values that flow between layers (a tensor, a mask still being
computed by keras.ops, an output edgernn cannot make), one call of a layer, and how a functional
config writes its edges (``[layer, node, tensor]`` references inside inbound nodes). Also
:func:`_positive_int`, the config check every layer family makes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ...errors import InvalidModelFile


# ---------------------------------------------------------------------------------------------
# What the converter knows about each Keras tensor while it walks the graph
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    """A float tensor of the model: IR name, rank (3 = (batch, T, F), 2 = (batch, F)), features,
    timesteps if fixed, and the IR name of the Keras mask ``(batch, T)`` that travels with it
    (Keras's ``_keras_mask``), None if unmasked."""

    name: str
    rank: int
    features: Optional[int]
    timesteps: Optional[int] = None
    mask: Optional[str] = None


@dataclass(frozen=True)
class _MaskExpr:
    """Keras 3 records a Masking layer's mask as ``keras.ops`` nodes in functional configs:
    ``any(not_equal(x, mask_value), axis=-1)``. ``done`` is False after not_equal, True after any."""

    source: _Data
    value: float
    done: bool


@dataclass(frozen=True)
class _MaskColumns:
    """Keras 3's ``Concatenate.compute_mask`` over the features, as the keras.ops nodes a functional
    config records: each input's mask laid over its features, ``logical_or(expand_dims(mask, -1),
    zeros_like(x))``, or all True for an unmasked input, ``ones_like(x)``; ``concatenate`` of those;
    then ``any(axis=-1)``, which is True at a step where any input's mask is. ``masks``: per input,
    its mask (a _MaskExpr) or None for all True; ``stage`` the node that made it: "expanded",
    "zeros" (no masks), "columns" (one input's), "joined" (all of them)."""

    masks: tuple
    stage: str


NO_MASK = _MaskColumns((), "none")  # any() over a concatenation with an unmasked input: all True


@dataclass(frozen=True)
class _Unusable:
    """A tensor edgernn cannot produce; using it is a problem (``why``), not using it is fine."""

    why: str


_UNKNOWN = _Unusable("")  # output of a layer already refused: no second problem reported


@dataclass
class _Call:
    """One call of a layer in a functional graph, references resolved to values.

    ``inputs``: the data arguments (first positional; for Keras 2 RNNs the extra inputs are the
    initial states). ``initial_state``/``mask``: values or None.
    """

    inputs: list
    initial_state: list
    mask: Any = None


# ---------------------------------------------------------------------------------------------
# How a functional config writes its edges: references and inbound nodes
# ---------------------------------------------------------------------------------------------


def _is_ref(value) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) >= 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def _refs(value) -> list[tuple[str, int, int]]:
    """Flatten input_layers/output_layers: one [name, node, tensor] or nested lists/dicts of them."""
    if _is_ref(value):
        return [(value[0], value[1], value[2])]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _refs(v)]
    return []


def _keras_tensor(value) -> Optional[tuple[str, int, int]]:
    """A Keras 3 serialized KerasTensor -> its (layer, node, tensor) history, else None."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if _is_ref(history):
            return (history[0], history[1], history[2])
    return None


class _Node:
    """An inbound node of a functional config, with references still unresolved.

    Keras 3: ``{"args": [...], "kwargs": {...}}`` where tensors are ``__keras_tensor__`` dicts with
    a ``keras_history`` [layer, node, tensor]; an RNN's ``initial_state`` and ``mask`` are kwargs.
    Keras 2: ``[[layer, node, tensor, kwargs], ...]``; an RNN called with ``initial_state`` lists
    the states as extra inbound tensors after the sequence.
    """

    def __init__(self, inputs: list, initial_state: list, mask):
        self.inputs, self.initial_state, self.mask = inputs, initial_state, mask

    def refs(self) -> list:
        return [v for v in self.inputs + self.initial_state + [self.mask] if isinstance(v, tuple)]

    def resolve(self, values, refused) -> _Call:
        def get(v):
            if not isinstance(v, tuple):
                return v
            return _UNKNOWN if v[:2] in refused else values[v]

        return _Call([get(v) for v in self.inputs], [get(v) for v in self.initial_state], get(self.mask))


def _parse_node(node, label: str, layer) -> _Node:
    """Parse one inbound node (Keras 3 dict or Keras 2 list) into references and constants.

    ``inputs`` lists every positional argument flattened (tensor references as tuples, constants
    as they are: ``not_equal(x, -1.0)`` has ``[ref, -1.0]``); for an RNN, inputs after the first
    are initial states (Keras 2 writes them so; Keras 3 does when they are passed positionally).
    """

    def flat(value) -> list:
        ref = _keras_tensor(value)
        if ref is not None:
            return [ref]
        if isinstance(value, (list, tuple)):
            return [t for v in value for t in flat(v)]
        return [value]

    if isinstance(node, dict):  # Keras 3
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise InvalidModelFile(f"{label}: layer {layer!r} has a malformed inbound node")
        inputs = [t for a in args for t in flat(a)]
        initial = flat(kwargs["initial_state"]) if kwargs.get("initial_state") is not None else []
        mask = kwargs.get("mask")
        if mask is not None:
            # One KerasTensor (the usual any(not_equal(...)) of a Masking layer); anything else is
            # kept as a marker the RNN handlers refuse.
            mask = _keras_tensor(mask) or _Unusable(f"layer {layer!r}: an explicit mask argument")
        return _Node(inputs, initial, mask)
    if isinstance(node, list):  # Keras 2
        inputs, initial, mask = [], [], None
        for item in node:
            if not (isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str)):
                raise InvalidModelFile(f"{label}: layer {layer!r} has a malformed inbound node")
            # ["_CONSTANT_VALUE", -1, value, kwargs] is a constant argument.
            inputs.append(item[2] if item[0] == "_CONSTANT_VALUE" else (item[0], item[1], item[2]))
            kwargs = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
            if kwargs.get("initial_state") is not None:
                initial += _refs(kwargs["initial_state"])
            if kwargs.get("mask") is not None:
                mask = tuple(kwargs["mask"][:3]) if _is_ref(kwargs["mask"]) else _Unusable(
                    f"layer {layer!r}: an explicit mask argument"
                )
        return _Node(inputs, initial, mask)
    raise InvalidModelFile(f"{label}: layer {layer!r} has a malformed inbound node")


def _positive_int(name: str, value):
    """``value``, a layer config's ``name``, if it is a positive integer; else InvalidModelFile."""
    if not isinstance(value, int) or value < 1:
        raise InvalidModelFile(f"{name} {value!r} is not a positive integer")
    return value
