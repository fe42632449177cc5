"""Embedding (first layer, on integer codes), twin of ``firmware_export/ernn_embed.c``.

A step's input is one code per stream (``codes`` (B, T, 1) int32, checked in ``[0, vocab)`` before
anything runs); its output the code's row of the table::

    int8:          y[j] = table[code, j]                  (int8, in the output's scale and zero point)
    int8-weights:  y[j] = float32(table[code, j]) * sw[code]   (int8 table, one scale per code)
    float32:       y[j] = table[code, j]

With ``mask_zero`` code 0 masks the step (``keep`` False) for the recurrent layers that read the
mask -- their state is kept and they output the previous output (or zeros with
``zero_output_for_mask``), as the float stream does; the Embedding's own output is row 0 as in Keras.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fixedpoint import JIT


@njit(**JIT)
def embed(codes, table, sw, y, keep, mask_zero):
    """``codes`` (B, T, 1) int32 -> ``y`` (B, T, units) int8 or float32 (``sw`` (vocab,) the rows'
    scales of an int8 table dequantized to float, empty = none); ``keep`` (B, T) written with
    ``mask_zero``."""
    batch, steps, _ = codes.shape
    scaled = sw.shape[0] > 0
    for b in range(batch):
        for t in range(steps):
            code = codes[b, t, 0]
            if mask_zero:
                keep[b, t] = code != 0
            for j in range(y.shape[2]):
                if scaled:
                    y[b, t, j] = np.float32(table[code, j]) * sw[code]
                else:
                    y[b, t, j] = table[code, j]
