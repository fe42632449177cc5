"""``Reshape`` and ``Flatten`` as layout changes: unit axes come and go, adjacent feature blocks merge
in order, and the batch and time axes merge around a per-step ``MatMul`` (tf2onnx's Tensordot,
Keras 2's TimeDistributed) and split back -- targets given by ``Shape``/``Gather`` or as numbers
matched to the static sizes the graph declares."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .values import _Data, _Fill, _is_feature, _is_merged, _Refuse, _Shape, _Const


class _ReshapeOps:
    """Reshape, Flatten (a mixin of :class:`~.converter._Converter`)."""

    def _op_Reshape(self, node, inputs, attrs, where):
        x, shape = inputs[0], inputs[1]
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if isinstance(shape, _Const):
            target = [int(v) for v in shape.value.reshape(-1)]
        elif isinstance(shape, _Shape):
            target = list(shape.dims)
        else:
            raise _Refuse(f"{where}: Reshape needs a constant shape")
        if isinstance(x, _Shape):  # a shape vector reshaped to (n,) (the dynamo exporter's (-1,)), or one size to ()
            n = 1 if x.scalar else len(x.dims)
            if target in ([-1], [n]) or (target == [] and n == 1):
                return _Shape(x.dims, scalar=not target)
            raise _Refuse(f"{where}: Reshape of a shape vector to {target}")
        allowzero = attrs.get("allowzero", 0)
        return self._map(x, where, lambda d: self._reshape(d, target, allowzero, where),
                         fill=lambda f: self._reshape_fill(f, target, where))

    def _op_Flatten(self, node, inputs, attrs, where):
        x = inputs[0]
        if isinstance(x, _Const):
            return self._fold(node, inputs, where)
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: Flatten of a {type(x).__name__.strip('_')}")
        flat = self._channel_major_flatten(x, attrs, node, where)  # of a convolution's (batch, channels, T)
        if flat is not None:
            return flat
        axis = attrs.get("axis", 1) % (len(x.axes) + 1)
        head = [self.role(a) for a in x.axes[:axis] if self.role(a) != "U"]
        tail = [self._axis_size(x, a) for a in x.axes[axis:]]
        if len(head) > 1 or not all(isinstance(t, int) for t in tail):
            raise _Refuse(f"{where}: Flatten that merges the batch or time axis")
        target = (head or [1]) + [int(np.prod(tail))]
        return self._reshape(x, target, 0, where)

    def _reshape_fill(self, f: _Fill, target, where):
        if all(isinstance(d, int) for d in f.dims) and all(isinstance(t, int) for t in target):
            return _Fill(f.value, tuple(np.empty(f.dims, np.int8).reshape(target).shape))
        raise _Refuse(f"{where}: Reshape of a symbolic filled tensor")

    def _reshape(self, d: _Data, target: list, allowzero: int, where: str) -> _Data:
        """Reshape as a layout change: unit axes come and go, adjacent feature blocks merge in order."""
        axes = [self.role(a) for a in d.axes]
        entries = []
        for i, t in enumerate(target):
            if isinstance(t, int) and t == 0 and not allowzero:
                if i >= len(axes):
                    raise _Refuse(f"{where}: Reshape copies axis {i}, which does not exist")
                entries.append(("copy", axes[i]))
            elif isinstance(t, int):
                entries.append(t)
            else:
                entries.append(("copy", self.role(t)))
        # The batch and time axes (a merged axis counts as its two parts).
        symbolic = [p for a in axes if not (a == "U" or _is_feature(a)) for p in (a[1:] if _is_merged(a) else (a,))]
        copied = [e[1] for e in entries if isinstance(e, tuple)]
        if -1 in entries:
            left = [a for a in symbolic if not any(self._same(a, c) for c in copied)]
            static = int(np.prod([self._axis_size(d, a) for a in axes if a == "U" or _is_feature(a)]))
            known = int(np.prod([e for e in entries if isinstance(e, int) and e != -1] or [1]))
            size = self._static_size(left[0]) if len(left) == 1 else None
            if len(left) == 1 and static == known:
                entries[entries.index(-1)] = ("copy", left[0])
            elif len(left) == 1 and size and known % size == 0 and static % (known // size) == 0:
                # (3, -1) with 3 the static batch (an export with fixed shapes, x.view(x.size(0), -1)):
                # -1 is a number, and the numbers are matched to the axes below.
                entries[entries.index(-1)] = static * size // known
            elif len(left) == 1:
                raise _Refuse(f"{where}: Reshape that merges the {left[0]} axis with features")
            elif not left and known and static % known == 0:
                entries[entries.index(-1)] = static // known
            elif len(left) == 2 and static == known and not _is_merged(left[0]) and not _is_merged(left[1]):
                # tf2onnx's Tensordot (a Dense on a sequence): Reshape to (-1, features) merges
                # the batch and time axes into one; the MatMul (+ Add) acts per row, the Reshape
                # after it splits them back. Followed as a merged axis ("M", outer, inner).
                entries[entries.index(-1)] = ("copy", ("M", left[0], left[1]))
            elif len(left) == 2 and (sizes := [self._static_size(a) for a in left]).count(None) == 1 \
                    and known == static * (sizes[0] or sizes[1]):
                # -1 for the one dynamic axis, a number for the other (a static time length)
                entries[entries.index(-1)] = ("copy", left[sizes.index(None)])
            elif all(sizes := [self._static_size(a) for a in left]) and known:
                # Static batch and time sizes (an export with fixed shapes): -1 is a number, and the
                # numbers are matched to the axes below.
                entries[entries.index(-1)] = static * math.prod(sizes) // known
            else:
                raise _Refuse(f"{where}: Reshape that merges the batch and time axes with features")
        out, i, k = [], 0, 0
        while k < len(entries):
            e = entries[k]
            k += 1
            nxt = entries[k] if k < len(entries) else None
            if e == 1 and not (i < len(axes) and _is_feature(axes[i]) and self._axis_size(d, axes[i]) == 1) and not (
                    i < len(axes) and _is_merged(axes[i]) and self._static_size(axes[i][1]) == 1
                    and self._matches(nxt, axes[i][2])):  # not a batch of 1 split off
                out.append("U")
                continue
            while i < len(axes) and axes[i] == "U":
                i += 1
            j = next((j for j in range(i + 1, len(axes)) if axes[j] != "U"), len(axes))  # the axis after
            if not isinstance(e, tuple) and i < len(axes) and not _is_feature(axes[i]):
                # A static size where the batch or time axis stands (a graph exported with fixed
                # shapes writes numbers where others write Shape -> Gather): the axis it stands for.
                size = self._static_size(d.axes[i])  # the token: a convolution's time axis has its own length
                if e == size:  # the same axis
                    e = ("copy", axes[i])
                elif _is_merged(axes[i]) and e == self._static_size(axes[i][1]) and self._matches(nxt, axes[i][2]):
                    e = ("copy", axes[i][1])  # a merged axis split back
                elif (j < len(axes) and not _is_feature(axes[j]) and not _is_merged(axes[i])
                      and not _is_merged(axes[j]) and size and self._static_size(d.axes[j])
                      and e == size * self._static_size(d.axes[j])):
                    e = ("copy", ("M", axes[i], axes[j]))  # two axes merged
                else:
                    raise _Refuse(f"{where}: Reshape to size {e} where the batch or time axis stands")
            if isinstance(e, tuple):
                if _is_merged(e[1]) and not (i < len(axes) and self._same(axes[i], e[1])):
                    # merge two adjacent axes, in their order
                    if j >= len(axes) or not (self._same(axes[i], e[1][1]) and self._same(axes[j], e[1][2])):
                        raise _Refuse(f"{where}: Reshape that merges axes that are not next to each other")
                    out.append(("M", axes[i], axes[j]))
                    i = j + 1
                elif i < len(axes) and _is_merged(axes[i]) and not self._same(axes[i], e[1]):
                    # split a merged axis back, in the same order: Keras 2's TimeDistributed writes
                    # (-1, T, units), tf2onnx's Tensordot (batch, T, units)
                    if not (self._same(axes[i][1], e[1]) and self._matches(nxt, axes[i][2])):
                        raise _Refuse(f"{where}: Reshape that splits the merged batch and time axes differently")
                    out.extend(axes[i][1:])
                    i += 1
                    k += 1
                elif i >= len(axes) or not self._same(axes[i], e[1]):
                    raise _Refuse(f"{where}: Reshape that moves the batch or time axis")
                else:
                    out.append(d.axes[i])  # the same axis (its token kept, for its static length)
                    i += 1
                continue
            k0 = k1 = None
            product = 1
            while product < e:
                if i >= len(axes) or not _is_feature(axes[i]) or (k1 is not None and axes[i][1] != k1):
                    raise _Refuse(f"{where}: Reshape that splits or reorders features, or mixes them with the "
                                  "batch or time axis")
                k0 = axes[i][1] if k0 is None else k0
                k1 = axes[i][2]
                product *= self._axis_size(d, axes[i])
                i += 1
                while i < len(axes) and axes[i] == "U" and product < e:
                    i += 1
            if product != e:
                raise _Refuse(f"{where}: Reshape that splits features")
            out.append(("F", k0, k1))
        if any(a != "U" for a in axes[i:]):
            raise _Refuse(f"{where}: Reshape that drops axes")
        return replace(d, axes=tuple(out))
