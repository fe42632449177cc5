"""Dense kernel, float32: the bias and activation of ``y = activation(x W + b)``, after BLAS made ``x W``."""

from __future__ import annotations

from numba import njit

from ._config import JIT
from .activations import activate_row


@njit(**JIT)
def bias_activation(y, bias, activation):
    """``y = activation(y + bias)`` in place, row by row: the rest of a Dense layer whose product
    ``x W`` came from BLAS. ``y`` (rows, O), ``bias`` (O,)."""
    for s in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[s, j] += bias[j]
        activate_row(activation, y[s])
