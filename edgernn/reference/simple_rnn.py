"""SimpleRNN (Elman) cell, float64 reference."""

from __future__ import annotations

import numpy as np

from .activations import activate
from .lstm import clip


def simple_step(layer, x, h):
    """One SimpleRNN step: ``h' = φ(clip(x W + h U + b))``; ``x`` (B, input_size), ``h`` (B, units)."""
    z = x @ layer.kernel.astype(np.float64) + h @ layer.recurrent_kernel.astype(np.float64)
    if layer.bias is not None:
        z = z + layer.bias
    return (activate(layer.activation, clip(layer, z)),)
