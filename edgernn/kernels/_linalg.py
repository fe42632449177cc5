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
    """``z += v @ M`` for one row: ``v`` (n,), ``M`` (n, width), ``z`` (width,).

    Four rows of ``M`` per pass over ``z``: each load and store of ``z`` then serves four
    multiply-adds instead of one (about twice the throughput of the one-row loop in a
    development measurement on one x86-64 core; not part of tools/bench).
    """
    width, n = z.shape[0], v.shape[0]
    k = 0
    while k + 4 <= n:
        v0, v1, v2, v3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        for j in range(width):
            z[j] += v0 * M[k, j] + v1 * M[k + 1, j] + v2 * M[k + 2, j] + v3 * M[k + 3, j]
        k += 4
    while k < n:
        vk = v[k]
        for j in range(width):
            z[j] += vk * M[k, j]
        k += 1
