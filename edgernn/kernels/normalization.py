"""Float32 :class:`~edgernn.ir.LayerNorm` and :class:`~edgernn.ir.Standardize` for ``predict``:
plain NumPy, in Keras's order of operations (``keras.ops.layer_normalization``: the moments, then
``inv = rsqrt(v + epsilon) * gamma`` and ``y = x * inv + (beta - m * inv)``; the preprocessing
``Normalization``: ``(x - mean) / std``), so that float32 rounding lands where Keras's does. The
float64 oracle is :mod:`edgernn.reference.normalization`."""

from __future__ import annotations

import numpy as np


def layer_norm(op, x):
    """``(..., F) -> (..., F)`` in float32 (see :class:`~edgernn.ir.LayerNorm`)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float32)
    if op.kind == "rms":
        variance = np.square(x).mean(axis=-1, keepdims=True, dtype=np.float32)
    else:
        variance = np.square(x - mean).mean(axis=-1, keepdims=True, dtype=np.float32)
    inv = np.float32(1.0) / np.sqrt(variance + np.float32(op.epsilon))
    if op.kind != "layer":
        y = x * inv
        return y * op.gamma if op.gamma is not None else y
    if op.gamma is not None:
        inv = inv * op.gamma
    shift = -mean * inv
    if op.beta is not None:
        shift = shift + op.beta
    return np.ascontiguousarray(x * inv + shift)


def standardize(op, x):
    """``(x - mean) / std`` in float32."""
    return (np.ascontiguousarray(x, dtype=np.float32) - op.mean) / op.std
