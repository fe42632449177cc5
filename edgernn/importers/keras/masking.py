"""Masks: the Masking layer, the ``keras.ops`` nodes (not_equal, any) by which Keras 3 writes a
Masking mask into a functional config, and the mask an RNN call uses. Both forms of one mask over one
tensor share a single ``ir.Masking`` node."""

from __future__ import annotations

from typing import Optional

from ... import ir
from .graph import NO_MASK, _Call, _Data, _MaskColumns, _MaskExpr


class _MaskHandlers:
    """Handlers of Masking and of the keras.ops mask nodes, and the mask an RNN call uses
    (``_explicit_mask``). A mixin of ``_Converter``: uses its ``maskings``, ``nodes``,
    ``_data_input`` and ``_op_name``."""

    def _masking_node(self, x: _Data, value: float, name: str) -> tuple[str, str]:
        """One ir.Masking node per (input, mask_value): the Masking layer and Keras 3's
        not_equal/any mask ops over the same tensor share it. Returns (masked data, mask) names."""
        key = (x.name, float(value))
        if key not in self.maskings:
            op = ir.Masking(name=self._op_name(name, 0), mask_value=float(value))
            outs = (op.name, f"{op.name}:mask")
            self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=outs))
            self.maskings[key] = outs
        return self.maskings[key]

    def _explicit_mask(self, call: _Call, x: _Data, where: str, problems: list[str]) -> Optional[str]:
        """The mask an RNN call uses: Keras 3 functional configs name it (``kwargs["mask"]``, built
        from not_equal/any ops); otherwise the one riding on the input (Keras's propagation)."""
        if call.mask is None:
            return x.mask
        if call.mask is NO_MASK:  # Keras 3's all-True mask of a Concatenate with an unmasked input
            return None
        if isinstance(call.mask, _MaskExpr) and call.mask.done:
            return self._masking_node(call.mask.source, call.mask.value, f"{call.mask.source.name}_mask")[1]
        if (isinstance(call.mask, _MaskExpr) and call.mask.value == 0 and call.mask.source.rank == 2
                and call.mask.source.name in self.code_masks):  # not_equal(codes, 0): Embedding(mask_zero)
            return self.code_masks[call.mask.source.name]
        problems.append(f"{where}: an explicit mask argument that is not a Masking mask is not supported")
        return None

    def _masking(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        value = cfg.get("mask_value", 0.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{where}: mask_value {value!r} is not a number")
            return None
        if dry:
            return None
        x = self._data_input(call, where, problems, ranks=(3,))
        if x is None:
            return None
        data, mask = self._masking_node(x, value, cfg.get("name", entry.get("name")))
        # Masking replaces any incoming mask with its own.
        return [_Data(data, 3, x.features, x.timesteps, mask)]

    def _not_equal(self, entry, call, k, where, problems, dry):
        """keras.ops.not_equal(x, mask_value): the first half of a Masking mask in a Keras 3 graph."""
        if dry:
            return None
        if len(call.inputs) == 2 and isinstance(call.inputs[0], _Data) and isinstance(call.inputs[1], (int, float)):
            return [_MaskExpr(call.inputs[0], float(call.inputs[1]), done=False)]
        problems.append(f"{where}: keras.ops.not_equal is supported only as part of a Masking mask")
        return None

    def _logical_or(self, entry, call, k, where, problems, dry):
        """keras.ops.logical_or(m, m): Keras 3's mask of a merge whose inputs carry one mask (the OR of
        the inputs' masks): that mask itself. Or, in a Concatenate's mask, ``logical_or(expand_dims(m,
        -1), zeros_like(x))``: ``m`` laid over the features of ``x`` (:class:`_MaskColumns`)."""
        if dry:
            return None
        masks = call.inputs
        if len(masks) == 2 and all(isinstance(m, _MaskExpr) and m.done for m in masks) and masks[0] == masks[1]:
            return [masks[0]]
        if (len(masks) == 2 and all(isinstance(m, _MaskColumns) for m in masks)
                and sorted(m.stage for m in masks) == ["expanded", "zeros"]):
            return [_MaskColumns(next(m.masks for m in masks if m.stage == "expanded"), "columns")]
        problems.append(f"{where}: keras.ops.logical_or is supported only between one Masking mask and itself")
        return None

    def _any(self, entry, call, k, where, problems, dry):
        """keras.ops.any(not_equal(x, v), axis=-1): a Masking mask, (batch, T), True = real step. Or
        the end of a Concatenate's mask (:class:`_MaskColumns`): all True with an unmasked input
        (:data:`NO_MASK`), else the OR of the inputs' masks -- their one mask when they share it (the
        IR has no OR of different masks)."""
        cfg = entry["config"]
        if dry:
            return None
        x = call.inputs[0] if len(call.inputs) == 1 else None
        over_features = cfg.get("axis") in (-1, 2) and not cfg.get("keepdims")
        if isinstance(x, _MaskExpr) and not x.done and over_features:
            return [_MaskExpr(x.source, x.value, done=True)]
        if isinstance(x, _MaskColumns) and x.stage == "joined" and over_features:
            if None in x.masks:
                return [NO_MASK]
            if len(set(x.masks)) == 1:
                return [x.masks[0]]
            problems.append(f"{where}: the mask of a Concatenate of inputs with different masks (their OR) is not "
                            "supported")
            return None
        problems.append(f"{where}: keras.ops.any is supported only as part of a Masking mask")
        return None

    def _expand_dims(self, entry, call, k, where, problems, dry):
        """keras.ops.expand_dims(mask, -1): the first node of a mask laid over a Concatenate input's features."""
        if dry:
            return None
        m = call.inputs[0] if len(call.inputs) == 1 else None
        if _is_mask(m, self.code_masks) and entry["config"].get("axis") in (-1, 2):
            return [_MaskColumns((m,), "expanded")]
        problems.append(f"{where}: keras.ops.expand_dims is supported only as part of a Concatenate's mask")
        return None

    def _mask_fill(self, entry, call, k, where, problems, dry):
        """keras.ops.zeros_like(x, "bool") / ones_like(x, "bool") in a Concatenate's mask: no mask to lay
        over ``x``'s features, or the all-True mask of an unmasked input."""
        if dry:
            return None
        if entry["config"].get("dtype") == "bool" and len(call.inputs) == 1 and isinstance(call.inputs[0], _Data):
            zeros = entry["class_name"] == "ZerosLike"
            return [_MaskColumns((), "zeros") if zeros else _MaskColumns((None,), "columns")]
        problems.append(f"{where}: keras.ops.{'zeros' if entry['class_name'] == 'ZerosLike' else 'ones'}_like is "
                        "supported only as part of a Concatenate's mask")
        return None


def _is_mask(value, code_masks: dict) -> bool:
    """Whether ``value`` is a whole mask: a Masking mask (not_equal then any), or an
    Embedding(mask_zero)'s ``not_equal(codes, 0)``."""
    if not isinstance(value, _MaskExpr):
        return False
    return value.done or (value.value == 0 and value.source.rank == 2 and value.source.name in code_masks)
