"""Activations in float64 NumPy, as Keras 3 defines them (and Keras 2's hard_sigmoid).

Each maps an array to an array of the same shape; softmax and log_softmax act over the last axis.
"""

from __future__ import annotations

import math

import numpy as np

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _softplus(x):
    return np.logaddexp(0.0, x)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


FUNCTIONS = {
    "linear": lambda x: x,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    # Keras 3: relu6(x + 3) / 6, i.e. clip(x / 6 + 0.5, 0, 1).
    "hard_sigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    # Keras 2 (tf.keras): clip(0.2 x + 0.5, 0, 1).
    "hard_sigmoid_keras2": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "celu": lambda x: np.maximum(x, 0.0) + np.minimum(0.0, np.expm1(np.minimum(x, 0.0))),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "exponential": np.exp,
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "hard_silu": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "log_sigmoid": lambda x: -_softplus(-x),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "softmax": _softmax,
    "log_softmax": lambda x: x - x.max(axis=-1, keepdims=True)
    - np.log(np.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True)),
}


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """Apply activation ``name`` to ``x`` in float64."""
    return FUNCTIONS[name](np.asarray(x, dtype=np.float64))
