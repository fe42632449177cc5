"""LSTM cell, float64 reference (the oracle the kernels and importers are held against)."""

from __future__ import annotations

import numpy as np

from .activations import activate


def clip(layer, z):
    """ONNX's cell clip: gate pre-activations limited to [-cell_clip, cell_clip] (no-op if None)."""
    return z if layer.cell_clip is None else np.clip(z, -layer.cell_clip, layer.cell_clip)


def lstm_step(layer, x, h, c):
    """One LSTM step for a batch of independent streams.

    Shapes: ``x`` (B, input_size), ``h`` (B, output_size), ``c`` (B, units); returns ``(h', c')``.
    With W = kernel, U = recurrent_kernel, gate blocks i, f, c, o (Keras order),
    σ = recurrent_activation, φ = activation, p = peephole (zeros if absent),
    P = projection (identity if absent), clip = cell clip (identity if absent)::

        z  = x W + h U + b                              (B, 4 units)
        i  = σ(clip(z_i + p_i * c))    f = σ(clip(z_f + p_f * c))    g = φ(clip(z_c))
        c' = f * c + i * g
        o  = σ(clip(z_o + p_o * c'))
        h' = (o * φ(c')) P
    """
    n = layer.units
    z = x @ layer.kernel.astype(np.float64) + h @ layer.recurrent_kernel.astype(np.float64)
    if layer.bias is not None:
        z = z + layer.bias
    peephole = np.zeros((3, n)) if layer.peephole is None else layer.peephole.astype(np.float64)
    i = activate(layer.recurrent_activation, clip(layer, z[:, :n] + peephole[0] * c))
    f = activate(layer.recurrent_activation, clip(layer, z[:, n : 2 * n] + peephole[1] * c))
    g = activate(layer.activation, clip(layer, z[:, 2 * n : 3 * n]))
    c_new = f * c + i * g
    o = activate(layer.recurrent_activation, clip(layer, z[:, 3 * n :] + peephole[2] * c_new))
    h_new = o * activate(layer.activation, c_new)
    if layer.projection is not None:
        h_new = h_new @ layer.projection.astype(np.float64)
    return h_new, c_new
