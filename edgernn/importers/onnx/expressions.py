"""Expressions: the canonical edgernn tensors the graph computes, built lazily, emitted as IR nodes at the end.

Each is ``(batch, T, features)`` or ``(batch, features)``: a graph input, one direction of a
recurrent node (its output sequence or a final state), both directions of a bidirectional node
concatenated, a reverse node's output in time order, a Dense or an activation applied to each
step (or the one vector) of another expression, or expressions merged (element-wise or over the features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from ... import ir

if TYPE_CHECKING:
    from .converter import _Converter


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


@dataclass(eq=False)
class _OpE(_Expr):
    """A convolutional front-end op (``ir.Conv1D``, ``ir.Pooling1D``, ``ir.Affine``) applied to
    ``inner``; ``op.name`` is a placeholder until emission."""

    inner: _Expr
    op: object
    name: str
    rank: int
    features: int


@dataclass(eq=False)
class _FlatE(_Expr):
    """``(batch, channels, T)`` flattened channel-major (ONNX ``Flatten(axis=1)``, PyTorch's
    ``nn.Flatten`` of a convolution's output): only a Gemm/MatMul may read it, which fixes T and
    reads the IR Flatten's time-major order through reordered weight rows."""

    inner: _Expr
    name: str
    channels: int
    steps: Optional[int]  # the static length, where the graph declares it
    rank = 2

    @property
    def features(self):
        return self.channels * (self.steps or 0)


@dataclass(eq=False)
class _MergeE(_Expr):
    """Tensors of one rank merged: ``op`` an ``ir.Merge`` (one shape) or an ``ir.Concatenate`` over the
    features; ``op.name`` is a placeholder until emission."""

    inputs: tuple
    op: object
    name: str

    @property
    def rank(self):
        return self.inputs[0].rank

    @property
    def features(self):
        if isinstance(self.op, ir.Concatenate):
            return sum(e.features for e in self.inputs)
        return self.inputs[0].features


def _children(expr) -> list:
    if isinstance(expr, _RecE):
        return [expr.rec.input, *expr.rec.initial]
    if isinstance(expr, _BiE):
        return [expr.forward.input]
    if isinstance(expr, _RevSeqE):
        return [expr.rec.input]
    if isinstance(expr, (_DenseE, _ActE, _OpE, _FlatE)):
        return [expr.inner]
    if isinstance(expr, _MergeE):
        return list(expr.inputs)
    return []
