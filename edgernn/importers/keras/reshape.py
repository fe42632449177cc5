"""The layers that move timesteps around on ``(batch, T, C)``: ZeroPadding1D and Cropping1D (one
ir.Pad1D, negative counts crop), UpSampling1D, Reshape (to a sequence ``(T', C')`` from a sequence of
a fixed length or from a vector; to a vector it is a Flatten), and Permute((2, 1)) of a sequence of a
fixed length. None of them carries a mask in Keras; edgernn refuses a masked input rather than guess.
"""

from __future__ import annotations

import math

from ... import ir
from ...errors import InvalidModelFile
from .graph import _Data


def _pair(name: str, value) -> tuple[int, int]:
    """Keras's ``padding``/``cropping``: an int (both ends) or two ints (left, right), each >= 0."""
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(pair) != 2 or not all(type(v) is int and v >= 0 for v in pair):
        raise InvalidModelFile(f"{name} {value!r} is not one or two non-negative integers")
    return pair


class _ReshapeHandlers:
    """Handlers of ZeroPadding1D, Cropping1D, UpSampling1D, Reshape and Permute. A mixin of
    ``_Converter``: uses its ``_data_input``, ``_op_name``, ``_add``, ``_no_mask`` and ``_channels_last``."""

    def _time_input(self, call, where, problems, dry, ranks=(3,)):
        x = None if dry else self._data_input(call, where, problems, ranks=ranks)
        self._no_mask(x, where, problems)
        return None if dry or problems else x

    def _pad1d(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        cropping = entry["class_name"] == "Cropping1D"
        left, right = _pair("cropping" if cropping else "padding", cfg.get("cropping" if cropping else "padding", 1))
        self._channels_last(cfg, where, problems)
        x = self._time_input(call, where, problems, dry)
        if x is None:
            return None
        sign = -1 if cropping else 1
        op = ir.Pad1D(name=self._op_name(cfg.get("name", entry.get("name")), k), left=sign * left, right=sign * right)
        return self._add(op, x, 3, x.features, None if x.timesteps is None else op.output_steps(x.timesteps))

    def _upsampling1d(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        size = cfg.get("size", 2)
        if type(size) is not int or size < 1:
            raise InvalidModelFile(f"size {size!r} is not a positive integer")
        x = self._time_input(call, where, problems, dry)
        if x is None:
            return None
        op = ir.UpSample1D(name=self._op_name(cfg.get("name", entry.get("name")), k), size=size)
        return self._add(op, x, 3, x.features, None if x.timesteps is None else x.timesteps * size)

    def _reshape(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        target = cfg.get("target_shape")
        if not isinstance(target, (list, tuple)) or not all(type(v) is int and (v >= 1 or v == -1) for v in target) \
                or list(target).count(-1) > 1:
            raise InvalidModelFile(f"target_shape {target!r} is not a shape")
        if len(target) not in (1, 2):
            problems.append(f"{where}: target_shape {list(target)} is not (T, C) or (C,)")
        x = self._time_input(call, where, problems, dry, ranks=(2, 3))
        if x is None:
            return None
        if x.rank == 3 and len(target) == 2 and target[1] == x.features and target[0] in (-1, x.timesteps):
            return [x]  # every timestep kept as it is (Reshape((-1, C)) on (T, C)): the identity, of any length
        if x.rank == 3 and x.timesteps is None:
            problems.append(f"{where}: reshaping a sequence needs a fixed number of timesteps "
                            "(the model's input has a variable length)")
            return None
        size = x.features * (x.timesteps if x.rank == 3 else 1)
        known = math.prod(v for v in target if v != -1)
        shape = [size // known if v == -1 else v for v in target]
        if math.prod(shape) != size:
            problems.append(f"{where}: target_shape {list(target)} does not hold the {size} values of a row")
            return None
        name = self._op_name(cfg.get("name", entry.get("name")), k)
        if len(shape) == 1:  # to a vector: Flatten of a sequence, the identity of a vector
            if x.rank == 2:
                return [x]
            return self._add(ir.Flatten(name=name, steps=x.timesteps), x, 2, size, None)
        op = ir.Reshape(name=name, input_steps=x.timesteps if x.rank == 3 else 0, steps=shape[0], features=shape[1])
        return self._add(op, x, 3, shape[1], shape[0])

    def _permute(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        dims = list(cfg.get("dims") or [])
        if dims not in ([2, 1], [1, 2]):
            problems.append(f"{where}: dims={dims} is not supported ((2, 1) or (1, 2) on (batch, T, C))")
        x = self._time_input(call, where, problems, dry)
        if x is None:
            return None
        if dims == [1, 2]:
            return [x]
        if x.timesteps is None:
            problems.append(f"{where}: swapping time and features needs a fixed number of timesteps "
                            "(the model's input has a variable length)")
            return None
        op = ir.Permute(name=self._op_name(cfg.get("name", entry.get("name")), k), steps=x.timesteps)
        return self._add(op, x, 3, x.timesteps, x.features)
