"""Stream state on disk that survives power loss: ``Stream.save_state`` / ``Stream.load_state``.

A state file is the same container as an ``.ernn`` file (a ZIP of ``header.json`` and ``.npy``
members, see :mod:`edgernn.store`), written atomically (temporary file, fsync, rename, fsync of
the folder), so a crash mid-write leaves the previous file intact. Its header names the model it
belongs to (:func:`edgernn.store.fingerprint`, a SHA-256 of graph and weights) and the batch size,
and carries a SHA-256 checksum of the arrays; loading refuses a file of another model, another
batch size, or whose arrays do not match their checksum, and leaves the stream untouched.

The arrays are float32 (a :class:`~edgernn.Stream`), or int8 h and int16 c for a stream of the int8
simulation (:class:`~edgernn.quantize.QuantizedStream`; with a Conv1D or pooling also its int8 ring
and int32 counters, a global pooling's int32 running values, the int32 emitted flags): a file
holding integer arrays is written
as format version 2 (its checksum covers each array's dtype too), one of float32 arrays only as
version 1, which every reader since the first understands -- unless the stream has a Conv1D or
pooling: its ring of past inputs and counters (see :mod:`edgernn.kernels.window`) make version 3
(float32, checksummed as version 1), which readers from before streaming convolutions refuse by
its version instead of by its unknown names. Every version is still read.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import EdgernnError, InvalidStateFile
from .store import HEADER, write_archive

FORMAT = "edgernn-state"
FORMAT_VERSION = 1
FORMAT_VERSION_INTEGER = 2  # a file with int8 / int16 arrays (the int8 simulation's state)
FORMAT_VERSION_WINDOWS = 3  # float32, with the state of a Conv1D or pooling (rings, counters, running pools)
VERSIONS = (FORMAT_VERSION, FORMAT_VERSION_INTEGER, FORMAT_VERSION_WINDOWS)
DTYPES = (np.float32, np.int8, np.int16, np.int32)  # int32: the int8 simulation's window counters and sums
MAX_BYTES = 256 << 20


def _checksum(arrays: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        integer = np.asarray(arrays[name]).dtype.kind in "iu"
        array = np.ascontiguousarray(arrays[name], dtype=None if integer else np.float32)
        digest.update(name.encode())
        digest.update(repr(array.shape).encode())
        if integer:  # (version 2 only: a float32 array hashes as it always has)
            digest.update(array.dtype.str.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_state(stream, path) -> None:
    """Write ``stream``'s state to ``path`` atomically; an OSError names ``path``."""
    state = stream.get_state()
    integer = any(np.asarray(a).dtype.kind in "iu" for a in state.values())
    version = FORMAT_VERSION_INTEGER if integer else (FORMAT_VERSION_WINDOWS if getattr(stream, "_windows", None)
                                                      else FORMAT_VERSION)
    header = {
        "format": FORMAT,
        "format_version": version,
        "edgernn_version": __version__,
        "model": stream.model.fingerprint,
        "batch_size": stream.batch_size,
        "names": sorted(state),
        "checksum": _checksum(state),
    }
    try:
        write_archive(path, header, {f"{name}.npy": value for name, value in state.items()})
    except OSError as exc:  # the message names the path given, not the temporary file beside it
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def read_state(path, fingerprint: str, batch_size: int) -> dict:
    """The state dict stored in ``path``, after checking it belongs to this model and batch size."""
    path = Path(path)

    def fail(problem):
        raise InvalidStateFile(f"{path}: {problem}")

    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            if HEADER not in infos or sum(i.file_size for i in infos.values()) > MAX_BYTES:
                fail("not an edgernn state file")
            header = json.loads(archive.read(HEADER))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                fail("not an edgernn state file")
            if header.get("format_version") not in VERSIONS:
                fail(f"state format version {header.get('format_version')!r} is not one of "
                     f"{', '.join(map(str, VERSIONS))}")
            if header.get("model") != fingerprint:
                fail("the state belongs to another model")
            if header.get("batch_size") != batch_size:
                fail(f"the state is of {header.get('batch_size')!r} streams, this stream has {batch_size}")
            names = header.get("names")
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                fail("malformed list of states")
            state = {}
            for name in names:
                member = f"{name}.npy"
                if member not in infos:
                    fail(f"state {name!r} is missing")
                state[name] = np.lib.format.read_array(io.BytesIO(archive.read(member)), allow_pickle=False)
    except FileNotFoundError:
        raise InvalidStateFile(f"{path}: no such file") from None
    except EdgernnError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:  # truncated, CRC, JSON, .npy
        raise InvalidStateFile(f"{path}: unreadable state file ({exc})") from None
    allowed = DTYPES if header.get("format_version") == FORMAT_VERSION_INTEGER else (np.float32,)
    if any(a.dtype not in allowed for a in state.values()) or _checksum(state) != header.get("checksum"):
        fail("checksum mismatch: the state is corrupted")
    return state


def load_state(stream, path) -> None:
    """Restore ``stream``'s state from ``path``; on any problem, raise and leave it untouched."""
    stream.set_state(read_state(path, stream.model.fingerprint, stream.batch_size))
