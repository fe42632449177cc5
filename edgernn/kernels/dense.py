"""Dense kernel, float32: ``y = activation(x W + b)`` row by row."""

from __future__ import annotations

from numba import njit

from ._config import JIT
from ._linalg import project
from .activations import activate_row


@njit(**JIT)
def dense_forward(x, kernel, bias, activation, out):
    """``x`` (rows, F), ``kernel`` (F, O), ``bias`` (O,) (zeros when absent), ``out`` (rows, O)."""
    for s in range(x.shape[0]):
        project(out[s], bias, x[s], kernel)
        activate_row(activation, out[s])


@njit(**JIT)
def bias_activation(y, bias, activation):
    """``y = activation(y + bias)`` in place, row by row: the rest of a Dense layer whose product
    ``x W`` came from BLAS. ``y`` (rows, O), ``bias`` (O,)."""
    for s in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[s, j] += bias[j]
        activate_row(activation, y[s])
