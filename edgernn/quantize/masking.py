"""Masking, twin of ``firmware_export/ernn_mask.c``: a timestep is kept when any input feature
differs from the mask value; a masked step's output is zeros (int8: the zero point), and the
recurrent layers that read the mask skip it -- state unchanged, output the previous output (h) or
zeros with ``zero_output_for_mask``.

int8 compares the *quantized* input with the quantized mask value (``quantize_input(mask_value)``):
an input within half a quantization step of the mask value in every feature is masked too. The
float schemes compare floats exactly, as Keras does.
"""

from __future__ import annotations

from numba import njit

from .fixedpoint import INLINE, JIT


@njit(**JIT)
def mask_step(x, mask_value, zero, y, keep):
    """``x`` (B, T, F) int8 or float32 -> ``y`` (B, T, F); ``keep`` (B, T) bool written."""
    batch, steps, features = x.shape
    for b in range(batch):
        for t in range(steps):
            kept = False
            for k in range(features):
                if x[b, t, k] != mask_value:
                    kept = True
            keep[b, t] = kept
            for k in range(features):
                y[b, t, k] = x[b, t, k] if kept else zero


@njit(**INLINE)
def masked_output(y_row, h_row, zero_output, zero):
    """Output row of a recurrent layer's masked step (its state is kept): ``y_row`` (H,) = ``zero``
    (int8: the zero point of h; float: 0) everywhere if ``zero_output``, else ``h_row`` (H,)."""
    for j in range(h_row.shape[0]):
        y_row[j] = zero if zero_output else h_row[j]
