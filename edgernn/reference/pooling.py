"""Float64 reference of :class:`~edgernn.ir.Pooling1D`: one window at a time.

Window ``t`` covers padded positions ``[t*s, t*s + pool_size)``; with "same" padding only the real
timesteps in it count (TensorFlow's pooling, which Keras calls): max over them, or their sum
divided by how many there are. Global pooling is the max or the mean over all of T.
"""

from __future__ import annotations

import numpy as np


def pool1d(op, x):
    """``(batch, T, F) -> (batch, T', F)``, or ``(batch, F)`` when global."""
    x = np.asarray(x, dtype=np.float64)
    if op.global_pool:
        return x.max(axis=1) if op.kind == "max" else x.mean(axis=1)
    batch, steps, features = x.shape
    left, _ = op.padding_of(steps)
    out = op.output_steps(steps)
    y = np.empty((batch, out, features))
    for t in range(out):
        start = t * op.strides - left
        window = x[:, max(start, 0):min(start + op.pool_size, steps)]
        y[:, t] = window.max(axis=1) if op.kind == "max" else window.sum(axis=1) / window.shape[1]
    return y
