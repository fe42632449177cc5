"""Emission: the expressions the graph outputs need, turned into IR nodes, each once, in dependency
order (an activation after a Dense or Conv1D becomes its own in :mod:`.._fold`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ... import ir
from .expressions import _ActE, _BiE, _children, _DenseE, _FlatE, _InputE, _MergeE, _OpE, _RecE, _RevSeqE
from .graph import _clean_name
from .values import _Refuse

if TYPE_CHECKING:
    from .converter import _Converter


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
            op = ir.Dense(c.unique(expr.name), expr.kernel, expr.bias, expr.activation)
            name = self._node(op, [self._emit(expr.inner)])
        elif isinstance(expr, _ActE):  # a Dense or Conv1D right before takes it (importers._fold)
            op = ir.Activation(c.unique(expr.name), expr.activation)
            name = self._node(op, [self._emit(expr.inner)])
        elif isinstance(expr, _OpE):
            name = self._node(replace(expr.op, name=c.unique(expr.name)), [self._emit(expr.inner)])
        elif isinstance(expr, _MergeE):
            name = self._node(replace(expr.op, name=c.unique(expr.name)), [self._emit(e) for e in expr.inputs])
        elif isinstance(expr, _FlatE):
            raise _Refuse(f"node {expr.name!r} (Flatten): a Flatten of (batch, channels, T) merges the channels with "
                          "the time axis; supported only right before a Gemm or MatMul, whose weight fixes T")
        else:  # pragma: no cover
            raise _Refuse(f"unknown expression {expr!r}")
        self.memo[key] = name
        return name

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
