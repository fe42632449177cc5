"""Numba settings for every kernel, in one place.

* ``nogil``: kernels release the GIL, so streams stepped from several threads run in parallel.
* ``cache``: compiled machine code is kept on disk (``__pycache__`` beside the kernels, or
  ``NUMBA_CACHE_DIR``), so a second process starts without compiling.
* ``error_model="numpy"``: no Python-style ZeroDivisionError checks inside loops (they block
  vectorisation); a division by zero gives inf/nan as in NumPy.
* ``fastmath``: only flags that keep results within float32 rounding of the exact order
  (contraction to FMA, no signed-zero care, reciprocal, reassociation for vectorised sums) --
  no ``nnan``/``ninf``, so NaN inputs propagate rather than being assumed away.
* ``_nrt=False``: no Numba runtime (NRT) in the kernels. They allocate nothing, and with the
  runtime on, every array view a kernel makes (a row, a weight block) costs an out-of-line
  reference-count increment and decrement, atomic, that Numba's pruning cannot remove across the
  fused step's branches: on the development machine about a third of a small model's step time.
  Without it, a kernel that tries to allocate (or a slice assignment that might need a temporary:
  use ``_linalg.copy_row``) fails to compile instead of allocating per step.

Importing this module (every kernel module does, before defining its kernels) also makes Numba
announce its first compile of them (:mod:`edgernn.kernels._notice`).
"""

from __future__ import annotations

from . import _notice

_notice.watch()

JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath={"contract", "nsz", "arcp", "reassoc"}, _nrt=False)
# Small helpers inlined into the kernels that call them.
INLINE = dict(JIT, inline="always")
