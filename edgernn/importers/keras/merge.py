"""Multi-branch graphs: the merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum) and
Concatenate, over the features or over time. They run in ``predict``; a stream refuses them.

Masks: Keras ANDs the masks of a merge's inputs (an input without one counts as all kept). When
the masked inputs all carry one mask, that AND is the mask itself and passes on; inputs with
different masks are refused (the IR has no AND of masks), as is a masked input to a
concatenation over time (Keras joins the masks along time there).
"""

from __future__ import annotations

from ... import ir
from .graph import _Data

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
        masks = {x.mask for x in xs} - {None}
        if len(masks) > 1:
            problems.append(f"{where}: inputs with different masks (after different Masking layers) are not supported")
        if len({x.rank for x in xs}) != 1:
            problems.append(f"{where}: inputs of different ranks {[x.rank for x in xs]} are not supported")
        return None if problems else xs

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
        return self._emit(op, xs, xs[0].rank, xs[0].features, steps, next(iter({x.mask for x in xs} - {None}), None))

    def _concatenate(self, entry, call, k, where, problems, dry):
        axis = entry["config"].get("axis", -1)
        if dry:
            return None
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
                          next(iter(masks), None))
