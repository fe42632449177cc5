"""Branches that merge: ``Add``, ``Sub``, ``Mul``, ``Max``, ``Min`` of computed tensors of one shape and
layout (``ir.Merge``; ``Div`` of a sum of n tensors by n is the average), and ``Concat`` of computed
tensors over their features (``ir.Concatenate``). A tensor read by two nodes (a residual connection)
is one expression both read, so the converted model is a graph.

``Mul``, ``Div``, ``Add``, ``Sub`` of a computed tensor and a constant (one number, or one per
feature on the last axis) scale and shift it: an ``ir.Affine`` (``x / c`` as ``x * (1 / c)``, within
a rounding of PyTorch's division)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ... import ir
from .expressions import _FlatE, _MergeE, _OpE
from .values import _Const, _Data, _is_feature, _Refuse, _Sym

# ONNX element-wise op -> ir.Merge mode
MERGE_MODES = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Max": "maximum", "Min": "minimum", "Sum": "add",
               "Mean": "average"}


class _MergeOps:
    """Merges and feature concatenations of computed tensors (a mixin of :class:`~.converter._Converter`)."""

    def _same_layout(self, tensors: list, skip: int, where: str, what: str) -> None:
        """Every ONNX axis but ``skip`` of ``tensors`` plays one role (and, where the graph declares it,
        has one length); a channel-major Flatten is read only by a Gemm/MatMul."""
        first = tensors[0]
        for d in tensors:
            if isinstance(d.expr, _FlatE):
                raise _Refuse(f"{where}: {what} of a Flatten of (batch, channels, T); only a Gemm or MatMul may "
                              "read it")
            if len(d.axes) != len(first.axes):
                raise _Refuse(f"{where}: {what} of tensors of ranks {len(first.axes)} and {len(d.axes)}")
            for position, (a, b) in enumerate(zip(first.axes, d.axes)):
                if position == skip:
                    continue
                ra, rb = self.role(a), self.role(b)
                if _is_feature(ra) or _is_feature(rb):
                    same = ra == rb and first.factors == d.factors
                else:
                    for x, other in ((a, rb), (b, ra)):  # a graph input's axis not yet decided takes the other's role
                        if isinstance(self.role(x), _Sym) and isinstance(other, str):
                            self.require(x, other, where)
                    same = self._same(a, b)
                    sizes = self._static_size(a), self._static_size(b)
                    if same and None not in sizes and sizes[0] != sizes[1]:
                        raise _Refuse(f"{where}: {what} of tensors whose axis {position} ({_describe(ra)}) has "
                                      f"lengths {sizes[0]} and {sizes[1]}")
                if not same:
                    raise _Refuse(f"{where}: {what} of tensors laid out differently (axis {position} is "
                                  f"{_describe(ra)} in one, {_describe(rb)} in the other)")

    def _merge(self, node, inputs, where):
        """``inputs`` (all data) merged element-wise as ``node.op_type`` says: an ``ir.Merge``."""
        mode = MERGE_MODES[node.op_type]
        data = [v for v in inputs if v is not None]
        if len(data) < 2:
            raise _Refuse(f"{where}: {node.op_type} of one tensor")
        self._same_layout(data, None, where, node.op_type)  # one view of each canonical tensor: merged as those
        expr = _MergeE(tuple(d.expr for d in data), ir.Merge("merge", mode), node.name or node.output[0])
        return _Data(expr, tuple(self.role(a) for a in data[0].axes), data[0].factors)

    def _concatenate(self, node, present, axis: int, where):
        """``Concat`` over ``axis``, the whole feature axis of every input: an ``ir.Concatenate``."""
        self._same_layout(present, axis, where, "Concat")
        expr = _MergeE(tuple(d.expr for d in present), ir.Concatenate("concatenate"), node.name or node.output[0])
        axes = tuple(("F", 0, 1) if i == axis else self.role(a) for i, a in enumerate(present[0].axes))
        return _Data(expr, axes, (expr.features,))

    def _binary(self, node, inputs, attrs, where):
        """``Add``/``Sub``/``Mul``/``Max``/``Min``: folded on constants (sizes included), a merge of data,
        or (not Max/Min) an Affine of a tensor and a constant."""
        folded = self._constant_arithmetic(node, inputs, where)
        if folded is not None:
            return folded
        if all(isinstance(v, _Data) for v in inputs if v is not None):
            return self._merge(node, inputs, where)
        scaled = self._constant_affine(node, inputs, where)
        if scaled is not None:
            return scaled
        raise _Refuse(f"{where}: {node.op_type} of a tensor and a constant (edgernn merges computed tensors of one "
                      "shape, and scales or shifts a tensor by Mul, Div, Add or Sub with a constant)")

    _op_Sub = _op_Max = _op_Min = _binary

    def _op_Sum(self, node, inputs, attrs, where):
        """``Sum``/``Mean`` of n computed tensors: an ``ir.Merge`` add / average of n inputs (of one: itself)."""
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        present = [v for v in inputs if v is not None]
        if not all(isinstance(v, _Data) for v in present):
            raise _Refuse(f"{where}: {node.op_type} of a tensor and a constant (edgernn merges computed tensors of "
                          "one shape)")
        return present[0] if len(present) == 1 else self._merge(node, present, where)

    _op_Mean = _op_Sum

    def _op_Neg(self, node, inputs, attrs, where):
        """``-x``: folded on a constant, else the Affine ``x * -1``."""
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        x = inputs[0]
        if not isinstance(x, _Data) or isinstance(x.expr, _FlatE):
            raise _Refuse(f"{where}: Neg of a {type(x).__name__.strip('_')}")
        return _affine(x, -np.ones(x.expr.features), np.zeros(x.expr.features), node)

    def _constant_affine(self, node, inputs, where):
        """``x * c``, ``x / c``, ``x + c``, ``x - c`` or ``c - x`` of a computed tensor ``x`` and a constant
        ``c`` of one number or one per feature (broadcast over the last axis, the features): an
        ``ir.Affine`` ``x * scale + offset``. None for another op, or ``c / x``."""
        if len(inputs) != 2 or node.op_type not in ("Mul", "Div", "Add", "Sub"):
            return None
        data_first = isinstance(inputs[0], _Data) and isinstance(inputs[1], _Const)
        if not data_first and not (isinstance(inputs[0], _Const) and isinstance(inputs[1], _Data)):
            return None
        if node.op_type == "Div" and not data_first:
            return None
        x, c = (inputs[0], inputs[1]) if data_first else (inputs[1], inputs[0])
        if isinstance(x.expr, _FlatE):
            raise _Refuse(f"{where}: {node.op_type} of a Flatten of (batch, channels, T); only a Gemm or MatMul "
                          "may read it")
        features = x.expr.features
        c = np.asarray(c.value, np.float64)
        if c.ndim > len(x.axes) or not (c.size == 1 or (c.size == features and c.shape[-1] == features)):
            raise _Refuse(f"{where}: {node.op_type} by a constant of shape {c.shape}; edgernn scales or shifts by "
                          f"one number or one per feature ({features}) on the last axis")
        if c.size > 1:
            self._feature_axis(x, len(x.axes) - 1, where)
        c = np.broadcast_to(c.reshape(-1), (features,))
        if node.op_type == "Div" and not np.all(c != 0):
            raise _Refuse(f"{where}: Div by a constant that is 0")
        scale, offset = {"Mul": (c, 0.0), "Div": (1.0 / c, 0.0), "Add": (1.0, c),
                         "Sub": (1.0, -c) if data_first else (-1.0, c)}[node.op_type]
        return _affine(x, scale, offset, node)

    def _op_Div(self, node, inputs, attrs, where):
        """``Div`` of the sum of n tensors by the constant n: the average (PyTorch's ``(a + b) / 2``); of
        a tensor by another constant, an Affine."""
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        x, n = inputs
        if (isinstance(x, _Data) and isinstance(n, _Const) and n.value.size == 1 and isinstance(x.expr, _MergeE)
                and getattr(x.expr.op, "mode", None) == "add" and float(n.value.reshape(-1)[0]) == len(x.expr.inputs)):
            return replace(x, expr=replace(x.expr, op=ir.Merge("merge", "average"), name=node.name or node.output[0]))
        scaled = self._constant_affine(node, inputs, where)
        if scaled is not None:
            return scaled
        raise _Refuse(f"{where}: Div is supported only as the sum of n tensors divided by n (their average) or "
                      "of a tensor by a constant")


def _affine(x: _Data, scale, offset, node) -> _Data:
    """``x * scale + offset`` (per feature) as ``node`` computes it: an ``ir.Affine`` of ``x``."""
    op = ir.Affine("scale", ir.as_weight(np.broadcast_to(scale, (x.expr.features,))),
                   ir.as_weight(np.broadcast_to(offset, (x.expr.features,))))
    return replace(x, expr=_OpE(x.expr, op, node.name or node.output[0], x.expr.rank, x.expr.features))


def _describe(role) -> str:
    if _is_feature(role):
        return "a feature axis"
    return {"B": "the batch", "T": "the time", "U": "a size-1"}.get(role, "an undecided") + " axis"
