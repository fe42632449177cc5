"""Ops that keep the data and move only its axes: ``Identity``, ``Dropout`` (inference), ``Cast`` to
a float type, ``Transpose``, ``Squeeze``, ``Unsqueeze`` -- on data, on each data tensor of a stack,
or on a filled tensor."""

from __future__ import annotations

from dataclasses import replace

from .values import _Const, _Data, _Fill, _is_feature, _Refuse, _Shape, _Stack, _Sym, _UNKNOWN


class _AxisOps:
    """Layout changes that keep every value (a mixin of :class:`~.converter._Converter`)."""

    def _op_Identity(self, node, inputs, attrs, where):
        return inputs[0]

    def _op_Dropout(self, node, inputs, attrs, where):
        training = inputs[2] if len(inputs) > 2 else None
        if training is not None and not (isinstance(training, _Const) and not training.value.any()):
            raise _Refuse(f"{where}: Dropout in training mode")
        if len(node.output) > 1 and node.output[1]:
            if any(node.output[1] in n.input for n in self.graph.node) or node.output[1] in [o.name for o in self.graph.output]:
                raise _Refuse(f"{where}: the dropout mask output is used")
        return [inputs[0], _UNKNOWN]

    def _op_Cast(self, node, inputs, attrs, where):
        from onnx import TensorProto

        x = inputs[0]
        if isinstance(x, _Const):
            return self._fold(node, inputs, where)
        if isinstance(x, _Shape):
            return x
        if isinstance(x, (_Data, _Stack, _Fill)) and attrs.get("to") in (TensorProto.FLOAT, TensorProto.DOUBLE):
            return x
        raise _Refuse(f"{where}: Cast of data to a non-float type is not supported")

    def _op_Transpose(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, _Const):
            return self._fold(node, inputs, where)
        rank = self._rank(x, where)
        perm = list(attrs.get("perm", range(rank - 1, -1, -1)))
        return self._map(x, where, lambda d: replace(d, axes=tuple(d.axes[p] for p in perm)),
                         fill=lambda f: _Fill(f.value, tuple(f.dims[p] for p in perm)),
                         stack_axis=lambda a: perm.index(a))

    def _rank(self, x, where) -> int:
        if isinstance(x, _Data):
            return len(x.axes)
        if isinstance(x, _Stack):
            return len(x.items[0].axes)
        if isinstance(x, _Fill):
            return len(x.dims)
        if isinstance(x, _Const):
            return x.value.ndim
        raise _Refuse(f"{where}: unsupported input")

    def _map(self, x, where, data_fn, fill=None, stack_axis=None):
        """Apply a layout change to data, each item of a stack, or a filled tensor."""
        if isinstance(x, _Data):
            return data_fn(x)
        if isinstance(x, _Stack):
            if stack_axis is None:
                raise _Refuse(f"{where}: not supported on a stack of several layers' states")
            axis = stack_axis(x.axis)
            if axis is None:
                raise _Refuse(f"{where}: not supported across a stack of several layers' states")
            return _Stack(tuple(data_fn(item) for item in x.items), axis)
        if isinstance(x, _Fill) and fill is not None:
            return fill(x)
        raise _Refuse(f"{where}: not supported on a {type(x).__name__.strip('_')}")

    def _op_Squeeze(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, (_Const,)):
            return self._fold(node, inputs, where)
        if isinstance(x, _Shape):
            return _Shape(x.dims, scalar=True) if len(x.dims) == 1 else x
        rank = self._rank(x, where)
        axes = self._axes_arg(node, inputs, attrs, where)
        if axes is None:
            if isinstance(x, _Data):
                axes = [i for i, a in enumerate(x.axes) if self._axis_size(x, a) == 1]
            elif isinstance(x, _Fill):
                axes = [i for i, d in enumerate(x.dims) if d == 1]
            else:
                raise _Refuse(f"{where}: Squeeze without axes on a stack")
        axes = sorted({a % rank for a in axes})

        def data_fn(d: _Data):
            out = d
            for position in reversed(axes):
                out = self._drop_unit(out, position, where)
            return out

        def fill_fn(f: _Fill):
            if any(f.dims[a] != 1 for a in axes if isinstance(f.dims[a], int)):
                raise _Refuse(f"{where}: squeezes an axis whose size is not 1")
            return _Fill(f.value, tuple(d for i, d in enumerate(f.dims) if i not in axes))

        def stack_fn(a):
            if a in axes:
                return None
            return a - sum(1 for s in axes if s < a)

        return self._map(x, where, data_fn, fill_fn, stack_fn)

    def _drop_unit(self, d: _Data, position: int, where: str) -> _Data:
        """Remove axis ``position`` of size 1 (a unit axis, a size-1 feature block, a size-1 input axis)."""
        axis = self.role(d.axes[position])
        rest = d.axes[:position] + d.axes[position + 1:]
        if isinstance(axis, _Sym):
            self.require(axis, "U", where)
            return replace(d, axes=rest)
        if axis == "U":
            return replace(d, axes=rest)
        if _is_feature(axis) and self._axis_size(d, axis) == 1:
            k0, k1 = axis[1], axis[2]
            width = k1 - k0

            def shift(a):
                a = self.role(a)
                if _is_feature(a) and a[1] >= k1:
                    return ("F", a[1] - width, a[2] - width)
                return a

            factors = d.factors[:k0] + d.factors[k1:]
            if not factors:
                raise _Refuse(f"{where}: squeezes away the feature axis")
            return replace(d, axes=tuple(shift(a) for a in rest), factors=factors)
        raise _Refuse(f"{where}: squeezes the {'batch' if axis == 'B' else 'time' if axis == 'T' else 'feature'} axis")

    def _op_Unsqueeze(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, _Const):
            return self._fold(node, inputs, where)
        axes = self._axes_arg(node, inputs, attrs, where)
        if axes is None:
            raise _Refuse(f"{where}: Unsqueeze without axes")
        if isinstance(x, _Shape):
            if x.scalar and axes in ([0], [-1]):
                return _Shape(x.dims)
            raise _Refuse(f"{where}: Unsqueeze of a shape vector")
        rank = self._rank(x, where) + len(axes)
        axes = sorted(a % rank for a in axes)

        def insert(seq, filler):
            seq = list(seq)
            for a in axes:
                seq.insert(a, filler)
            return tuple(seq)

        def stack_fn(a):
            for s in axes:
                if s <= a:
                    a += 1
            return a

        return self._map(x, where, lambda d: replace(d, axes=insert(d.axes, "U")),
                         lambda f: _Fill(f.value, insert(f.dims, 1)), stack_fn)
