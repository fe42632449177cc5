"""Plain NumPy float64 implementations of every op: readable, slow, and the oracle.

The Numba kernels (:mod:`edgernn.kernels`) and the importers are tested against these.
"""

from __future__ import annotations

import numpy as np

from .activations import activate
from .conv import conv1d
from .normalization import layer_norm, standardize
from .pooling import pool1d
from .recurrent import cell_step, recurrent_sequence

dtype = np.float64


def dense(op, x):
    """``activation(x @ kernel + bias)`` over the last axis of ``x`` (..., input_size)."""
    y = np.asarray(x, dtype=np.float64) @ op.kernel.astype(np.float64)
    if op.bias is not None:
        y = y + op.bias
    return activate(op.activation, y)


def affine(op, x):
    """``x * scale + offset`` over the last axis (:class:`~edgernn.ir.Affine`)."""
    return np.asarray(x, dtype=np.float64) * op.scale.astype(np.float64) + op.offset.astype(np.float64)


__all__ = ["activate", "affine", "cell_step", "conv1d", "dense", "layer_norm", "pool1d", "recurrent_sequence",
           "standardize", "dtype"]
