"""Small inlined linear-algebra stages shared by the cell kernels."""

from __future__ import annotations

from numba import njit

from ._config import INLINE


@njit(**INLINE)
def project(z, bias, v, M):
    """``z = bias + v @ M`` for one row: ``v`` (n,), ``M`` (n, width), ``z`` and ``bias`` (width,).

    The loops run over rows of ``M`` so the inner loop walks contiguous memory and vectorises. The
    bias rides on the first pass over ``z`` (with the first four rows of ``M``) instead of a pass
    of its own.
    """
    width, n = z.shape[0], v.shape[0]
    k = 0
    if n >= 4:
        v0, v1, v2, v3 = v[0], v[1], v[2], v[3]
        for j in range(width):
            z[j] = bias[j] + (v0 * M[0, j] + v1 * M[1, j] + v2 * M[2, j] + v3 * M[3, j])
        k = 4
    else:
        for j in range(width):
            z[j] = bias[j]
    _accumulate_from(z, v, M, k)


@njit(**INLINE)
def accumulate(z, v, M):
    """``z += v @ M`` for one row: ``v`` (n,), ``M`` (n, width), ``z`` (width,).

    Four rows of ``M`` per pass over ``z``: each load and store of ``z`` then serves four
    multiply-adds instead of one (about twice the throughput of the one-row loop in a
    development measurement on one x86-64 core; not part of tools/bench). Eight rows per pass
    were no faster in another such measurement: the weights, not ``z``, are what the loop waits for.
    """
    _accumulate_from(z, v, M, 0)


@njit(**INLINE)
def _accumulate_from(z, v, M, k):
    """``z += v[k:] @ M[k:]``, four rows per pass, then one."""
    width, n = z.shape[0], v.shape[0]
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


@njit(**INLINE)
def copy_row(target, source):
    """``target[:] = source`` as a loop: Numba's slice assignment may allocate a temporary (it
    cannot rule out overlap), and the kernels compile without Numba's allocator (see _config)."""
    for j in range(target.shape[0]):
        target[j] = source[j]
