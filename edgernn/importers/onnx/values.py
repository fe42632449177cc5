"""What one ONNX tensor is, symbolically, while the graph is walked.

Every tensor is a constant (``_Const``: initializers, ``Constant`` nodes, shape arithmetic), a shape
vector (``_Shape``: ``Shape`` of a data tensor), a filled tensor (``_Fill``: ``ConstantOfShape``, the
zero initial states exporters build), a *data* tensor (``_Data``: one canonical edgernn tensor seen
through a layout that says which ONNX axis is the batch, the time, a unit axis, or a block of the
features), data tensors concatenated (``_Stack``), the integer codes of a graph input that only ``Gather``
nodes read from a constant table (``_Codes``: an embedding lookup), or the unknown output of a refused
node (``_UNKNOWN``). ``_Refuse`` is one problem with one node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .expressions import _Expr


class _Refuse(Exception):
    """One problem with one node; gathered, the node's outputs become unknown."""


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
class _Codes:
    """A graph input of integer codes ``(batch, T)`` (or ``(T, batch)``), read only by ``Gather``
    nodes that look rows of a constant table up (:meth:`~.select._SelectOps._embedding`)."""

    data: _Data


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
