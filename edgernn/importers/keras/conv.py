"""The convolutional front-end layers: Conv1D, DepthwiseConv1D and SeparableConv1D (as Conv1D ops
with groups), MaxPooling1D, AveragePooling1D, GlobalMaxPooling1D, GlobalAveragePooling1D,
BatchNormalization (inference: an ir.Affine, which :mod:`edgernn.importers._fold` folds into a
Conv1D or Dense right before it) and Flatten (of a
sequence of a fixed length; of a vector it is the identity).

They run in ``predict``, and stream where causal (``graph.streamable_problem`` refuses ``padding="same"``
and Flatten over time by name; :mod:`edgernn.kernels.window` is their streaming step). Options edgernn
cannot run exactly are refused by name: ``data_format="channels_first"``, pooling's
``keepdims=True``, BatchNormalization over another axis than the features or with
``renorm``/``synchronized``, Conv1D after a Masking layer (Keras drops the mask there; edgernn
refuses rather than guess).
"""

from __future__ import annotations

import numpy as np

from ... import ir
from .._conv import batch_norm
from .graph import _Data, _positive_int


def _one_int(name: str, value):
    """Keras 3 writes ``kernel_size`` (and kin) as ``[3]``, Keras 2 as ``[3]`` or ``3``."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return _positive_int(name, value)


def _steps(x: _Data, op) -> int | None:
    return None if x.timesteps is None else op.output_steps(x.timesteps)


class _ConvHandlers:
    """Handlers of the convolutional front-end layers. A mixin of ``_Converter``: uses its ``nodes``,
    ``_data_input``, ``_op_name``, ``_fetch``, ``_shape`` and ``_activation``."""

    def _channels_last(self, cfg, where, problems):
        if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
            problems.append(f"{where}: data_format={cfg.get('data_format')!r} is not supported (channels_last only)")

    def _no_mask(self, x, where, problems) -> bool:
        if x is not None and x.mask is not None:
            problems.append(f"{where}: a masked input (after Masking) is not supported by this layer")
            return False
        return True

    def _add(self, op, x: _Data, rank: int, features: int, steps):
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, rank, features, steps, None)]

    def _conv1d(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        filters = _positive_int("filters", cfg.get("filters"))
        size = _one_int("kernel_size", cfg.get("kernel_size"))
        strides = _one_int("strides", cfg.get("strides", 1))
        dilation = _one_int("dilation_rate", cfg.get("dilation_rate", 1))
        groups = _positive_int("groups", cfg.get("groups", 1))
        padding = cfg.get("padding", "valid")
        if padding not in ir.CONV_PADDINGS:
            problems.append(f"{where}: padding={padding!r} is not supported (valid, causal, same)")
        self._channels_last(cfg, where, problems)
        if cfg.get("lora_rank"):
            problems.append(f"{where}: LoRA-adapted Conv1D layers are not supported")
        act = self._activation(cfg.get("activation", "linear"), where, problems)
        x = None if dry else self._data_input(call, where, problems, ranks=(3,))
        self._no_mask(x, where, problems)
        if dry or problems or x is None:
            return None
        use_bias = cfg.get("use_bias", True)
        w = self._fetch(name, (), ["kernel", "bias"] if use_bias else ["kernel"], where)
        if w is None:
            return None
        if x.features % groups:
            problems.append(f"{where}: {x.features} input features are not a multiple of groups={groups}")
            return None
        ok = self._shape(where, "kernel", w["kernel"], (size, x.features // groups, filters))
        if use_bias:
            ok = self._shape(where, "bias", w["bias"], (filters,)) and ok
        if not ok:
            return None
        op = ir.Conv1D(name=self._op_name(name, k), kernel=ir.as_weight(w["kernel"]),
                       bias=ir.as_weight(w["bias"]) if use_bias else None, strides=strides, padding=padding,
                       dilation_rate=dilation, groups=groups, activation=act)
        return self._add(op, x, 3, filters, _steps(x, op))

    def _depthwise_conv1d(self, entry, call, k, where, problems, dry):
        """DepthwiseConv1D: a Conv1D with ``groups = C`` (filter ``c * M + m`` of group c is Keras's
        ``kernel[:, c, m]``, M the depth multiplier). SeparableConv1D: that depthwise convolution
        (``<name>/depthwise``, no bias, linear) then a pointwise Conv1D of kernel size 1 with the bias
        and the activation, as Keras computes it."""
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        separable = entry["class_name"] == "SeparableConv1D"
        size = _one_int("kernel_size", cfg.get("kernel_size"))
        strides = _one_int("strides", cfg.get("strides", 1))
        dilation = _one_int("dilation_rate", cfg.get("dilation_rate", 1))
        multiplier = _positive_int("depth_multiplier", cfg.get("depth_multiplier", 1))
        filters = _positive_int("filters", cfg.get("filters")) if separable else None
        padding = cfg.get("padding", "valid")
        if padding not in ir.CONV_PADDINGS:
            problems.append(f"{where}: padding={padding!r} is not supported (valid, causal, same)")
        self._channels_last(cfg, where, problems)
        act = self._activation(cfg.get("activation", "linear"), where, problems)
        x = None if dry else self._data_input(call, where, problems, ranks=(3,))
        self._no_mask(x, where, problems)
        if dry or problems or x is None:
            return None
        use_bias, channels = cfg.get("use_bias", True), x.features
        depthwise = "depthwise_kernel" if separable or self.major < 3 else "kernel"  # Keras 3 Depthwise: "kernel"
        roles = [depthwise] + (["pointwise_kernel"] if separable else []) + (["bias"] if use_bias else [])
        w = self._fetch(name, (), roles, where)
        if w is None:
            return None
        width = channels * multiplier
        ok = self._shape(where, depthwise, w[depthwise], (size, channels, multiplier))
        if separable:
            ok = self._shape(where, "pointwise_kernel", w["pointwise_kernel"], (1, width, filters)) and ok
        if use_bias:
            ok = self._shape(where, "bias", w["bias"], (filters if separable else width,)) and ok
        if not ok:
            return None
        bias = ir.as_weight(w["bias"]) if use_bias else None
        op_name = self._op_name(name, k)
        op = ir.Conv1D(name=f"{op_name}/depthwise" if separable else op_name,
                       kernel=ir.as_weight(w[depthwise].reshape(size, 1, width)), bias=None if separable else bias,
                       strides=strides, padding=padding, dilation_rate=dilation, groups=channels,
                       activation="linear" if separable else act)
        out = self._add(op, x, 3, width, _steps(x, op))
        if not separable:
            return out
        point = ir.Conv1D(name=op_name, kernel=ir.as_weight(w["pointwise_kernel"]), bias=bias, activation=act)
        return self._add(point, out[0], 3, filters, out[0].timesteps)

    def _pooling1d(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        cls = entry.get("class_name")
        kind = "max" if "Max" in cls else "average"
        name = cfg.get("name", entry.get("name"))
        self._channels_last(cfg, where, problems)
        if cls.startswith("Global"):
            if cfg.get("keepdims"):
                problems.append(f"{where}: keepdims=True is not supported")
            op_args = {"global_pool": True}
        else:
            size = _one_int("pool_size", cfg.get("pool_size", 2))
            strides = cfg.get("strides")
            strides = size if strides is None else _one_int("strides", strides)
            padding = cfg.get("padding", "valid")
            if padding not in ir.POOL_PADDINGS:
                problems.append(f"{where}: padding={padding!r} is not supported (valid, same)")
            op_args = {"pool_size": size, "strides": strides, "padding": padding}
        x = None if dry else self._data_input(call, where, problems, ranks=(3,))
        self._no_mask(x, where, problems)
        if dry or problems or x is None:
            return None
        op = ir.Pooling1D(name=self._op_name(name, k), kind=kind, **op_args)
        if op.global_pool:
            return self._add(op, x, 2, x.features, None)
        return self._add(op, x, 3, x.features, _steps(x, op))

    def _batch_normalization(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        axis = cfg.get("axis", -1)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        for option in ("renorm", "synchronized"):
            if cfg.get(option):
                problems.append(f"{where}: {option}=True is not supported")
        epsilon = cfg.get("epsilon", 1e-3)
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= 0:
            problems.append(f"{where}: epsilon {epsilon!r} is not a non-negative number")
        x = None if dry else self._data_input(call, where, problems)
        if x is not None and axis not in (-1, x.rank - 1):
            problems.append(f"{where}: axis={axis!r} is not supported (the last, feature axis only)")
        if dry or problems or x is None:
            return None
        center, scale = cfg.get("center", True), cfg.get("scale", True)
        roles = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean", "moving_variance"]
        w = self._fetch(name, (), roles, where)
        if w is None or not all(self._shape(where, role, w[role], (x.features,)) for role in roles):
            return None
        with np.errstate(all="ignore"):  # a negative variance: NaN, which the IR refuses
            op = batch_norm(self._op_name(name, k), w["moving_mean"], w["moving_variance"], float(epsilon),
                            w["gamma"] if scale else None, w["beta"] if center else None)
        # BatchNormalization supports masking: the mask passes on unchanged.
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, x.rank, x.features, x.timesteps, x.mask)]

    def _flatten(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        self._channels_last(cfg, where, problems)
        x = None if dry else self._data_input(call, where, problems)
        self._no_mask(x, where, problems)
        if x is not None and x.rank == 3 and x.timesteps is None:
            problems.append(f"{where}: flattening a sequence needs a fixed number of timesteps "
                            "(the model's input has a variable length)")
        if dry or problems or x is None:
            return None
        if x.rank == 2:
            return [x]
        op = ir.Flatten(name=self._op_name(cfg.get("name", entry.get("name")), k), steps=x.timesteps)
        return self._add(op, x, 2, x.timesteps * x.features, None)
