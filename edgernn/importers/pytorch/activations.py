"""PyTorch's parameterless modules: activation classes (and their parameters) -> IR activation names,
and the classes that are the identity at inference (Dropout, Identity), which are skipped.

Both a module tree (``modules``) and the ``activations`` option of a state dict (``state_dict``)
name these modules by their PyTorch class.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ... import ir


# Classes whose PyTorch definition equals the IR's (see edgernn.reference.activations).
_PLAIN_ACTIVATIONS = {
    "ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "ReLU6": "relu6", "SELU": "selu",
    "SiLU": "silu", "Mish": "mish", "Softsign": "softsign", "LogSigmoid": "log_sigmoid",
    "Tanhshrink": "tanh_shrink", "Hardsigmoid": "hard_sigmoid", "Hardswish": "hard_silu",
}
# Accepted in the ``activations`` option as well (IR names, lower case).
_IR_NAMES = set(ir.ELEMENTWISE_ACTIVATIONS + ir.VECTOR_ACTIVATIONS)


def _activation_of(cls: str, attrs: dict, where: str, problems: list[str]) -> Optional[str]:
    """The IR activation of PyTorch activation module ``cls`` with ``attrs``; None (+ problem) if none."""
    if cls in _PLAIN_ACTIVATIONS:
        return _PLAIN_ACTIVATIONS[cls]

    def param(name, default, wanted, ir_name):
        value = attrs.get(name, default)
        if value is None or not np.isclose(float(value), wanted, rtol=0, atol=1e-7):
            problems.append(f"{where}: {cls}({name}={value}) is not supported (edgernn's {ir_name} has "
                            f"{name}={wanted})")
            return None
        return ir_name

    if cls in ("Softmax", "LogSoftmax"):
        dim = attrs.get("dim")
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            problems.append(f"{where}: {cls}(dim={dim}) is supported only over the feature (last) axis: "
                            "give dim=-1")
            return None
        return "softmax" if cls == "Softmax" else "log_softmax"
    if cls == "ELU":
        return param("alpha", 1.0, 1.0, "elu")
    if cls == "CELU":
        return param("alpha", 1.0, 1.0, "celu")
    if cls == "LeakyReLU":
        return param("negative_slope", 0.01, 0.2, "leaky_relu")
    if cls == "Softplus":
        if param("beta", 1.0, 1.0, "softplus") is None:
            return None
        return "softplus"  # threshold=20: x itself above it, within 2e-9 of log(1 + e^x) there
    if cls == "Hardtanh":
        if attrs.get("min_val", -1.0) != -1.0 or attrs.get("max_val", 1.0) != 1.0:
            problems.append(f"{where}: Hardtanh(min_val={attrs.get('min_val')}, max_val={attrs.get('max_val')}) "
                            "is supported only as Hardtanh(-1, 1)")
            return None
        return "hard_tanh"
    if cls == "GELU":
        if attrs.get("approximate", "none") != "none":
            problems.append(f"{where}: GELU(approximate={attrs.get('approximate')!r}) is not supported "
                            "(edgernn's gelu is the exact erf form)")
            return None
        return "gelu"
    problems.append(f"{where}: module {cls} is not supported")
    return None


_ACTIVATION_CLASSES = set(_PLAIN_ACTIVATIONS) | {"Softmax", "LogSoftmax", "ELU", "CELU", "LeakyReLU", "Softplus",
                                                 "Hardtanh", "GELU"}
# The identity at inference: skipped in a module tree and in the ``activations`` option.
_SKIP_CLASSES = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
                 "Identity"}
