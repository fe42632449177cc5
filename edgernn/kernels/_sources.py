"""What the compiled kernels are built from, as one digest (NumPy-free, Numba-free: the
ahead-of-time step's loader uses it before Numba is imported)."""

from __future__ import annotations

import hashlib
from pathlib import Path

KERNELS = Path(__file__).resolve().parent


def kernel_sources_digest() -> str:
    """sha256 of every source compiled into the kernels: this folder's ``*.py`` and ``*.c``, and
    ``ir.py`` (its activation ids are constants frozen into the machine code).

    Numba's on-disk cache of every kernel here (:mod:`edgernn.kernels._config`) and the
    ahead-of-time step (:mod:`edgernn.kernels.aot`) are keyed on it: a kernel inlines functions
    from other files, so the file that defines it alone does not say whether its code changed.
    """
    digest = hashlib.sha256()
    for path in sorted([*KERNELS.glob("*.py"), *KERNELS.glob("*.c")]) + [KERNELS.parent / "ir.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
