"""Selecting and stacking: ``Gather``/``Slice`` of the last step (or a reverse direction's first), of
one direction of a bidirectional node or of one state in a stack, and ``Concat`` that stacks states
(or joins a bidirectional node's two final states). A selected step is pushed through the per-step
layers down to the recurrent node whose final state it is."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ... import ir
from .expressions import _ActE, _BiE, _DenseE, _MergeE, _OpE, _RecE, _RevSeqE
from .values import _Codes, _Const, _Data, _Fill, _is_feature, _Refuse, _Shape, _Stack, _Sym

_BIG = 2 ** 30  # Slice ends at or beyond this mean "to the end"


class _SelectOps:
    """Gather, Slice, Concat (a mixin of :class:`~.converter._Converter`)."""

    def _op_Concat(self, node, inputs, attrs, where):
        axis = attrs.get("axis", 0)
        present = [v for v in inputs if v is not None]
        if all(isinstance(v, _Const) for v in present):
            return self._fold(node, inputs, where)
        if all(isinstance(v, (_Const, _Shape)) for v in present):
            dims = []
            for v in present:
                if isinstance(v, _Shape):
                    dims.extend(v.dims)
                else:
                    dims.extend(int(d) for d in v.value.reshape(-1))
            return _Shape(tuple(dims))
        if all(isinstance(v, _Fill) for v in present) and len({v.value for v in present}) == 1:
            # tf2onnx's zero initial states of a bidirectional node: two (1, batch, H) zeros stacked.
            sizes = [v.dims[axis % len(v.dims)] for v in present]
            if all(isinstance(n, int) for n in sizes):
                dims = list(present[0].dims)
                dims[axis % len(dims)] = sum(sizes)
                return _Fill(present[0].value, tuple(dims))
        if not all(isinstance(v, (_Data, _Stack)) for v in present):
            raise _Refuse(f"{where}: Concat of data with constants is not supported")
        rank = self._rank(present[0], where)
        axis %= rank
        # torch.cat([h_n[-2], h_n[-1]], dim=1): both directions' final states along the features.
        if len(present) == 2 and all(isinstance(v, _Data) for v in present):
            a, b = present
            ea, eb = a.expr, b.expr
            if (isinstance(ea, _RecE) and isinstance(eb, _RecE) and ea.what == eb.what == "h"
                    and not ea.rec.reverse and eb.rec.reverse and ea.rec.input is eb.rec.input
                    and not ea.rec.initial and not eb.rec.initial
                    and getattr(ea.rec, "pair", None) is eb.rec and a.axes == b.axes
                    and self.role(a.axes[axis]) == ("F", 0, len(a.factors))):
                axes = tuple(("F", 0, 2) if i == axis else self.role(x) for i, x in enumerate(a.axes))
                return _Data(_BiE(ea.rec, eb.rec, "last"), axes, (2, ea.rec.layer.units))
        if all(isinstance(v, _Data) and self.role(v.axes[axis]) == ("F", 0, len(v.factors)) for v in present):
            return self._concatenate(node, present, axis, where)  # branches joined over their features
        items = []
        for v in present:
            if isinstance(v, _Stack):
                if v.axis != axis:
                    raise _Refuse(f"{where}: Concat across a stack along another axis")
                items.extend(v.items)
            else:
                role = self.role(v.axes[axis])
                if role not in ("U",) and not (_is_feature(role) and role == ("F", 0, 1) and len(v.factors) >= 2):
                    raise _Refuse(f"{where}: Concat along an axis that is neither the features nor a stacking axis "
                                  "(edgernn concatenates over the features)")
                items.append(v)
        return _Stack(tuple(items), axis)

    def _op_Gather(self, node, inputs, attrs, where):
        x, index = inputs
        axis = attrs.get("axis", 0)
        if isinstance(index, _Codes):
            return self._embedding(node, x, index, axis, where)
        if isinstance(x, _Const) and isinstance(index, _Const):
            return self._fold(node, inputs, where)
        if isinstance(x, _Shape) and isinstance(index, _Const) and index.value.ndim == 1:
            return _Shape(tuple(x.dims[int(i)] for i in index.value))  # e.g. tf2onnx's Tensordot: (batch, T)
        if not isinstance(index, _Const) or index.value.size != 1:
            raise _Refuse(f"{where}: Gather needs one constant index")
        keep = index.value.ndim > 0
        i = int(index.value.reshape(-1)[0])
        if isinstance(x, _Shape):
            picked = x.dims[i]
            return _Shape((picked,), scalar=not keep)
        return self._pick(x, axis, i, keep, where)

    def _embedding(self, node, table, codes: _Codes, axis: int, where: str) -> _Data:
        """``Gather(table, codes)`` along axis 0 of a constant ``(vocab, dim)`` table: ``ir.Embedding``
        of the graph input's integer codes, ``(batch, T) -> (batch, T, dim)`` (the axes as the codes')."""
        if not isinstance(table, _Const) or np.ndim(table.value) != 2 or axis % 2 != 0:
            raise _Refuse(f"{where}: integer codes index rows (axis 0) of a constant (vocab, dim) table only: an "
                          "embedding")
        first, second = codes.data.axes
        if self.role(first) == "T" or self.role(second) == "B":
            first, second = second, first  # time-major codes (T, batch)
        self.require(first, "B", where)
        self.require(second, "T", where)
        op = ir.Embedding("embedding", ir.as_weight(np.asarray(table.value, np.float64)))
        expr = _OpE(codes.data.expr, op, node.name or node.output[0], 3, op.output_size)
        return _Data(expr, codes.data.axes + (("F", 0, 1),), (op.output_size,))

    def _pick(self, x, axis: int, i: int, keep: bool, where: str):
        """Element ``i`` of axis ``axis`` (kept as a size-1 axis if ``keep``)."""
        rank = self._rank(x, where)
        axis %= rank
        if isinstance(x, _Fill):
            dims = list(x.dims)
            if keep:
                dims[axis] = 1
            else:
                del dims[axis]
            return _Fill(x.value, tuple(dims))
        if isinstance(x, _Stack):
            if axis != x.axis:
                return self._map(x, where, lambda d: self._pick(d, axis, i, keep, where),
                                 stack_axis=lambda a: a if keep or a < axis else a - 1)
            sizes = [self._axis_size(item, item.axes[axis]) for item in x.items]
            total = sum(sizes)
            i = i % total if -total <= i < total else None
            if i is None:
                raise _Refuse(f"{where}: index out of range")
            for item, size in zip(x.items, sizes):
                if i < size:
                    return self._pick(item, axis, i, keep, where)
                i -= size
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: not supported on a {type(x).__name__.strip('_')}")
        role = self.role(x.axes[axis])
        rest = x.axes[:axis] + x.axes[axis + 1:]
        if isinstance(role, _Sym):
            raise _Refuse(f"{where}: selects from axis {role} of the input, whose role (batch or time) the graph "
                          "does not show")
        if role == "U":
            if i not in (0, -1):
                raise _Refuse(f"{where}: index {i} of a size-1 axis")
            return x if keep else replace(x, axes=rest)
        if role == "T":
            if i == -1:
                expr = self._last(x.expr, where)
            elif i == 0:
                expr = self._first(x.expr, where)
            else:
                raise _Refuse(f"{where}: selects timestep {i}; only the last (-1) or, of a reverse direction, "
                              "the first (0) is supported")
            return replace(x, expr=expr, axes=x.axes[:axis] + ("U",) + x.axes[axis + 1:] if keep else rest)
        if role == "B":
            raise _Refuse(f"{where}: selects from the batch axis")
        # A feature block: the direction axis of a bidirectional node's output.
        if _is_feature(role) and role[1] == 0 and role[2] == 1 and x.factors[0] == 2 and isinstance(x.expr, _BiE):
            i %= 2
            bi = x.expr
            rec = bi.forward if i == 0 else bi.backward
            if bi.what == "seq":
                expr = _RecE(rec, "seq") if i == 0 else _RevSeqE(rec)
            else:
                expr = _RecE(rec, "h")

            def shift(a):
                a = self.role(a)
                return ("F", a[1] - 1, a[2] - 1) if _is_feature(a) else a

            axes = tuple(shift(a) for a in (x.axes[:axis] + ("U",) + x.axes[axis + 1:] if keep else rest))
            return _Data(expr, axes, x.factors[1:])
        raise _Refuse(f"{where}: selects part of the features (only a bidirectional node's direction axis can be "
                      "selected)")

    def _op_Slice(self, node, inputs, attrs, where):
        x = inputs[0]
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if self.opset < 10:
            starts, ends, axes, steps = attrs.get("starts"), attrs.get("ends"), attrs.get("axes"), None
        else:
            starts = self._ints(inputs[1], where, "starts")
            ends = self._ints(inputs[2], where, "ends")
            axes = self._ints(inputs[3], where, "axes") if len(inputs) > 3 and inputs[3] is not None else None
            steps = self._ints(inputs[4], where, "steps") if len(inputs) > 4 and inputs[4] is not None else None
        axes = list(range(len(starts))) if axes is None else axes
        steps = steps or [1] * len(starts)
        if isinstance(x, _Shape):
            if len(axes) == 1 and steps[0] == 1:
                return _Shape(tuple(x.dims[slice(starts[0], ends[0])]))
            raise _Refuse(f"{where}: strided Slice of a shape")
        rank = self._rank(x, where)
        for start, end, axis, step in zip(starts, ends, axes, steps):
            x = self._slice(x, axis % rank, start, end, step, where)
        return x

    def _slice(self, x, axis, start, end, step, where):
        if step != 1:
            raise _Refuse(f"{where}: Slice with step {step} is not supported")
        if isinstance(x, _Fill):
            size = x.dims[axis]
            if isinstance(size, int):
                new = len(range(size)[slice(start, end)])
            elif start == 0 and end >= _BIG:
                new = size
            else:
                raise _Refuse(f"{where}: Slice of a symbolic axis")
            return _Fill(x.value, x.dims[:axis] + (new,) + x.dims[axis + 1:])
        if isinstance(x, _Stack):
            if axis != x.axis:
                return self._map(x, where, lambda d: self._slice(d, axis, start, end, step, where),
                                 stack_axis=lambda a: a)
            sizes = [self._axis_size(item, item.axes[axis]) for item in x.items]
            total = sum(sizes)
            chosen = list(range(total))[slice(start, end)]
            items, offset = [], 0
            for item, size in zip(x.items, sizes):
                mine = [c - offset for c in chosen if offset <= c < offset + size]
                if len(mine) == size:
                    items.append(item)
                elif len(mine) == 1:
                    items.append(self._pick(item, axis, mine[0], True, where))
                elif mine:
                    raise _Refuse(f"{where}: Slice that splits a bidirectional state")
                offset += size
            return items[0] if len(items) == 1 else _Stack(tuple(items), axis)
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: not supported on a {type(x).__name__.strip('_')}")
        causal = self._causal_slice(x, axis, start, end)  # PyTorch's causal Conv1d: y[:, :, :-p]
        if causal is not None:
            return causal
        role = self.role(x.axes[axis])
        size = self._axis_size(x, role)
        if isinstance(size, _Sym) and size.size is not None:
            # a graph input's axis of a declared size, its role not decided yet: PyTorch's dynamo
            # exporter slices the (1, batch, H) initial state it is given with [0:1] of axis 0
            size = size.size
        if isinstance(size, int):
            chosen = list(range(size))[slice(start, end)]
            if len(chosen) == size:
                return x
            if len(chosen) == 1:
                return self._pick(x, axis, chosen[0], True, where)
            raise _Refuse(f"{where}: Slice that keeps part of an axis")
        if start == 0 and end >= _BIG:
            return x
        if role == "T" and end >= _BIG and start == -1:
            return self._pick(x, axis, -1, True, where)
        if role == "T" and start == 0 and end == 1:
            return self._pick(x, axis, 0, True, where)
        raise _Refuse(f"{where}: Slice [{start}:{end}] of the {'time' if role == 'T' else 'batch'} axis; only the "
                      "last step is supported")

    # last / first step, pushed through per-step layers ---------------------------------------------
    def _last(self, expr, where):
        key = ("last", id(expr))
        if key in self.memo_last:
            return self.memo_last[key]
        if isinstance(expr, _RecE) and expr.what == "seq":
            result = _RecE(expr.rec, "h")  # a forward layer's last output is its final h
        elif isinstance(expr, _DenseE):
            result = replace(expr, inner=self._last(expr.inner, where))
        elif isinstance(expr, _ActE):
            result = replace(expr, inner=self._last(expr.inner, where))
        elif isinstance(expr, _OpE) and isinstance(expr.op, ir.LayerNorm):  # per step: the last step's norm
            result = replace(expr, inner=self._last(expr.inner, where), rank=2)
        elif isinstance(expr, _BiE):
            raise _Refuse(f"{where}: the last step of a bidirectional output (its backward half has read one step "
                          "only) cannot be computed by edgernn; use the node's Y_h (final states) instead")
        elif isinstance(expr, _RevSeqE):
            raise _Refuse(f"{where}: the last step of a reverse direction's output cannot be computed by edgernn; "
                          "use its Y_h (the first step)")
        elif isinstance(expr, _MergeE):
            raise _Refuse(f"{where}: the last step of a merge of branches (its inputs' last steps would be read "
                          "as final states, which a stream does not carry); merge the last steps instead")
        else:
            raise _Refuse(f"{where}: the last step of the input itself is not supported")
        self.memo_last[key] = result
        return result

    def _first(self, expr, where):
        key = ("first", id(expr))
        if key in self.memo_last:
            return self.memo_last[key]
        if isinstance(expr, _RevSeqE):
            result = _RecE(expr.rec, "h")  # a reverse layer's output at time 0 is its final h
        elif isinstance(expr, (_DenseE, _ActE)):
            result = replace(expr, inner=self._first(expr.inner, where))
        else:
            raise _Refuse(f"{where}: selects the first timestep; only a reverse direction's is supported")
        self.memo_last[key] = result
        return result
