"""The convolutional front-end ops, 1-D: ``Conv``, ``MaxPool``, ``AveragePool``,
``GlobalAveragePool``, ``GlobalMaxPool`` and ``BatchNormalization`` (inference), on tensors laid
out ``(batch, channels, T)`` as ONNX (and PyTorch) lay them out; the channels are the canonical
tensor's features, so the IR ops (``Conv1D``, ``Pooling1D``, ``Affine``) read them batch first,
time, features, whatever the ONNX layout. ``Transpose``, ``Flatten``/``Squeeze`` of the unit axis a
global pooling leaves, and activations between them are layout ops and activations as elsewhere.

Conv: a weight ``(out, in / group, k)`` becomes the IR kernel ``(k, in / group, out)``; pads
``(0, 0)`` (or ``auto_pad=VALID``) are valid, ``(span - 1, 0)`` causal (and ``(span - 1, span - 1)``
followed by a ``Slice [0:-(span - 1)]`` of the time axis, PyTorch's causal Conv1d: :meth:`_causal_slice`), ``auto_pad=SAME_UPPER`` or
pads ``((span - 1) // 2, span // 2)`` at stride 1 (the smaller half on the left) Keras's same; any other pads are refused (the IR
has no op for explicit pads). Pooling: pads 0, no ``ceil_mode``, no dilation. BatchNormalization
folds into the Conv or Gemm/MatMul right before it (an exact rewrite of a linear map), else becomes
an ``Affine``. ``Flatten(axis=1)`` of (batch, channels, T) is channel-major; only a Gemm/MatMul may
read it (:meth:`_ConvOps._flat_into_dense`: its weight fixes T, its rows are reordered to the IR
Flatten's time-major order).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ... import ir
from .._conv import batch_norm, conv_kernel, conv_ops, pool_ops, time_major_rows
from .expressions import _FlatE, _OpE
from .values import _Const, _Data, _Refuse, _Sym

# Ops whose data input is laid out (batch, channels, T): a graph input they read has its features on axis 1
# (a Pad converts only there, on the time axis, before a convolution or pooling).
CHANNELS_FIRST_OPS = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
                      "Pad"}


def _auto_pad(attrs: dict) -> str:
    auto = attrs.get("auto_pad", "NOTSET")
    return auto.decode() if isinstance(auto, bytes) else auto


def _pads(attrs: dict, where: str) -> tuple[int, int]:
    """A 1-D Conv's or pooling's ``pads`` attribute, ``[begin, end]`` of the time axis."""
    pads = tuple(int(p) for p in attrs.get("pads", (0, 0)))
    if len(pads) != 2:
        raise _Refuse(f"{where}: pads={list(pads)} is not 1-D (edgernn converts 1-D convolutions and poolings)")
    return pads


def _one(attrs: dict, name: str, default: int, where: str) -> int:
    value = attrs.get(name)
    if value is None:
        return default
    value = list(value)
    if len(value) != 1:
        raise _Refuse(f"{where}: {name}={value} is not 1-D (edgernn converts 1-D convolutions and poolings)")
    return int(value[0])


class _ConvOps:
    """Conv, the poolings and BatchNormalization (a mixin of :class:`~.converter._Converter`)."""

    def _sequence_nct(self, x, where) -> _Data:
        """``x`` as a (batch, channels, T) data tensor; binds its axes' roles."""
        if not isinstance(x, _Data) or len(x.axes) != 3:
            raise _Refuse(f"{where}: needs data of rank 3, (batch, channels, T)")
        self.require(x.axes[0], "B", where)
        self._feature_axis(x, 1, where)
        self.require(x.axes[2], "T", where)
        return x

    def _op_Conv(self, node, inputs, attrs, where):
        x = self._sequence_nct(inputs[0], where)
        w, b = inputs[1], inputs[2] if len(inputs) > 2 else None
        if not isinstance(w, _Const) or (b is not None and not isinstance(b, _Const)):
            raise _Refuse(f"{where}: needs a constant weight and bias")
        w = np.asarray(w.value, np.float64)
        if w.ndim != 3:
            raise _Refuse(f"{where}: a weight of shape {w.shape} is not 1-D (out, in / group, k)")
        stride = _one(attrs, "strides", 1, where)
        dilation = _one(attrs, "dilations", 1, where)
        groups = int(attrs.get("group", 1))
        if w.shape[1] * groups != x.expr.features:
            raise _Refuse(f"{where}: a weight of shape {w.shape} with group={groups} does not fit "
                          f"{x.expr.features} channels")
        bias = None if b is None else b.value
        auto = _auto_pad(attrs)
        if auto == "SAME_UPPER":  # TensorFlow's same at any stride: the smaller half on the left
            ops = [ir.Conv1D("conv", conv_kernel(w), None if bias is None else ir.as_weight(bias), stride, "same",
                             dilation, groups)]
        elif auto in ("NOTSET", "VALID"):
            left, right = (0, 0) if auto == "VALID" else _pads(attrs, where)
            ops = conv_ops("conv", w, bias, stride, dilation, groups, left, right)  # + a Pad1D where not exact
        else:
            raise _Refuse(f"{where}: auto_pad={auto} is not supported (NOTSET with pads, VALID or SAME_UPPER)")
        return self._front_ends(x, ops, node)

    def _front_ends(self, x: _Data, ops: list, node) -> _Data:
        """``x`` through the sequence ops ``ops`` of one node (a Pad1D named ``<node>_pad``, then the op)."""
        name = node.name or node.output[0]
        for op in ops:
            x = self._front_end(x, op, node, 3, name=f"{name}_pad" if isinstance(op, ir.Pad1D) else name)
        return x

    def _causal_slice(self, x: _Data, axis: int, start: int, end: int):
        """``y[:, :, :-p]`` of a Conv padded ``p = (k-1)*d`` on both sides (a Pad1D and a valid
        Conv1D, stride 1): the causal convolution, PyTorch's way of writing it."""
        expr = x.expr
        if not (isinstance(expr, _OpE) and isinstance(expr.op, ir.Conv1D) and isinstance(expr.inner, _OpE)
                and isinstance(expr.inner.op, ir.Pad1D) and axis == 2 and start == 0):
            return None
        conv, pad, drop = expr.op, expr.inner.op, expr.op.span - 1
        if not (conv.padding == "valid" and conv.strides == 1 and drop > 0 and end == -drop
                and (pad.left, pad.right) == (drop, drop)):
            return None
        causal = replace(expr, inner=expr.inner.inner, op=replace(conv, padding="causal"))
        steps = self._static_size(x.axes[2])
        time = _Sym(causal.name, 2, None if steps is None else steps - drop)
        self.bind[time] = "T"
        return _Data(causal, (x.axes[0], x.axes[1], time), x.factors)

    def _channel_major_flatten(self, x, attrs, node, where):
        """ONNX ``Flatten(axis=1)`` of (batch, channels, T): a :class:`_FlatE`, else None (not this case)."""
        if not isinstance(x, _Data) or len(x.axes) != 3 or attrs.get("axis", 1) != 1:
            return None
        if self.role(x.axes[0]) != "B" or self.role(x.axes[2]) != "T" or \
                self.role(x.axes[1]) != ("F", 0, len(x.factors)):
            return None
        expr = _FlatE(x.expr, node.name or node.output[0], x.expr.features, self._static_size(x.axes[2]))
        return _Data(expr, (x.axes[0], ("F", 0, 1)), (x.expr.features,))

    def _flat_into_dense(self, d: _Data, kernel, where):
        """The Gemm/MatMul after a channel-major Flatten: T from its weight's rows, those rows put in
        the IR Flatten's time-major order (row ``c * T + t`` becomes ``t * C + c``)."""
        flat = d.expr
        rows = kernel.shape[0]
        if rows % flat.channels or (flat.steps and rows != flat.channels * flat.steps):
            raise _Refuse(f"{where}: a weight of {rows} rows does not read the {flat.channels} channels of "
                          "the Flatten before it")
        steps = rows // flat.channels
        kernel = time_major_rows(kernel, flat.channels)
        expr = _OpE(flat.inner, ir.Flatten("flatten", steps), flat.name, 2, rows)
        return _Data(expr, d.axes, (rows,)), kernel

    def _front_end(self, x: _Data, op, node, rank: int, features=None, name=None) -> _Data:
        expr = _OpE(x.expr, op, name or node.name or node.output[0], rank,
                    features or getattr(op, "output_size", None) or x.expr.features)
        time = "U"
        if rank == 3:
            # The time axis keeps its role but not its length: a new axis token of the new static length.
            steps = self._static_size(x.axes[2])
            time = _Sym(expr.name, 2, None if steps is None else op.output_steps(steps))
            self.bind[time] = "T"
        return _Data(expr, (x.axes[0], ("F", 0, 1), time), (expr.features,))

    def _pool(self, node, inputs, attrs, where, kind):
        x = self._sequence_nct(inputs[0], where)
        if len(node.output) > 1 and node.output[1]:
            raise _Refuse(f"{where}: the Indices output is not supported")
        size = _one(attrs, "kernel_shape", 1, where)
        stride = _one(attrs, "strides", 1, where)
        counted = kind == "average" and bool(attrs.get("count_include_pad", 0))
        problems = []
        if attrs.get("ceil_mode"):
            problems.append("ceil_mode=1")
        if _one(attrs, "dilations", 1, where) != 1:
            problems.append(f"dilations={list(attrs['dilations'])}")
        auto = _auto_pad(attrs)
        if auto not in ("NOTSET", "VALID", "SAME_UPPER") or (auto == "SAME_UPPER" and counted):
            problems.append(f"auto_pad={auto}" + (" with count_include_pad=1" if counted else ""))
        if problems:
            raise _Refuse(f"{where}: {', '.join(problems)} is not supported")
        if auto == "SAME_UPPER":  # pads left out of the max or the average: the IR's same, at any stride
            ops = [ir.Pooling1D("pool", kind, size, stride, "same")]
        else:
            left, right = (0, 0) if auto == "VALID" else _pads(attrs, where)
            ops = pool_ops("pool", kind, size, stride, left, right, counted)
            if isinstance(ops, str):
                raise _Refuse(f"{where}: pads={[left, right]} is not supported: {ops}")
        return self._front_ends(x, ops, node)

    def _op_Pad(self, node, inputs, attrs, where):
        """``Pad`` of the time axis of (batch, channels, T) with zeros: ``ir.Pad1D`` (negative pads
        crop), which the convolution after it takes as its padding where that is exact (:mod:`.._fold`)."""
        x = inputs[0]
        mode = attrs.get("mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if not isinstance(x, _Data) or len(x.axes) != 3:
            raise _Refuse(f"{where}: supported only on the time axis of (batch, channels, T)")
        x = self._sequence_nct(x, where)
        if "pads" in attrs:  # opset < 11: pads and value are attributes
            inputs = [x, _Const(np.asarray(attrs["pads"])), _Const(np.asarray(attrs.get("value", 0.0)))]
        if mode != "constant":
            raise _Refuse(f"{where}: mode={mode!r} is not supported (zeros: mode 'constant', value 0)")
        if len(inputs) < 2 or not all(isinstance(v, _Const) for v in inputs[1:] if v is not None):
            raise _Refuse(f"{where}: pads, value and axes that are not constants are not supported")
        pads = [int(p) for p in np.asarray(inputs[1].value).reshape(-1)]
        value = inputs[2].value if len(inputs) > 2 and inputs[2] is not None else 0.0
        axes = (list(range(3)) if len(inputs) < 4 or inputs[3] is None
                else [int(a) % 3 for a in np.asarray(inputs[3].value).reshape(-1)])
        count = len(axes)
        if len(pads) != 2 * count or np.any(np.asarray(value) != 0):
            raise _Refuse(f"{where}: pads={pads} with value {np.asarray(value).tolist()} is not supported "
                          "(zeros, constant pads only)")
        by_axis = {axis: (pads[i], pads[i + count]) for i, axis in enumerate(axes)}
        if any(by_axis.get(axis, (0, 0)) != (0, 0) for axis in (0, 1)):
            raise _Refuse(f"{where}: pads={pads} pads the batch or the channels; only the time axis is supported")
        left, right = by_axis.get(2, (0, 0))
        if (left, right) == (0, 0):
            return x
        return self._front_end(x, ir.Pad1D("pad", left, right), node, 3, x.expr.features)

    def _op_MaxPool(self, node, inputs, attrs, where):
        return self._pool(node, inputs, attrs, where, "max")

    def _op_AveragePool(self, node, inputs, attrs, where):
        return self._pool(node, inputs, attrs, where, "average")

    def _global_pool(self, node, inputs, where, kind):
        x = self._sequence_nct(inputs[0], where)
        return self._front_end(x, ir.Pooling1D("pool", kind, global_pool=True), node, 2, x.expr.features)

    def _op_GlobalMaxPool(self, node, inputs, attrs, where):
        return self._global_pool(node, inputs, where, "max")

    def _op_GlobalAveragePool(self, node, inputs, attrs, where):
        return self._global_pool(node, inputs, where, "average")

    def _reduce(self, node, inputs, attrs, where, kind):
        """ReduceMean/ReduceMax over the time axis (and size-1 axes) of a (batch, channels, T) tensor:
        global pooling (the dynamo exporter's AdaptiveAvgPool1d(1)/AdaptiveMaxPool1d(1), which it
        writes as an Unsqueeze to (batch, channels, 1, T) and a reduction over the last two axes)."""
        x = inputs[0]
        axes = attrs.get("axes")
        if axes is None and len(inputs) > 1 and isinstance(inputs[1], _Const):
            axes = np.asarray(inputs[1].value).reshape(-1).tolist()
        if not isinstance(x, _Data) or axes is None:
            raise _Refuse(f"{where}: supported only over the time axis of (batch, channels, T), as global pooling")
        rank = len(x.axes)
        reduced = sorted({int(a) % rank for a in axes})
        time = [a for a in reduced if self.role(x.axes[a]) != "U"]
        kept = [a for a in range(rank) if a not in reduced and self.role(x.axes[a]) != "U"]
        if len(time) != 1 or len(kept) != 2:
            raise _Refuse(f"{where}: supported only over the time axis of (batch, channels, T), as global pooling")
        self.require(x.axes[time[0]], "T", where)
        self.require(x.axes[kept[0]], "B", where)
        self._feature_axis(x, kept[1], where)
        expr = _OpE(x.expr, ir.Pooling1D("pool", kind, global_pool=True), node.name or node.output[0], 2,
                    x.expr.features)
        keep = attrs.get("keepdims", 1)
        out = tuple("U" if a in reduced else x.axes[a] for a in range(rank) if keep or a not in reduced)
        return _Data(expr, out, x.factors)

    def _op_ReduceMean(self, node, inputs, attrs, where):
        return self._reduce(node, inputs, attrs, where, "average")

    def _op_ReduceMax(self, node, inputs, attrs, where):
        return self._reduce(node, inputs, attrs, where, "max")

    def _op_BatchNormalization(self, node, inputs, attrs, where):
        x = inputs[0]
        if not isinstance(x, _Data) or len(x.axes) not in (2, 3):
            raise _Refuse(f"{where}: needs data of rank 2 or 3 with the channels on axis 1")
        self._feature_axis(x, 1, where)
        if attrs.get("training_mode"):
            raise _Refuse(f"{where}: training_mode=1 (batch statistics) is not supported")
        if len(node.output) > 1 and any(node.output[1:]):
            raise _Refuse(f"{where}: the running statistics outputs are not supported")
        params = inputs[1:5]
        if len(params) != 4 or not all(isinstance(p, _Const) for p in params):
            raise _Refuse(f"{where}: needs constant scale, B, mean and var")
        gamma, beta, mean, var = (p.value for p in params)
        inner = x.expr
        # A Conv or Gemm/MatMul right before takes it into its weights (importers._fold).
        op = batch_norm("batch_norm", mean, var, float(attrs.get("epsilon", 1e-5)), gamma, beta)
        expr = _OpE(inner, op, node.name or node.output[0], inner.rank, inner.features)
        return replace(x, expr=expr)
