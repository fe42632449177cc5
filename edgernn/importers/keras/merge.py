"""Multi-branch graphs: the merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum) and
Concatenate, over the features or over time. They run in ``predict``; a stream refuses them.

Masks differ between Keras versions. tf-keras ANDs the masks of the inputs that have one
(``backend.all``); Keras 3 ORs them, and a merge with an unmasked input has no mask
(``base_merge.compute_mask``; Concatenate's OR with an unmasked input's all-True mask is all True).
So when the masked inputs all carry one mask, the merge's mask is that mask (Keras 2), or that mask
if every input carries it and none otherwise (Keras 3); inputs with different masks are refused
(the IR has no AND or OR of masks), as is a masked input to a concatenation over time. Keras 3's
functional configs record a Concatenate's mask as keras.ops nodes (``masking.py`` follows them:
:class:`~.graph._MaskColumns`), which the RNN after it reads.
"""

from __future__ import annotations

from ... import ir
from .graph import _Data, _MaskColumns

_MERGE_LAYERS = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Average": "average",
                 "Maximum": "maximum", "Minimum": "minimum"}


class _MergeHandlers:
    """Handlers of the merge layers and Concatenate. A mixin of ``_Converter``: uses its ``nodes``,
    ``_use`` and ``_op_name``."""

    def _merge_inputs(self, call, where, problems) -> list[_Data] | None:
        """The data inputs of a merge (two or more, one rank and one mask), or None (problems recorded)."""
        xs = []
        for value in call.inputs:
            if not isinstance(value, _Data):
                self._use(value, f"input of {where}")
                return None
            xs.append(value)
        if len(xs) < 2:
            problems.append(f"{where}: takes two or more inputs, gets {len(xs)}")
            return None
        if len({x.mask for x in xs} - {None}) > 1 and not (self.major >= 3 and self._merged_mask(xs) is None):
            problems.append(f"{where}: inputs with different masks (after different Masking layers) are not supported")
        if len({x.rank for x in xs}) != 1:
            problems.append(f"{where}: inputs of different ranks {[x.rank for x in xs]} are not supported")
        return None if problems else xs

    def _merged_mask(self, xs: list[_Data]):
        """The mask of a merge of ``xs`` (see the module docstring), when their masks allow one."""
        masks = [x.mask for x in xs]
        if self.major >= 3 and None in masks:
            return None  # Keras 3: an unmasked input makes the OR all True
        return next((m for m in masks if m is not None), None)

    def _emit(self, op, xs: list[_Data], rank: int, features: int, steps, mask) -> list:
        self.nodes.append(ir.Node(op=op, inputs=tuple(x.name for x in xs), outputs=(op.name,)))
        return [_Data(op.name, rank, features, steps, mask)]

    def _merge(self, entry, call, k, where, problems, dry):
        if dry:
            return None
        xs = self._merge_inputs(call, where, problems)
        if xs is None:
            return None
        if len({x.features for x in xs}) != 1:
            problems.append(f"{where}: inputs of different sizes {[x.features for x in xs]} (broadcasting) "
                            "are not supported")
            return None
        mode = _MERGE_LAYERS[entry["class_name"]]
        if mode == "subtract" and len(xs) != 2:
            problems.append(f"{where}: takes exactly two inputs, gets {len(xs)}")
            return None
        op = ir.Merge(name=self._op_name(entry["config"].get("name", entry.get("name")), k), mode=mode)
        steps = next((x.timesteps for x in xs if x.timesteps is not None), None)
        return self._emit(op, xs, xs[0].rank, xs[0].features, steps, self._merged_mask(xs))

    def _concatenate(self, entry, call, k, where, problems, dry):
        axis = entry["config"].get("axis", -1)
        if dry:
            return None
        if call.inputs and all(isinstance(v, _MaskColumns) and v.stage == "columns" for v in call.inputs):
            if axis not in (-1, 2):
                problems.append(f"{where}: a mask concatenated over axis {axis!r} is not supported")
                return None
            return [_MaskColumns(tuple(m for v in call.inputs for m in v.masks), "joined")]  # Keras 3's mask of one
        xs = self._merge_inputs(call, where, problems)
        if xs is None:
            return None
        rank = xs[0].rank
        if axis in (-1, rank - 1):
            over = "features"
        elif axis == 1 and rank == 3:
            over = "time"
        else:
            problems.append(f"{where}: axis={axis!r} is not supported (the features, or time for sequences)")
            return None
        name = self._op_name(entry["config"].get("name", entry.get("name")), k)
        masks = {x.mask for x in xs} - {None}
        if over == "time":
            if masks:
                problems.append(f"{where}: concatenating masked sequences over time is not supported")
            if len({x.features for x in xs}) != 1:
                problems.append(f"{where}: sequences of different sizes {[x.features for x in xs]} cannot join over time")
            if problems:
                return None
            lengths = [x.timesteps for x in xs]
            steps = None if None in lengths else sum(lengths)
            return self._emit(ir.Concatenate(name=name, axis="time"), xs, 3, xs[0].features, steps, None)
        steps = next((x.timesteps for x in xs if x.timesteps is not None), None)
        return self._emit(ir.Concatenate(name=name, axis="features"), xs, rank, sum(x.features for x in xs), steps,
                          self._merged_mask(xs))
