"""One line before edgernn's kernels are compiled, so a first run that waits says why.

Numba compiles a kernel the first time a process calls it, unless its on-disk cache (or the
ahead-of-time module ``edgernn warmup`` builds, :mod:`edgernn.kernels.aot`) already holds it. With
an empty cache, the first stream step, ``predict`` or ``edgernn warmup`` of a process waits
about 10-20 s on the development machine: ``python tools/bench/run.py``'s cold-start section
measures compiling from scratch at 13-19 s (docs/benchmarks.md, section 4). A
Raspberry-Pi-class CPU takes longer (not measured).

**How it is known.** Numba broadcasts its documented ``"numba:compile"`` event
(:mod:`numba.core.event`) from ``Dispatcher.compile`` after it found the signature neither in
memory nor in its on-disk cache, and before it compiles. :func:`watch` registers a listener for
it when the first kernel module is imported (:mod:`edgernn.kernels._config`, which every one of
them imports before defining a kernel), so every path to a kernel -- the fused step
(:func:`edgernn.kernels.compiled_chain_step`), the layer kernels loaded by ``edgernn.kernels``'
lazy loader, ``Model.warmup`` -- is covered, with Numba's own decision rather than a guess at its
cache files: a kernel loaded from the cache broadcasts nothing, and the ahead-of-time path never
imports Numba at all. Building the ahead-of-time module (:func:`edgernn.kernels.aot.build_step`)
compiles too, outside Numba's dispatcher, so it calls :func:`announce` itself.

**What is said, and where.** A ``WARNING`` on the logger ``edgernn.kernels``, at most once per
process (one compile brings the next ones: the message covers them all). Without any logging
configuration Python prints a warning on stderr through its last-resort handler, so a plain
script shows it; the ``edgernn`` command prints it as ``edgernn: <message>``. To silence it::

    import logging
    logging.getLogger("edgernn").setLevel(logging.ERROR)

(or ``logging.getLogger("edgernn.kernels")``, for this message only).
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("edgernn.kernels")

MESSAGE = ("compiling edgernn's kernels for this CPU: 10-20 s the first time, longer on a Raspberry-Pi-class "
           "board; Numba keeps them in its on-disk cache for later processes, and `edgernn warmup MODEL` "
           "does this ahead of time")

_lock = threading.Lock()
_announced = False
_watching = False


def announce() -> None:
    """Log :data:`MESSAGE`, unless this process already did."""
    global _announced
    with _lock:
        if _announced:
            return
        _announced = True
    logger.warning(MESSAGE)


def _is_ours(dispatcher) -> bool:
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", None) or ""
    return module.startswith(__name__.rpartition(".")[0] + ".")


def watch() -> None:
    """Announce before the first of this package's kernels that Numba compiles (not loads).

    Imports Numba: called from :mod:`edgernn.kernels._config` only, which Numba's users import.
    The listener stays registered (removing it while Numba broadcasts would skip the next
    listener); after the first announcement it costs a flag test per compile.
    """
    global _watching
    with _lock:
        if _watching:
            return
        _watching = True
    try:
        from numba.core import event
    except ImportError:  # a Numba without the event API: compiles go unannounced
        return

    class _Listener(event.Listener):
        def on_start(self, started):
            if not _announced and _is_ours((started.data or {}).get("dispatcher")):
                announce()

        def on_end(self, ended):
            pass

    event.register("numba:compile", _Listener())
