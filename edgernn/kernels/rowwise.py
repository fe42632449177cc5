"""The streaming step of the stateless per-row ops: LayerNorm, Standardize, Embedding.

One row (one timestep of one stream) is a ``*_row`` function; the fused step
(:mod:`edgernn.kernels.chain`) calls it inline per stream, and ``*_rows`` (many streams at one
step, or the T * B rows of ``Stream.run``) call it in a loop, so every stream path computes the same
terms in the same order. ``predict`` runs the NumPy versions (:mod:`edgernn.kernels.normalization`,
``graph._embed``); the paths agree to float32 rounding.

* LayerNorm, ``x (F,) -> y (F,)`` (see :class:`~edgernn.ir.LayerNorm`): in float64, rounded once
  to float32 at the end -- the exact value, which Keras's float32 (``x * inv + (beta - mean * inv)``,
  followed by :mod:`edgernn.kernels.normalization` for ``predict``) approaches to its rounding:
  ``layer``: ``y = (x - mean) / sqrt(var + epsilon) * gamma + beta``; ``rms_scaling``, ``rms``:
  ``y = x / sqrt(var + epsilon) * gamma`` (``var`` is the mean square for ``rms``). Not Keras's order,
  because in float32 it cancels ``x * inv`` against ``mean * inv``: a row of mean 300 and spread
  0.01 lost three digits that way. ``gamma`` and ``beta`` may be empty: 1 and 0.
* Standardize: ``y = (x - mean) / std``.
* Embedding: ``y = table[code]``, the code a whole number in ``[0, vocab)`` held in a float32
  (exact up to 2**24); :func:`valid_code` says whether it is one. The callers check every code of a
  step before any state changes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._config import INLINE, JIT
from .program import NORM_LAYER, NORM_RMS


@njit(**INLINE)
def layer_norm_row(kind, y, x, gamma, beta, epsilon):
    """``y (F,) = LayerNorm(x (F,))`` of ``kind`` (a NORM_* id); ``y`` may not alias ``x``."""
    n = x.shape[0]
    total = 0.0
    for j in range(n):
        total += np.float64(x[j])
    mean = total / n
    square = 0.0
    if kind == NORM_RMS:
        for j in range(n):
            square += np.float64(x[j]) * np.float64(x[j])
    else:
        for j in range(n):
            d = np.float64(x[j]) - mean
            square += d * d
    inv = 1.0 / math.sqrt(square / n + np.float64(epsilon))
    with_gamma = gamma.shape[0] > 0
    with_beta = beta.shape[0] > 0 and kind == NORM_LAYER
    for j in range(n):
        v = (np.float64(x[j]) - mean) * inv if kind == NORM_LAYER else np.float64(x[j]) * inv
        if with_gamma:
            v *= np.float64(gamma[j])
        if with_beta:
            v += np.float64(beta[j])
        y[j] = np.float32(v)


@njit(**INLINE)
def standardize_row(y, x, mean, std):
    """``y (F,) = (x - mean) / std``."""
    for j in range(x.shape[0]):
        y[j] = (x[j] - mean[j]) / std[j]


@njit(**INLINE)
def valid_code(code, vocab):
    """Whether the float ``code`` is a whole number in ``[0, vocab)`` (NaN is not)."""
    return code >= 0 and code < vocab and code == math.floor(code)


@njit(**INLINE)
def embed_row(y, table, code):
    """``y (dim,) = table[code]``, ``code`` a valid one (see :func:`valid_code`)."""
    row = np.int64(code)
    for j in range(y.shape[0]):
        y[j] = table[row, j]


@njit(**JIT)
def layer_norm_rows(kind, x, y, gamma, beta, epsilon):
    """:func:`layer_norm_row` over every row of ``x`` (rows, F) into ``y`` (rows, F)."""
    for s in range(x.shape[0]):
        layer_norm_row(kind, y[s], x[s], gamma, beta, epsilon)


@njit(**JIT)
def standardize_rows(x, y, mean, std):
    """:func:`standardize_row` over every row of ``x`` (rows, F) into ``y`` (rows, F)."""
    for s in range(x.shape[0]):
        standardize_row(y[s], x[s], mean, std)


@njit(**JIT)
def embed_rows(x, y, table, keep, mask_zero):
    """``y[s] = table[x[s, 0]]`` for ``x`` (rows, 1) of valid codes; with ``mask_zero``,
    ``keep[s] = x[s, 0] != 0`` (``keep`` (rows,) bool, else untouched)."""
    for s in range(x.shape[0]):
        embed_row(y[s], table, x[s, 0])
        if mask_zero:
            keep[s] = x[s, 0] != 0
