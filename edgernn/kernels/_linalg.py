"""Small inlined linear-algebra stages shared by the cell kernels."""

from __future__ import annotations

from numba import njit

from ._config import INLINE


@njit(**INLINE)
def project(z, bias, v, M):
    """``z = bias + v @ M`` for one row: ``v`` (n,), ``M`` (n, width), ``z`` and ``bias`` (width,).

    The loop runs over rows of ``M`` so the inner loop walks contiguous memory and vectorises.
    """
    width = z.shape[0]
    for j in range(width):
        z[j] = bias[j]
    accumulate(z, v, M)


@njit(**INLINE)
def accumulate(z, v, M):
    """``z += v @ M`` for one row: ``v`` (n,), ``M`` (n, width), ``z`` (width,)."""
    width = z.shape[0]
    for k in range(v.shape[0]):
        vk = v[k]
        for j in range(width):
            z[j] += vk * M[k, j]
