"""Numba float32 kernels: one file per op, and the glue that prepares a layer for them.

Three ways through a recurrent layer, all computing the same equations with the same
``*_update`` functions (a path's sums may run in another order, so paths agree to float32 rounding):

* a block of T steps (``predict``, ``Stream.run``): the input projections of the whole block are
  one BLAS matrix product here in NumPy, then the jitted ``*_sequence`` kernel runs the recurrence;
* one step of many streams (``Stream.step`` with a large batch): input and recurrent projections
  are products across streams on weights packed once (:mod:`edgernn.kernels._gemm`, vector code
  of its own: OpenBLAS repacks the weights on every call), then the jitted ``*_batch_update``
  applies the gates;
* one step of a few streams: :mod:`edgernn.kernels.chain` runs the whole model in one call.

The block's products stay in NumPy on purpose: inside a jitted function ``@`` needs SciPy's BLAS
bindings, and NumPy's own BLAS call is just as fast from here.

This module is also the float32 backend of :func:`edgernn.graph.execute` (``dtype``,
``recurrent_sequence``, ``dense``, ``activate``, ``conv1d``, ``pool1d``, ``affine``, ``layer_norm``,
``standardize``), mirroring :mod:`edgernn.reference`; the last five are plain NumPy float32 over
whole sequences (a stream steps the first three through :mod:`edgernn.kernels.window`, the last
two, and an Embedding, through :mod:`edgernn.kernels.rowwise`).
Kernels are time-major: sequences are ``(T, B, features)`` so each timestep is contiguous.

Only NumPy is imported here. Everything that needs Numba -- :class:`RecurrentKernel`, the
jitted kernels -- is loaded from :mod:`edgernn.kernels.recurrent` on first use, so a stream of a
few rows can start on the ahead-of-time compiled step (:mod:`edgernn.kernels.aot`, built by
``edgernn warmup``) without paying for ``import numba``.

When Numba is about to compile (its on-disk cache does not hold a kernel yet: 10-20 s in all),
one warning says so, once per process, on the logger ``edgernn.kernels``: printed on stderr
without any logging set up, silenced by ``logging.getLogger("edgernn").setLevel(logging.ERROR)``
(:mod:`edgernn.kernels._notice`).
"""

from __future__ import annotations

import threading

import numpy as np

from .conv import conv1d
from .normalization import layer_norm, standardize
from .pooling import affine, pool1d
from .program import (AVG_POOL, CONV, COUNT_LIMIT, GLOBAL_AVG, GLOBAL_MAX, MAX_POOL, NORM_IDS, ChainProgram,
                      dense_kernel_args, is_standard, split_recurrent, window_geometry, window_kind)

dtype = np.float32

_compiled_step = None
_compile_lock = threading.Lock()


def compiled_chain_step():
    """The fused step kernel ``chain_step(model, x, y, memory)`` (see :mod:`edgernn.kernels.chain`),
    made ready once per process.

    The ahead-of-time module that ``edgernn warmup`` builds, when there is one for this CPU and
    these kernels: importing it costs a millisecond and no Numba. Otherwise Numba compiles the
    kernel (announced first by a warning on the logger ``edgernn.kernels``: see
    :mod:`edgernn.kernels._notice`), or loads it from its on-disk cache. Not at import: an empty
    cache makes compiling take seconds, which ``import edgernn`` for a ``convert`` must not pay.
    """
    global _compiled_step
    if _compiled_step is None:
        with _compile_lock:
            if _compiled_step is None:
                from . import aot  # lazy: this package is imported by predict and convert, which never need it

                step = aot.load_step()
                if step is None:
                    from .chain import jit_chain_step  # lazy: Numba, skipped when the module above loads

                    step = jit_chain_step()
                _compiled_step = step
    return _compiled_step


# Names that import Numba, resolved on first use (PEP 562) from edgernn.kernels.recurrent.
_NUMBA_NAMES = ("RecurrentKernel", "recurrent_sequence", "dense", "activate", "bias_activation",
                "activation_forward", "masking_forward")

_WINDOW_NAMES = ("window_batch", "window_block", "conv_batch", "conv_gather", "conv_gather_block")
_ROW_NAMES = ("layer_norm_rows", "standardize_rows", "embed_rows")


def __getattr__(name):
    if name == "chain_step":
        return compiled_chain_step()
    if name in _WINDOW_NAMES:
        from . import window  # lazy: Numba

        # Bound here, so that the next access (every step of many streams) is a plain attribute.
        globals().update({n: getattr(window, n) for n in _WINDOW_NAMES})
        return globals()[name]
    if name in _ROW_NAMES:
        from . import rowwise  # lazy: Numba

        globals().update({n: getattr(rowwise, n) for n in _ROW_NAMES})
        return globals()[name]
    if name in _NUMBA_NAMES:
        from . import recurrent  # lazy: Numba (see _NUMBA_NAMES)

        # Bound all at once, after the import: importing the submodule ``dense`` set this package's
        # attribute ``dense`` to that module, and the function of that name must win.
        globals().update({n: getattr(recurrent, n) for n in _NUMBA_NAMES})
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RecurrentKernel", "ChainProgram", "affine", "conv1d", "layer_norm", "pool1d", "standardize", "bias_activation", "compiled_chain_step", "masking_forward",
           "activation_forward", "recurrent_sequence", "dense", "activate", "dense_kernel_args", "dtype",
           "is_standard", "split_recurrent", "window_geometry", "window_kind", "window_batch", "conv_batch", "conv_gather",
           "conv_gather_block", "window_block", "layer_norm_rows", "standardize_rows", "embed_rows", "NORM_IDS", "CONV",
           "MAX_POOL",
           "AVG_POOL", "GLOBAL_MAX", "GLOBAL_AVG", "COUNT_LIMIT"]
