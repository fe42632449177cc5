"""SimpleRNN kernels, float32: ``h' = φ(clip(x W + b + h U))``, in the three forms of
:mod:`edgernn.kernels.lstm` (one stream, a block from BLAS input projections, many streams)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import INLINE, JIT
from ._linalg import copy_row
from ._matvec import matvec
from .activations import activate, clipped, fast_tanh


@njit(**INLINE)
def simple_update(z, h, clip, activation, standard, out):
    """``h' = φ(clip(z))`` for one stream, into ``h`` and ``out`` (H,) in one pass; ``z`` (H,) =
    ``x W + b + h U``; ``standard``: tanh, no clip."""
    if standard:
        for j in range(h.shape[0]):
            value = fast_tanh(z[j])
            h[j] = value
            out[j] = value
    else:
        for j in range(h.shape[0]):
            value = activate(activation, clipped(z[j], clip))
            h[j] = value
            out[j] = value


@njit(**JIT)
def simple_sequence(xw, recurrent_packed, bias, clip, h, out, ys, keep, activation, standard, zero_output):
    """T steps of B streams from ``xw`` (T, B, N') = ``x W`` (overwritten) and ``bias`` (N'), both
    padded as in :func:`edgernn.kernels.lstm.lstm_sequence`; other shapes as there."""
    reverse = False  # the panels' order, flipped at every step (see _matvec.matvec)
    for t in range(xw.shape[0]):
        matvec(xw[t], bias, h, recurrent_packed, xw[t], keep[t], reverse)  # in place: the block's own buffer
        reverse = not reverse
        for s in range(xw.shape[1]):
            if keep[t, s]:
                simple_update(xw[t, s], h[s], clip, activation, standard, out[s])
            elif zero_output:
                out[s, :] = np.float32(0.0)
            copy_row(ys[t, s], out[s])


@njit(**JIT)
def simple_batch_update(z, h, out, keep, clip, activation, standard, zero_output):
    """One step of B streams from their pre-activations ``z`` (B, H) = ``x W + b + h U``; shapes
    as in :func:`edgernn.kernels.lstm.lstm_batch_update`."""
    for s in range(z.shape[0]):
        if keep[s]:
            simple_update(z[s], h[s], clip, activation, standard, out[s])
        elif zero_output:
            out[s, :] = np.float32(0.0)
