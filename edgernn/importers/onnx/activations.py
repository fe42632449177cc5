"""Activations: the element-wise graph ops that are IR activations (``Relu``, ``Clip(0, 6)``,
``Softmax``, ``x * Sigmoid(x)``, ...) and the functions of the recurrent nodes' ``activations``
attribute, with their parameters."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from ... import ir
from .expressions import _ActE, _FlatE
from .values import _Const, _Data, _Refuse


# ONNX RNN activation functions: (alphas, betas, default alpha, default beta), as onnxruntime reads them.
_RNN_FUNCTIONS = {
    "sigmoid": (0, 0, None, None), "tanh": (0, 0, None, None), "relu": (0, 0, None, None),
    "softsign": (0, 0, None, None), "softplus": (0, 0, None, None),
    "affine": (1, 1, 1.0, 0.0), "leakyrelu": (1, 0, 0.01, None), "thresholdedrelu": (1, 0, 1.0, None),
    "scaledtanh": (1, 1, 1.0, 1.0), "hardsigmoid": (1, 1, 0.2, 0.5), "elu": (1, 0, 1.0, None),
}


def _close(a, b) -> bool:
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


def _rnn_activation(name: str, alpha, beta) -> Optional[str]:
    """IR name of ONNX recurrent activation ``name`` with parameters, or None."""
    key = name.lower()
    if key in ("sigmoid", "tanh", "relu", "softsign", "softplus"):
        return key
    if key == "affine" and _close(alpha, 1) and _close(beta, 0):
        return "linear"
    if key == "scaledtanh" and _close(alpha, 1) and _close(beta, 1):
        return "tanh"
    if key == "leakyrelu" and _close(alpha, 0.2):
        return "leaky_relu"
    if key == "elu" and _close(alpha, 1):
        return "elu"
    if key == "hardsigmoid" and _close(beta, 0.5):
        if _close(alpha, 0.2):
            return "hard_sigmoid_keras2"  # clip(0.2 x + 0.5, 0, 1)
        if _close(alpha, 1 / 6):
            return "hard_sigmoid"  # relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)
    return None


# Element-wise graph ops whose ONNX definition (with default attributes) equals the IR activation.
_PLAIN_OPS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softsign": "softsign", "Softplus": "softplus",
              "Exp": "exponential", "Mish": "mish", "HardSwish": "hard_silu", "Selu": "selu"}


class _ActivationOps:
    """Activation ops (a mixin of :class:`~.converter._Converter`)."""

    def _activation(self, x, name, where, node, axis=None):
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: applied to a {type(x).__name__.strip('_')}")
        if axis is not None:
            self._feature_axis(x, axis % len(x.axes), where)
        if isinstance(x.expr, _FlatE) and name in ir.ELEMENTWISE_ACTIVATIONS:
            # element-wise: applied before the channel-major Flatten, which only a Gemm/MatMul may read
            flat = x.expr
            return replace(x, expr=replace(flat, inner=_ActE(flat.inner, name, node.name or node.output[0])))
        return replace(x, expr=_ActE(x.expr, name, node.name or node.output[0]))

    def _op_Elu(self, node, inputs, attrs, where):
        return self._param_activation(node, inputs, attrs, where, {"alpha": (1.0, 1.0)}, "elu")

    def _op_Celu(self, node, inputs, attrs, where):
        return self._param_activation(node, inputs, attrs, where, {"alpha": (1.0, 1.0)}, "celu")

    def _op_LeakyRelu(self, node, inputs, attrs, where):
        return self._param_activation(node, inputs, attrs, where, {"alpha": (0.01, 0.2)}, "leaky_relu")

    def _op_Gelu(self, node, inputs, attrs, where):
        if attrs.get("approximate", "none") != "none":
            raise _Refuse(f"{where}: Gelu(approximate={attrs['approximate']!r}) is not supported")
        return self._activation(inputs[0], "gelu", where, node)

    def _op_HardSigmoid(self, node, inputs, attrs, where):
        alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
        name = _rnn_activation("hardsigmoid", alpha, beta)
        if name is None:
            raise _Refuse(f"{where}: HardSigmoid(alpha={alpha}, beta={beta}) is not an edgernn activation")
        return self._activation(inputs[0], name, where, node)

    def _param_activation(self, node, inputs, attrs, where, params, ir_name):
        for key, (default, wanted) in params.items():
            value = attrs.get(key, default)
            if not _close(value, wanted):
                raise _Refuse(f"{where}: {node.op_type}({key}={value}) is not supported (edgernn's {ir_name} has "
                              f"{key}={wanted})")
        return self._activation(inputs[0], ir_name, where, node)

    def _op_Clip(self, node, inputs, attrs, where):
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        if self.opset < 11:
            low, high = attrs.get("min"), attrs.get("max")
        else:
            low = float(inputs[1].value) if len(inputs) > 1 and isinstance(inputs[1], _Const) else None
            high = float(inputs[2].value) if len(inputs) > 2 and isinstance(inputs[2], _Const) else None
            if any(v is not None and not isinstance(v, _Const) for v in inputs[1:]):
                raise _Refuse(f"{where}: Clip bounds must be constants")
        names = {(0.0, 6.0): "relu6", (-1.0, 1.0): "hard_tanh", (0.0, None): "relu"}
        key = (None if low is None else float(low), None if high is None else float(high))
        if key not in names:
            raise _Refuse(f"{where}: Clip({low}, {high}) is not an edgernn activation (Clip(0, 6) = relu6, "
                          "Clip(-1, 1) = hard_tanh)")
        return self._activation(inputs[0], names[key], where, node)

    def _softmax(self, node, inputs, attrs, where, name):
        x = inputs[0]
        if not isinstance(x, _Data):
            raise _Refuse(f"{where}: applied to a {type(x).__name__.strip('_')}")
        rank = len(x.axes)
        axis = attrs.get("axis", -1 if self.opset >= 13 else 1) % rank
        if self.opset < 13 and any(self._axis_size(x, a) != 1 for a in x.axes[axis + 1:]):
            raise _Refuse(f"{where}: {node.op_type} (opset {self.opset}) over several axes")
        return self._activation(x, name, where, node, axis=axis)

    def _op_Softmax(self, node, inputs, attrs, where):
        return self._softmax(node, inputs, attrs, where, "softmax")

    def _op_LogSoftmax(self, node, inputs, attrs, where):
        return self._softmax(node, inputs, attrs, where, "log_softmax")

    def _op_Mul(self, node, inputs, attrs, where):
        folded = self._constant_arithmetic(node, inputs, where)
        if folded is not None:
            return folded
        a, b = inputs
        # SiLU as PyTorch exports it: x * Sigmoid(x).
        for x, s in ((a, b), (b, a)):
            if (isinstance(x, _Data) and isinstance(s, _Data) and isinstance(s.expr, _ActE)
                    and s.expr.activation == "sigmoid" and s.expr.inner is x.expr and s.axes == x.axes):
                return replace(x, expr=_ActE(x.expr, "silu", node.name or node.output[0]))
        if isinstance(a, _Data) and isinstance(b, _Data):
            return self._merge(node, inputs, where)  # a * b of two computed tensors
        scaled = self._constant_affine(node, inputs, where)
        if scaled is not None:
            return scaled
        raise _Refuse(f"{where}: Mul is supported only of computed tensors of one shape, of a tensor and a "
                      "constant, or as x * Sigmoid(x) (SiLU)")


def _elementwise(ir_name):
    def op(self, node, inputs, attrs, where):
        if self._all_const(inputs):
            return self._fold(node, inputs, where)
        return self._activation(inputs[0], ir_name, where, node)

    return op


for _op, _name in _PLAIN_OPS.items():
    setattr(_ActivationOps, f"_op_{_op}", _elementwise(_name))
del _op, _name
