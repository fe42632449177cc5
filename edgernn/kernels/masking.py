"""Masking kernel: Keras's ``Masking`` layer, per row."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import JIT


@njit(**JIT)
def masking_forward(x, mask_value, out, keep):
    """A row is kept when any feature differs from ``mask_value``; masked rows become zeros.

    ``x``, ``out``: (rows, F) float32; ``keep``: (rows,) bool, written.
    """
    for s in range(x.shape[0]):
        kept = False
        for j in range(x.shape[1]):
            if x[s, j] != mask_value:
                kept = True
                break
        keep[s] = kept
        for j in range(x.shape[1]):
            out[s, j] = x[s, j] if kept else np.float32(0.0)
