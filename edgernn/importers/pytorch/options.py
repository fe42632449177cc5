"""The keyword options every entry point takes: which exist, and how each is read and checked.

The options (see the package docstring) are ``head``, ``mode``, ``nonlinearity``, ``batch_first``,
``activations``, ``modules`` and ``order``. An unknown one is an UnknownOption (an InvalidInput, and a TypeError
as for a Python function) listing the known ones; a known one with a wrong value is an
UnsupportedModel naming it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ...errors import UnknownOption, UnsupportedModel


HEADS = ("last", "every", "final")
_OPTIONS = {"head", "mode", "nonlinearity", "batch_first", "activations", "modules", "order"}
# The classes the ``modules`` option may name: modules whose parameters alone do not say what they are.
NAMED_MODULES = ("LayerNorm", "Embedding")


def _check_options(options: dict, function: str) -> None:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise UnknownOption(function, unknown, _OPTIONS)


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


def _named_modules(options: dict) -> dict:
    """The ``modules`` option: module path -> ``{"class": "LayerNorm", "eps": 1e-5}`` or
    ``{"class": "Embedding"}``; given as ``{"norm": "LayerNorm", "emb": "Embedding"}`` or, with a
    LayerNorm's ``eps`` (PyTorch's default 1e-5 otherwise), ``{"norm": {"class": "LayerNorm", "eps": 1e-3}}``."""
    given = options.get("modules") or {}
    if not isinstance(given, dict):
        raise UnsupportedModel(f"option modules={given!r} must map module paths to {' or '.join(NAMED_MODULES)}")
    named = {}
    for path, value in given.items():
        spec = dict(value) if isinstance(value, dict) else {"class": value}
        eps = spec.get("eps", 1e-5)
        if spec.get("class") not in NAMED_MODULES or set(spec) - {"class", "eps"} or (
                spec["class"] != "LayerNorm" and "eps" in spec) or isinstance(eps, bool) \
                or not isinstance(eps, (int, float)) or not eps >= 0:
            raise UnsupportedModel(f"option modules[{path!r}]={value!r} must be 'LayerNorm', 'Embedding' or "
                                   "{'class': 'LayerNorm', 'eps': <a number >= 0>}")
        named[str(path)] = {"class": spec["class"], "eps": float(eps)}
    return named
