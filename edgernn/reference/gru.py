"""GRU cell, float64 reference, both of Keras's candidate formulas."""

from __future__ import annotations

import numpy as np

from .activations import activate
from .lstm import clip


def gru_step(layer, x, h):
    """One GRU step for a batch of independent streams.

    Shapes: ``x`` (B, input_size), ``h`` (B, units); returns ``(h',)``.
    Gate blocks z, r, h (Keras order); W = kernel, U = recurrent_kernel, b = bias (input side),
    b_U = recurrent_bias (reset_after only), σ = recurrent_activation, φ = activation::

        z = σ(x W_z + b_z + h U_z + b_Uz)
        r = σ(x W_r + b_r + h U_r + b_Ur)
        reset_after=True  (cuDNN, PyTorch):  h~ = φ(x W_h + b_h + r * (h U_h + b_Uh))
        reset_after=False (original GRU):    h~ = φ(x W_h + b_h + (r * h) U_h)
        h' = z * h + (1 - z) * h~

    With a cell clip, each pre-activation is clipped to [-clip, clip] before σ or φ (ONNX).
    """
    n = layer.units
    W = layer.kernel.astype(np.float64)
    U = layer.recurrent_kernel.astype(np.float64)
    xw = x @ W
    if layer.bias is not None:
        xw = xw + layer.bias
    if layer.reset_after:
        hu = h @ U
        if layer.recurrent_bias is not None:
            hu = hu + layer.recurrent_bias
        z = activate(layer.recurrent_activation, clip(layer, xw[:, :n] + hu[:, :n]))
        r = activate(layer.recurrent_activation, clip(layer, xw[:, n : 2 * n] + hu[:, n : 2 * n]))
        candidate = activate(layer.activation, clip(layer, xw[:, 2 * n :] + r * hu[:, 2 * n :]))
    else:
        hu = h @ U[:, : 2 * n]
        z = activate(layer.recurrent_activation, clip(layer, xw[:, :n] + hu[:, :n]))
        r = activate(layer.recurrent_activation, clip(layer, xw[:, n : 2 * n] + hu[:, n:]))
        candidate = activate(layer.activation, clip(layer, xw[:, 2 * n :] + (r * h) @ U[:, 2 * n :]))
    return (z * h + (1.0 - z) * candidate,)
