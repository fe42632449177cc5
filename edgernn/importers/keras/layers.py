"""The feed-forward layers: Dense, TimeDistributed (of Dense, Activation or an identity layer),
RepeatVector, Embedding, and the layers that are the identity at inference (Dropout and kin)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from ... import ir
from ...errors import InvalidModelFile
from .graph import _Data, _positive_int

# Layers that are the identity at inference: their output is their input (same tensor, same mask).
_IDENTITY_LAYERS = {
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
}


class _LayerHandlers:
    """Handlers of Dense, TimeDistributed, RepeatVector, Embedding and the identity layers. A mixin of
    ``_Converter``: uses its ``nodes``, ``_data_input``, ``_op_name``, ``_custom``, ``_dtype_problem``,
    ``_fetch``, ``_shape`` and ``_activation``."""

    def _identity(self, entry, call, k, where, problems, dry):
        if dry:
            return None
        x = self._data_input(call, where, problems)
        return [x] if x else None

    def _dense_op(self, cfg, layer: str, part: tuple, x: Optional[_Data], op_name: str, where, problems, dry):
        """ir.Dense from a Dense config; ``kernel`` (features, units) as Keras stores it (x @ kernel)."""
        units, use_bias = _positive_int("units", cfg.get("units")), cfg.get("use_bias", True)
        if cfg.get("lora_rank"):
            problems.append(f"{where}: LoRA-adapted Dense layers are not supported")
        if cfg.get("quantization_config"):
            problems.append(f"{where}: quantized Dense layers are not supported")
        act = self._activation(cfg.get("activation", "linear"), where, problems, elementwise=False)
        if dry or problems or x is None:
            return None
        roles = ["kernel", "bias"] if use_bias else ["kernel"]
        w = self._fetch(layer, part, roles, where)
        if w is None:
            return None
        ok = self._shape(where, "kernel", w["kernel"], (x.features, units))
        if use_bias:
            ok = self._shape(where, "bias", w["bias"], (units,)) and ok
        if not ok:
            return None
        bias = ir.as_weight(w["bias"]) if use_bias else None
        return ir.Dense(name=op_name, kernel=ir.as_weight(w["kernel"]), bias=bias, activation=act)

    def _dense(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        x = None if dry else self._data_input(call, where, problems)
        op = self._dense_op(cfg, name, (), x, name, where, problems, dry)
        if op is None:
            return None
        op = ir.Dense(name=self._op_name(name, k), kernel=op.kernel, bias=op.bias, activation=op.activation)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        # Dense supports masking: the input's mask passes on unchanged.
        return [_Data(op.name, x.rank, op.output_size, x.timesteps, x.mask)]

    def _time_distributed(self, entry, call, k, where, problems, dry):
        """TimeDistributed(Dense) is a Dense over the last axis of (batch, T, F): the same op.
        TimeDistributed of identity or activation layers is that layer."""
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        inner = cfg.get("layer")
        if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
            raise InvalidModelFile("no wrapped layer in the config")
        inner_cls = inner.get("class_name")
        custom = self._custom(inner)
        if custom or inner_cls not in ({"Dense", "Activation"} | _IDENTITY_LAYERS):
            problems.append(f"{where}: TimeDistributed({custom or inner_cls}) is not supported")
            return None
        dtype_problem = self._dtype_problem(inner["config"])
        if dtype_problem:
            problems.append(f"{where}: {dtype_problem}")
        x = None if dry else self._data_input(call, where, problems, ranks=(3,))
        if inner_cls in _IDENTITY_LAYERS:
            return None if dry or x is None else [x]
        if inner_cls == "Activation":
            act = self._activation(inner["config"].get("activation"), where, problems, elementwise=False)
            if dry or x is None or act is None:
                return None
            op = ir.Activation(name=self._op_name(name, k), activation=act)
            self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
            return [_Data(op.name, 3, x.features, x.timesteps, x.mask)]
        # .keras: layers/time_distributed/layer/vars; legacy h5: model_weights/<td name>/...
        op = self._dense_op(inner["config"], name, ("layer",), x, name, where, problems, dry)
        if op is None:
            return None
        op = ir.Dense(name=self._op_name(name, k), kernel=op.kernel, bias=op.bias, activation=op.activation)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, 3, op.output_size, x.timesteps, x.mask)]

    def _repeat_vector(self, entry, call, k, where, problems, dry):
        n = _positive_int("n", entry["config"].get("n"))
        if dry:
            return None
        x = self._data_input(call, where, problems, ranks=(2,))
        if x is None:
            return None
        op = ir.RepeatVector(name=self._op_name(entry["config"].get("name", entry.get("name")), k), n=n)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, 3, x.features, n, None)]

    def _embedding(self, entry, call, k, where, problems, dry):
        """Embedding of a model input's integer codes ``(batch, T)``, T fixed or any (``Input(shape=(None,))``);
        the input becomes an ``int`` ir.Input. ``mask_zero`` adds the mask ``codes != 0``,
        which rides on the output as a Masking mask does (and answers Keras 3's ``not_equal(codes, 0)``)."""
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        vocab, dim = _positive_int("input_dim", cfg.get("input_dim")), _positive_int("output_dim", cfg.get("output_dim"))
        if cfg.get("lora_rank"):
            problems.append(f"{where}: LoRA-adapted Embedding layers are not supported")
        x = None if dry else self._data_input(call, where, problems, ranks=(2,))
        inputs = [i.name for i in self.inputs]
        if x is not None and x.name not in inputs:
            problems.append(f"{where}: reads integer codes from a model input only")
        if dry or problems or x is None:
            return None
        w = self._fetch(name, (), ["embeddings"], where)
        if w is None or not self._shape(where, "embeddings", w["embeddings"], (vocab, dim)):
            return None
        index = inputs.index(x.name)
        self.inputs[index] = dataclasses.replace(self.inputs[index], dtype="int")
        op = ir.Embedding(name=self._op_name(name, k), embeddings=ir.as_weight(w["embeddings"]),
                          mask_zero=bool(cfg.get("mask_zero", False)))
        outputs = (op.name, f"{op.name}:mask") if op.mask_zero else (op.name,)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=outputs))
        if op.mask_zero:
            self.code_masks[x.name] = outputs[1]
        steps = None if x.name in self.any_length else x.features  # the codes' T
        return [_Data(op.name, 3, dim, steps, outputs[1] if op.mask_zero else None)]
