"""LSTM cell, float64 reference (the oracle the kernels and importers are held against)."""

from __future__ import annotations

import numpy as np

from .activations import activate


def lstm_step(layer, x, h, c):
    """One LSTM step for a batch of independent streams.

    Shapes: ``x`` (B, input_size), ``h`` and ``c`` (B, units); returns the new ``(h, c)``.
    With W = kernel, U = recurrent_kernel, gate blocks i, f, c, o (Keras order),
    σ = recurrent_activation, φ = activation::

        z  = x W + h U + b                  (B, 4 units)
        i  = σ(z_i)    f = σ(z_f)    g = φ(z_c)    o = σ(z_o)
        c' = f * c + i * g
        h' = o * φ(c')
    """
    n = layer.units
    z = x @ layer.kernel.astype(np.float64) + h @ layer.recurrent_kernel.astype(np.float64)
    if layer.bias is not None:
        z = z + layer.bias
    i = activate(layer.recurrent_activation, z[:, :n])
    f = activate(layer.recurrent_activation, z[:, n : 2 * n])
    g = activate(layer.activation, z[:, 2 * n : 3 * n])
    o = activate(layer.recurrent_activation, z[:, 3 * n :])
    c_new = f * c + i * g
    h_new = o * activate(layer.activation, c_new)
    return h_new, c_new
