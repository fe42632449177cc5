"""The file read in a child process with a time limit, because libhdf5 can loop forever in native
code on a corrupt file.

The file itself (zip, JSON members, and every h5py call: config attributes, all weight datasets)
is read in the child (:func:`_read_isolated`); the file of an in-memory model, just written by
Keras, is read in process. The child's answer comes back pickled and is unpickled from an
allow-list (the answer module); the converter then works on plain dicts and numpy arrays.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import sys
from pathlib import Path

from ...errors import InvalidModelFile
from .answer import _CHILD_PROTOCOL, _Failure, _load_child_answer
from . import container  # container._read_container looked up at call time: tests replace it there

# libhdf5 can spin forever in native code on a corrupt file (HDFGroup/hdf5#1707), where no Python
# timeout reaches it, so the HDF5 part of reading a file runs in a child process killed after this
# many seconds (environment variable EDGERNN_HDF5_TIMEOUT overrides it). Real models take well
# under a second; a multi-GB one a few seconds.
HDF5_TIMEOUT = 60.0


def _hdf5_timeout() -> float:
    text = os.environ.get("EDGERNN_HDF5_TIMEOUT", "").strip()
    if not text:
        return HDF5_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"EDGERNN_HDF5_TIMEOUT={text!r}: expected a number of seconds > 0")
    return value


def _read_child(conn, path: str, label: str) -> None:
    """Entry of the child process: read the file, send back ("ok", values) or ("error", _Failure)."""
    try:
        answer = ("ok", container._read_container(Path(path), label))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        answer = ("error", _Failure(exc))
    try:
        payload = pickle.dumps(answer, protocol=_CHILD_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - e.g. a value that does not pickle
        payload = pickle.dumps(("error", _Failure(RuntimeError(f"the HDF5 reader could not send its result: {exc}"))),
                               protocol=_CHILD_PROTOCOL)
    conn.send_bytes(payload)
    conn.close()


def _read_isolated(path: Path, label: str):
    """:func:`_read_container` in a child process with a time limit (:data:`HDF5_TIMEOUT`).

    libhdf5 can spin forever in native code on a corrupt file, which no in-process timeout can
    interrupt; a child process can be killed. Linux forks the child (cheap: h5py is already
    imported, and it runs only zipfile, json, h5py and numpy code, never TensorFlow's or any other
    thread's); other systems spawn it (a script that converts at import time then needs the usual
    ``if __name__ == "__main__":`` guard). The values come back through a pipe, pickled by the
    child (dicts, str, numpy arrays, our error objects, never bytes taken from the file) and
    unpickled here by a restricted unpickler that admits only those types (:data:`_CHILD_GLOBALS`). An error raised in the child is raised here
    again, same type and message; a child that does not answer within the limit is killed and the
    file refused with :class:`InvalidModelFile`.
    """
    timeout = _hdf5_timeout()
    if multiprocessing.current_process().daemon:  # e.g. a multiprocessing.Pool worker: no children
        return container._read_container(path, label)  # allowed there, so no time limit either
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_read_child, args=(sender, str(path), label), name="edgernn-hdf5-reader",
                            daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise InvalidModelFile(
                f"{label}: the HDF5 reader did not finish within {timeout:g} seconds (corrupt file?)"
            )
        try:
            payload = receiver.recv_bytes()
        except (EOFError, OSError) as exc:  # the child died without answering: a crash in native code
            child.join(5)
            raise InvalidModelFile(
                f"{label}: the HDF5 reader stopped without an answer (exit code {child.exitcode}; corrupt file?)"
            ) from exc
        child.join(5)  # it exits as soon as it has sent its answer
        try:
            status, value = _load_child_answer(payload)
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
            raise InvalidModelFile(f"{label}: the HDF5 reader's answer is malformed: {exc}") from exc
    finally:
        receiver.close()
        if child.is_alive():  # hung (or slow to exit): SIGKILL, then reap it
            child.kill()
            child.join()
        child.close()
    if status == "error":
        value.reraise()
    return value
