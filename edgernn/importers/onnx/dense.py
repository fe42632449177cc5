"""Per-step layers over the features: ``Gemm`` and ``MatMul`` of data by a constant weight, ``Add`` of a
constant bias to their result (``Add`` of two computed tensors is a merge, :mod:`.merge`), and
``LayerNormalization`` over the last axis."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ... import ir
from .expressions import _DenseE, _FlatE, _OpE
from .values import _Const, _Data, _Refuse


class _DenseOps:
    """Gemm, MatMul, Add, LayerNormalization (a mixin of :class:`~.converter._Converter`)."""

    def _dense(self, d: _Data, kernel, bias, where, name, position=None) -> _Data:
        position = len(d.axes) - 1 if position is None else position
        if isinstance(d.expr, _FlatE):  # a convolution's output flattened channel-major
            d, kernel = self._flat_into_dense(d, kernel, where)
        self._feature_axis(d, position, where)
        if kernel.shape[0] != d.expr.features:
            raise _Refuse(f"{where}: weight of shape {kernel.shape} does not fit {d.expr.features} features")
        expr = _DenseE(d.expr, ir.as_weight(kernel), None if bias is None else ir.as_weight(bias), "linear", name)
        axes = d.axes[:position] + (("F", 0, 1),) + d.axes[position + 1:]
        return _Data(expr, axes, (int(kernel.shape[1]),))

    def _op_Gemm(self, node, inputs, attrs, where):
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if not isinstance(a, _Data) or not isinstance(b, _Const) or (c is not None and not isinstance(c, _Const)):
            raise _Refuse(f"{where}: Gemm needs data times a constant weight (plus a constant bias)")
        if len(a.axes) != 2:
            raise _Refuse(f"{where}: Gemm input of rank {len(a.axes)}")
        trans_a = attrs.get("transA", 0)
        rows = 1 if trans_a else 0
        w = np.asarray(b.value, np.float64)
        w = w.T if attrs.get("transB", 0) else w
        w = w * attrs.get("alpha", 1.0)
        bias = None
        if c is not None:
            cv = np.asarray(c.value, np.float64) * attrs.get("beta", 1.0)
            if cv.size not in (1, w.shape[1]) or (cv.ndim == 2 and cv.shape[0] != 1):
                raise _Refuse(f"{where}: Gemm bias of shape {cv.shape} is not one row")
            bias = np.broadcast_to(cv.reshape(-1), (w.shape[1],))
        out = self._dense(a, w, bias, where, node.name or node.output[0], position=1 - rows)
        # Gemm's output is (rows, N): put the rows axis first.
        return replace(out, axes=(out.axes[rows], out.axes[1 - rows]))

    def _op_MatMul(self, node, inputs, attrs, where):
        a, b = inputs
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if not isinstance(a, _Data) or not isinstance(b, _Const) or b.value.ndim != 2:
            raise _Refuse(f"{where}: MatMul needs data times a constant 2-D weight")
        return self._dense(a, np.asarray(b.value, np.float64), None, where, node.name or node.output[0])

    def _op_Add(self, node, inputs, attrs, where):
        folded = self._constant_arithmetic(node, inputs, where)
        if folded is not None:
            return folded
        data = [v for v in inputs if isinstance(v, _Data)]
        const = [v for v in inputs if isinstance(v, _Const)]
        if len(data) == len(inputs):
            return self._merge(node, inputs, where)  # a + b: a residual connection, branches summed
        if len(data) != 1 or len(const) != 1:
            raise _Refuse(f"{where}: Add is supported only of computed tensors of one shape, or of a tensor and a "
                          "constant (a MatMul/Gemm's bias, or a shift)")
        d, c = data[0], np.asarray(const[0].value, np.float64)
        if not isinstance(d.expr, _DenseE):  # a shift: x + c
            return self._constant_affine(node, inputs, where)
        units = d.expr.features
        if c.size not in (1, units) or (c.ndim and c.shape[-1] not in (1, units)) or c.ndim > len(d.axes):
            raise _Refuse(f"{where}: Add of a constant of shape {c.shape} that is not a bias over the features")
        self._feature_axis(d, len(d.axes) - 1, where)
        bias = np.broadcast_to(c.reshape(-1), (units,)) + (0 if d.expr.bias is None else d.expr.bias)
        return replace(d, expr=replace(d.expr, bias=ir.as_weight(bias)))

    def _op_LayerNormalization(self, node, inputs, attrs, where):
        """``y = (x - mean(x)) / sqrt(var(x) + epsilon) * Scale + B`` over the last axis (opset 17; what
        ``torch.onnx.export`` writes for ``nn.LayerNorm``): ``ir.LayerNorm`` of kind ``layer``."""
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: LayerNormalization of a {type(x).__name__.strip('_')}")
        if any(node.output[1:]):
            raise _Refuse(f"{where}: its Mean and InvStdDev outputs are not supported")
        rank = len(x.axes)
        if attrs.get("axis", -1) % rank != rank - 1:
            raise _Refuse(f"{where}: normalizes from axis {attrs.get('axis')}; edgernn normalizes over the last "
                          "axis only, the features")
        self._feature_axis(x, rank - 1, where)
        features = x.expr.features
        params = []
        for what, v in (("Scale", scale), ("B", bias)):
            if v is not None and not (isinstance(v, _Const) and v.value.size in (1, features)):
                raise _Refuse(f"{where}: {what} must be a constant of {features} values")
            params.append(None if v is None else ir.as_weight(np.broadcast_to(
                np.asarray(v.value, np.float64).reshape(-1), (features,))))
        op = ir.LayerNorm("layer_norm", "layer", float(attrs.get("epsilon", 1e-5)), *params)
        return replace(x, expr=_OpE(x.expr, op, node.name or node.output[0], x.expr.rank, features))
