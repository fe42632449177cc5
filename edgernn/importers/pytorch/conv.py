"""The convolutional front-end modules: ``nn.Conv1d``, ``nn.MaxPool1d``/``nn.AvgPool1d``,
``nn.AdaptiveAvgPool1d(1)``/``nn.AdaptiveMaxPool1d(1)`` (global pooling), ``nn.BatchNorm1d``
(eval-mode running statistics), ``nn.Upsample`` (nearest, a whole ``scale_factor``: each timestep
repeated, ``ir.UpSample1D``) and ``nn.Flatten``: read from a module (live, scripted or traced)
into chain records, and built into IR ops.

PyTorch lays these out ``(N, C, T)``; the IR is ``(batch, T, C)``, so a Conv1d weight
``(out, in / groups, k)`` becomes the IR kernel ``(k, in / groups, out)`` and the channel axis
PyTorch normalizes and pools over is the IR's last (feature) axis. Which tensor is laid out how is
followed through the permutes of forward() by :mod:`.forward`.

Padding (:mod:`.._conv`): ``'valid'``/``0`` is the IR's valid, ``'same'`` (stride 1) is Keras's same
(PyTorch puts the smaller half of ``(k-1)*d`` on the left, as TensorFlow does), a symmetric integer
``p`` is same when it equals it (stride 1, ``2p == (k-1)*d``), and ``p == (k-1)*d`` followed in
forward() by ``y[:, :, :-p]`` (the right end sliced off) is causal; any other ``p`` is an
``ir.Pad1D`` and a valid Conv1D. ``nn.ConstantPad1d``/``nn.ZeroPad1d`` and ``F.pad`` of zeros are a
Pad1D, which the Conv1d after it takes as its padding where that is exact (``(k-1)*d`` on the left
only: causal). ``padding_mode`` other than ``'zeros'`` is refused. MaxPool1d's padding (``-inf``)
converts where it is Keras's same (stride 1, ``2p == k - 1``), AvgPool1d's with
``count_include_pad=True`` as a Pad1D and a valid pooling, with ``False`` where it is same.

A traced TorchScript module keeps no Python attributes; its options are read from the code text
PyTorch stores with it (``torch._convolution(x, weight, bias, [s], [p], [d], False, [0], g, ...)``,
``torch.max_pool1d(x, [k], [s], [p], [d], ceil)``, ...), as text only, never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ... import ir
from .._conv import batch_norm, conv_ops, pool_ops

CONV_CLASSES = {"Conv1d"}
POOL_CLASSES = {"MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d"}
NORM_CLASSES = {"BatchNorm1d"}
FLATTEN_CLASSES = {"Flatten"}
PAD_CLASSES = {"ConstantPad1d", "ZeroPad1d"}
UPSAMPLE_CLASSES = {"Upsample"}
FRONT_END_CLASSES = CONV_CLASSES | POOL_CLASSES | NORM_CLASSES | FLATTEN_CLASSES | PAD_CLASSES | UPSAMPLE_CLASSES


@dataclass
class _Conv:
    path: str
    weight: np.ndarray  # (out, in / groups, k), as PyTorch stores it
    bias: Optional[np.ndarray]
    stride: int
    padding: object  # an int (zeros on both ends), "valid" or "same"
    dilation: int
    groups: int
    causal: bool = False  # padding (k-1)*d with the right end sliced off in forward()

    @property
    def input_size(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def output_size(self) -> int:
        return int(self.weight.shape[0])

    @property
    def span(self) -> int:
        return (int(self.weight.shape[2]) - 1) * self.dilation + 1


@dataclass
class _Pool:
    path: str
    kind: str  # "max" or "average"
    size: int = 1  # unused when global_pool
    stride: int = 1
    global_pool: bool = False
    padding: int = 0  # on both ends: -inf for max, zeros for average
    pads_counted: bool = True  # AvgPool1d's count_include_pad


@dataclass
class _Pad:
    """Zeros on the time axis of ``(N, C, T)``, ``left`` before and ``right`` after (negative counts
    crop): ``nn.ConstantPad1d((left, right), 0.0)``/``nn.ZeroPad1d``, ``F.pad(x, (left, right))``."""

    path: str
    left: int
    right: int


@dataclass
class _Upsample:
    """``nn.Upsample(scale_factor=size, mode="nearest")`` of ``(N, C, T)``: each timestep repeated
    ``size`` times (PyTorch's nearest source index ``floor(t' / size)`` for a whole ``size``)."""

    path: str
    size: int


@dataclass
class _Norm:
    """BatchNorm1d at inference: ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel."""

    path: str
    mean: np.ndarray
    var: np.ndarray
    eps: float
    weight: Optional[np.ndarray]
    bias: Optional[np.ndarray]

    @property
    def input_size(self) -> int:
        return int(self.mean.shape[0])

    output_size = input_size


@dataclass
class _Flatten:
    """``(N, C, T) -> (N, C * T)`` (``channel_major``: PyTorch's order ``c * T + t``) or
    ``(N, T, C) -> (N, T * C)`` (the IR's Flatten order); made by :mod:`.forward` where forward()
    flattens a sequence (``nn.Flatten``, ``torch.flatten``, ``x.view(x.size(0), -1)``)."""

    path: str
    channel_major: bool


@dataclass
class _Unread:
    """A traced front-end module whose options its code does not show."""

    path: str
    message: str


def _one(value):
    """PyTorch keeps 1-D options as 1-tuples (``kernel_size=(3,)``)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return value[0]
    return value


def _code_args(module, function: str) -> Optional[list[str]]:
    """The arguments (as text) of the first ``torch.<function>(...)`` in a traced module's code."""
    try:
        code = module.code or ""
    except Exception:  # noqa: BLE001 - not TorchScript, or no code
        return None
    match = re.search(rf"torch\.{function}\((.*)\)", code)
    if not match:
        return None
    return [a.strip() for a in re.split(r",(?![^\[]*\])", match.group(1))]


def _literal(text: str):
    """A constant of a traced module's code: ``[2]`` -> 2, ``False``, ``1e-05``, ``"same"``."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        items = [_literal(t) for t in text[1:-1].split(",") if t.strip()]
        return items[0] if len(items) == 1 else tuple(items)
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        return float(text)


def _traced_options(module, cls: str) -> Optional[dict]:
    """A traced module's options, from the code text stored with it (None if it is not there)."""
    if cls == "Conv1d":
        args = _code_args(module, "_convolution")
        if args and len(args) >= 9:  # input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
            if _literal(args[6]):
                return None
            return dict(stride=_literal(args[3]), padding=_literal(args[4]), dilation=_literal(args[5]),
                        groups=_literal(args[8]), padding_mode="zeros")
        args = _code_args(module, "conv1d")  # padding="same"/"valid" traces as torch.conv1d(x, w, b, s, p, d, g)
        if args and len(args) >= 7:
            return dict(stride=_literal(args[3]), padding=_literal(args[4]), dilation=_literal(args[5]),
                        groups=_literal(args[6]), padding_mode="zeros")
        return None
    if cls in ("MaxPool1d", "AvgPool1d"):
        args = _code_args(module, "max_pool1d" if cls == "MaxPool1d" else "avg_pool1d")
        if not args or len(args) < 3:
            return None
        values = [_literal(a) for a in args[1:]]
        names = (["kernel_size", "stride", "padding", "dilation", "ceil_mode"] if cls == "MaxPool1d"
                 else ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"])
        return dict(zip(names, values))
    if cls in ("AdaptiveAvgPool1d", "AdaptiveMaxPool1d"):
        args = _code_args(module, "adaptive_avg_pool1d" if "Avg" in cls else "adaptive_max_pool1d")
        return None if not args or len(args) < 2 else dict(output_size=_literal(args[1]))
    if cls == "BatchNorm1d":
        args = _code_args(module, "batch_norm")
        if not args or len(args) < 8:
            return None
        # batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
        return dict(eps=_literal(args[7]), training=_literal(args[5]),
                    track_running_stats=args[3] != "None")
    if cls in PAD_CLASSES:  # torch.pad(x, [left, right], "constant", 0.) or torch.constant_pad_nd(x, [l, r], 0.)
        args, at = _code_args(module, "pad"), 3
        if not args:
            args, at = _code_args(module, "constant_pad_nd"), 2
        if not args or len(args) < 2 or (at == 3 and len(args) > 2 and _literal(args[2]) != "constant"):
            return None
        return dict(padding=_literal(args[1]), value=_literal(args[at]) if len(args) > at else 0.0)
    if cls == "Upsample":  # torch.upsample_nearest1d(x, output_size, [scale]); other modes trace to other calls
        args = _code_args(module, "upsample_nearest1d")
        if not args or len(args) < 3:
            return None
        return dict(size=_literal(args[1]), scale_factor=_literal(args[2]), mode="nearest")
    if cls == "Flatten":
        args = _code_args(module, "flatten")
        if not args:
            return None
        return dict(start_dim=_literal(args[1]) if len(args) > 1 else 0,
                    end_dim=_literal(args[2]) if len(args) > 2 else -1)
    return None


_DEFAULTS = {
    "Conv1d": ("stride", "padding", "dilation", "groups", "padding_mode"),
    "MaxPool1d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "AvgPool1d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "AdaptiveAvgPool1d": ("output_size",),
    "AdaptiveMaxPool1d": ("output_size", "return_indices"),
    "BatchNorm1d": ("eps", "track_running_stats"),
    "Flatten": ("start_dim", "end_dim"),
    "ConstantPad1d": ("padding", "value"),
    "ZeroPad1d": ("padding", "value"),
    "Upsample": ("size", "scale_factor", "mode"),
}


def front_end_layer(module, cls: str, path: str, where: str, attr, numpy, problems: list[str]):
    """The chain record of front-end module ``module`` (class ``cls``); None (+ problems) if refused.

    ``attr(module, name)`` reads an attribute (None where TorchScript has none), ``numpy`` a tensor.
    """
    options = {name: attr(module, name) for name in _DEFAULTS[cls]}
    if all(value is None for value in options.values()):
        traced = _traced_options(module, cls)
        if traced is None:  # refused if forward() calls it (a traced module forward() never calls has no code)
            return _Unread(path, f"{where}: its options could not be read (a traced module whose code has no "
                                 "recognisable call)")
        options.update(traced)
    count = len(problems)
    if cls == "Conv1d":
        weight, bias = attr(module, "weight"), attr(module, "bias")
        if options.get("padding_mode", "zeros") not in ("zeros", None):
            problems.append(f"{where}: padding_mode={options['padding_mode']!r} is not supported (zeros only)")
        padding = _one(options["padding"])
        if isinstance(padding, (list, tuple)):
            problems.append(f"{where}: padding={padding!r} is not supported (one int, 'valid' or 'same')")
        elif padding == 0:
            padding = "valid"
        w = numpy(weight)
        if w.ndim != 3:
            problems.append(f"{where}: weight of shape {w.shape} is not (out, in / groups, kernel_size)")
        if len(problems) > count:
            return None
        return _Conv(path, w, None if bias is None else numpy(bias), int(_one(options["stride"])), padding,
                     int(_one(options["dilation"])), int(options["groups"]))
    if cls in ("MaxPool1d", "AvgPool1d"):
        size = int(_one(options["kernel_size"]))
        stride = _one(options.get("stride"))
        stride = size if stride in (None, ()) else int(stride)
        padding = int(_one(options.get("padding") or 0))
        kind = "max" if cls == "MaxPool1d" else "average"
        counted = options.get("count_include_pad") is not False  # PyTorch's default True; max: unused
        why = pool_ops(path, kind, size, stride, padding, padding, counted)
        if isinstance(why, str):
            problems.append(f"{where}: padding={padding}" + ("" if kind == "max" else f" with count_include_pad="
                                                            f"{counted}") + f" is not supported: {why}")
        if _one(options.get("dilation") or 1) != 1:
            problems.append(f"{where}: dilation={_one(options['dilation'])} is not supported")
        if options.get("ceil_mode"):
            problems.append(f"{where}: ceil_mode=True is not supported")
        if options.get("return_indices"):
            problems.append(f"{where}: return_indices=True is not supported")
        if len(problems) > count:
            return None
        return _Pool(path, kind, size, stride, padding=padding, pads_counted=counted)
    if cls in ("AdaptiveAvgPool1d", "AdaptiveMaxPool1d"):
        if _one(options["output_size"]) != 1:
            problems.append(f"{where}: output_size={options['output_size']!r} is not supported (1 only: global "
                            "pooling)")
        if options.get("return_indices"):
            problems.append(f"{where}: return_indices=True is not supported")
        if len(problems) > count:
            return None
        return _Pool(path, "max" if "Max" in cls else "average", global_pool=True)
    if cls == "BatchNorm1d":
        buffers = dict(module.named_buffers(recurse=False))
        mean, var = buffers.get("running_mean"), buffers.get("running_var")
        if options.get("track_running_stats") is False or mean is None or var is None:
            problems.append(f"{where}: track_running_stats=False normalizes with each batch's own statistics, "
                            "which edgernn cannot do; only running statistics are supported")
            return None
        weight, bias = attr(module, "weight"), attr(module, "bias")
        return _Norm(path, numpy(mean), numpy(var), float(options["eps"]),
                     None if weight is None else numpy(weight), None if bias is None else numpy(bias))
    if cls in PAD_CLASSES:
        padding = options["padding"]
        padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        if len(padding) != 2 or (options.get("value") or 0) != 0:
            problems.append(f"{where}: padding={options['padding']!r} with value={options.get('value')!r} is not "
                            "supported (zeros, (left, right) of the time axis)")
            return None
        return _Pad(path, int(padding[0]), int(padding[1]))
    if cls == "Upsample":
        scale, mode = _one(options.get("scale_factor")), options.get("mode")
        # nearest (and nearest-exact, the same for a whole scale) repeats each timestep `scale` times
        if options.get("size") is not None or mode not in ("nearest", "nearest-exact") or scale is None \
                or float(scale) != int(scale) or int(scale) < 1:
            problems.append(f"{where}: size={options.get('size')!r}, scale_factor={options.get('scale_factor')!r}, "
                            f"mode={mode!r} is not supported (mode='nearest' with a whole scale_factor: each "
                            "timestep repeated)")
            return None
        return _Upsample(path, int(scale))
    # Flatten: applied by .forward, which knows the layout of what it flattens.
    return {"start_dim": int(options["start_dim"]), "end_dim": int(options["end_dim"])}


# --- IR ----------------------------------------------------------------------------------------


def conv_ops_of(layer: _Conv) -> list:
    """The IR ops of ``layer``: a Conv1D, with a Pad1D before it where its padding is none of the IR's
    (:func:`.._conv.conv_ops`). PyTorch's ``'same'`` (stride 1 only) puts the smaller half on the left,
    as Keras's does; a causal one (padded ``(k-1)*d``, the right end sliced off) pads the left only."""
    span, p = layer.span, layer.padding
    if layer.causal:
        left, right = span - 1, 0
    elif p == "same":
        left, right = ir.same_padding(1, span, 1)
    elif p == "valid":
        left, right = 0, 0
    else:
        left = right = int(p)
    return conv_ops(layer.path or "conv", layer.weight, layer.bias, layer.stride, layer.dilation, layer.groups,
                    left, right)


def norm_op(layer: _Norm) -> ir.Affine:
    return batch_norm(layer.path or "batch_norm", layer.mean, layer.var, layer.eps, layer.weight, layer.bias)


def pool_ops_of(layer: _Pool) -> list:
    if layer.global_pool:
        return [ir.Pooling1D(layer.path or "pool", layer.kind, global_pool=True)]
    # refused when read (front_end_layer) where pool_ops has no ops
    return pool_ops(layer.path or "pool", layer.kind, layer.size, layer.stride, layer.padding, layer.padding,
                    layer.pads_counted)
