"""Float64 references of :class:`~edgernn.ir.LayerNorm` and :class:`~edgernn.ir.Standardize`:
the equations of their docstrings, over the last axis."""

from __future__ import annotations

import numpy as np


def layer_norm(op, x):
    """``(..., F) -> (..., F)``: ``(x - m) / sqrt(v + epsilon) * gamma + beta`` with ``m = mean(x)``,
    ``v = var(x)`` (kind ``layer``); ``m = 0``, ``v = var(x)`` (``rms_scaling``); ``m = 0``,
    ``v = mean(x^2)`` (``rms``)."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    if op.kind == "rms":
        variance = np.square(x).mean(axis=-1, keepdims=True)
    else:
        variance = np.square(x - mean).mean(axis=-1, keepdims=True)
    centred = x - mean if op.kind == "layer" else x
    y = centred / np.sqrt(variance + op.epsilon)
    if op.gamma is not None:
        y = y * op.gamma.astype(np.float64)
    if op.beta is not None:
        y = y + op.beta.astype(np.float64)
    return y


def standardize(op, x):
    """``(x - mean) / std`` over the last axis."""
    return (np.asarray(x, dtype=np.float64) - op.mean.astype(np.float64)) / op.std.astype(np.float64)
