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
