"""Float32 :class:`~edgernn.ir.Pooling1D` and :class:`~edgernn.ir.Affine` for ``predict``: plain
NumPy over whole sequences (a stream steps them through :mod:`edgernn.kernels.window` and, for
Affine, the fused step or ``runtime._RowStage``).

Pooling pads with -inf (max) or zeros (average) and reduces the sliding windows at once; the
average divides each window's sum by its count of real timesteps, as the float64 oracle
(:func:`edgernn.reference.pooling.pool1d`) does window by window.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pool1d(op, x):
    """``(batch, T, F) -> (batch, T', F)``, or ``(batch, F)`` when global, in float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if op.global_pool:
        return x.max(axis=1) if op.kind == "max" else x.mean(axis=1, dtype=np.float32)
    batch, steps, features = x.shape
    left, right = op.padding_of(steps)
    out = op.output_steps(steps)
    if not out:
        return np.empty((batch, 0, features), dtype=np.float32)
    fill = -np.inf if op.kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (left, right), (0, 0)), constant_values=fill)
    windows = sliding_window_view(xp, op.pool_size, axis=1)[:, ::op.strides][:, :out]  # (B, T', F, pool)
    if op.kind == "max":
        return np.ascontiguousarray(windows.max(axis=-1))
    starts = np.arange(out) * op.strides - left
    counts = np.minimum(starts + op.pool_size, steps) - np.maximum(starts, 0)
    return np.ascontiguousarray(windows.sum(axis=-1) / counts[:, None].astype(np.float32))


def affine(op, x):
    """``x * scale + offset`` over the last axis, in float32."""
    return np.ascontiguousarray(x, dtype=np.float32) * op.scale + op.offset
