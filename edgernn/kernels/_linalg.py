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


@njit(**INLINE)
def add_input_projection(z, bias, x, kernel, xw, project_input):
    """``z += bias + x W`` for one stream of a many-streams step: ``z``, ``bias``, ``xw`` (width,),
    ``x`` (n,), ``kernel`` (n, width).

    ``project_input``: compute ``x W`` here (narrow inputs: a BLAS call across streams would cost
    more than it saves); else ``xw`` already holds it, from one BLAS product across streams.
    """
    if project_input:
        for j in range(z.shape[0]):
            z[j] += bias[j]
        accumulate(z, x, kernel)
    else:
        for j in range(z.shape[0]):
            z[j] += bias[j] + xw[j]


@njit(**INLINE)
def copy_row(target, source):
    """``target[:] = source`` as a loop: Numba's slice assignment may allocate a temporary (it
    cannot rule out overlap), and the kernels compile without Numba's allocator (see _config)."""
    for j in range(target.shape[0]):
        target[j] = source[j]
