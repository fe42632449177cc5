"""Fleet replay: a model run over a whole fleet's recorded streams on Dask, as each device would have.

``edgernn.replay(model, "logs/", by="device", time="ts", output="scores/")`` (and ``edgernn
replay``): each device's rows, in time order, are one stream from zero state (or from its state
file); the output equals what one process gets from ``Stream.run`` over that device's whole series.
The parts: :mod:`.source` (reading and checking the input), :mod:`.plan` (scan and tasks),
:mod:`.work` (the worker plugin and the task), :mod:`.driver` (the client). Needs the ``fleet``
extra (``dask[distributed]``, ``pyarrow``); only ``edgernn.replay`` imports this package, so
``import edgernn`` imports neither. See docs/fleet.md.
"""

from __future__ import annotations

from ..errors import EdgernnError

try:
    import distributed  # noqa: F401
    import pyarrow  # noqa: F401
except ImportError as _missing:  # the fleet extra is not installed: replay says so when called
    _reason = str(_missing)

    def replay(*args, **kwargs):
        """Needs the fleet extra: ``pip install 'edgernn[fleet]'``."""
        raise EdgernnError(f"replay runs on Dask and reads Parquet: pip install 'edgernn[fleet]' ({_reason})")

    DEFAULT_TASK_ROWS = 1_000_000
else:
    from .driver import DEFAULT_TASK_ROWS, replay

__all__ = ["replay", "DEFAULT_TASK_ROWS"]
