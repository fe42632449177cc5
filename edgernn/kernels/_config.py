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
announce its first compile of them (:mod:`edgernn.kernels._notice`), and makes Numba's on-disk
cache of a kernel depend on every kernel source, not only the file that defines it
(:func:`_stamp_cache_with_kernel_sources`).
"""

from __future__ import annotations

from pathlib import Path

from . import _notice
from ._sources import KERNELS, kernel_sources_digest

_notice.watch()


def _stamp_cache_with_kernel_sources() -> None:
    """Numba keys a cached kernel on the source file that defines it, alone. The fused step
    (``chain.py``) inlines functions from ``lstm.py``, ``window.py`` and others, so after an edit of
    one of those (a ``git pull``, a contributor's change) a process went on loading the old
    machine code for the step. Locators that stamp the kernels of this folder with
    :func:`kernel_sources_digest` are put first; anything else keeps Numba's own.

    Uses Numba's locator classes (``numba.core.caching``); where a Numba version lacks them,
    nothing changes.
    """
    from numba.core import caching

    stamp = kernel_sources_digest()
    ours = []
    for name in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator"):
        base = getattr(caching, name, None) or getattr(caching, "_" + name, None)
        if base is None:
            continue

        class Locator(base):
            def get_source_stamp(self):
                return stamp

            @classmethod
            def from_function(cls, py_func, py_file):
                if Path(py_file).resolve().parent != KERNELS:
                    return None
                return super().from_function(py_func, py_file)

        Locator.__name__ = Locator.__qualname__ = "EdgernnKernels" + name
        ours.append(Locator)
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if impl is not None and ours and not any(c.__name__.startswith("EdgernnKernels") for c in impl._locator_classes):
        impl._locator_classes = ours + list(impl._locator_classes)


_stamp_cache_with_kernel_sources()

JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath={"contract", "nsz", "arcp", "reassoc"}, _nrt=False)
# Small helpers inlined into the kernels that call them.
INLINE = dict(JIT, inline="always")
