"""Axis roles: which ONNX axis of a data tensor is the batch (``"B"``), the time (``"T"``), a unit
axis (``"U"``), a block of the features (``("F", k0, k1)``) or the batch and time merged
(``("M", outer, inner)``); an axis of a graph input (``_Sym``) takes the role the first node that
reads it requires, and keeps it."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .values import _Data, _is_feature, _is_merged, _Refuse, _Sym


class _Roles:
    """Roles and sizes of axes (a mixin of :class:`~.converter._Converter`: ``self.bind``, ``self.inputs``)."""

    def role(self, axis):
        if isinstance(axis, _Sym):
            return self.bind.get(axis, axis)
        return axis

    def require(self, axis, role: str, where: str) -> None:
        """Axis ``axis`` must be ``role``: binds an unresolved graph-input axis, else checks."""
        current = self.role(axis)
        if isinstance(current, _Sym):
            if role == "U" and current.size not in (None, 1):
                raise _Refuse(f"{where}: axis {current} of size {current.size} used as a size-1 axis")
            self.bind[current] = role
            return
        if current != role:
            names = {"B": "batch", "T": "time", "U": "size-1"}
            found = (names.get(current, current) if isinstance(current, str)
                     else "merged batch and time" if _is_merged(current) else "feature")
            raise _Refuse(f"{where}: expected the {names.get(role, role)} axis, found the {found} axis")

    def _static_size(self, axis) -> Optional[int]:
        """The size of a batch, time or merged axis where the graph declares it, else None."""
        if isinstance(axis, _Sym) and axis.size:
            return axis.size  # a graph input's, or the time axis a convolution or pooling made (its own length)
        axis = self.role(axis)
        if isinstance(axis, _Sym):
            return axis.size
        if _is_merged(axis):
            parts = [self._static_size(a) for a in axis[1:]]
            return parts[0] * parts[1] if all(parts) else None
        return next((s.size for _, syms in self.inputs.values() for s in syms
                     if s.size and self.bind.get(s) == axis), None)

    def _matches(self, entry, axis) -> bool:
        """Whether Reshape target ``entry`` (a copied axis token or a number) keeps axis ``axis``."""
        if isinstance(entry, tuple):
            return self._same(entry[1], axis)
        return entry is not None and entry == self._static_size(axis)

    def _same(self, a, b) -> bool:
        """Whether axis tokens ``a`` and ``b`` are the same axis (roles resolved)."""
        a, b = self.role(a), self.role(b)
        return a is b or (not isinstance(a, _Sym) and not isinstance(b, _Sym) and a == b)

    def input_rank(self, name: str) -> int:
        _, syms = self.inputs[name]
        return 3 if any(self.bind.get(s) == "T" for s in syms) else 2

    def _axis_size(self, data: _Data, axis):
        axis = self.role(axis)
        if axis == "U":
            return 1
        if _is_feature(axis):
            return int(np.prod(data.factors[axis[1]:axis[2]]))
        return axis  # a token: "B", "T" or a _Sym

    def _feature_axis(self, d: _Data, position: int, where: str):
        axis = self.role(d.axes[position])
        if axis != ("F", 0, len(d.factors)):
            raise _Refuse(f"{where}: acts on axis {position}, which is not the whole feature axis")
        return axis
