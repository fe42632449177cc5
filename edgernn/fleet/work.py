"""What runs on the workers: the plugin that holds the model, and the task that replays one chunk.

:class:`ReplayPlugin` is registered once per replay (``Client.register_plugin``): the scheduler
sends it -- the ``.ernn`` file's bytes, or the int8 model's integer spec -- to every worker once,
and to every worker that joins later (one that replaces a killed worker too). Its ``setup`` loads
the model and runs it once on zeros, which compiles (or loads from Numba's cache) every kernel it
uses, so no task pays for that; it also tunes the worker's allocator (see ``MMAP_THRESHOLD``).

:func:`run_chunk` replays one task of the plan: it reads its pieces (only the rows of its devices),
runs each device's rows in time order through one stream of batch 1 from the device's state
(the previous chunk's final state, a ``--initial-state`` file, or zero), and writes, each to a
temporary name then renamed into place: the output part, the final states (a state file of
:mod:`edgernn.statefile`, one row per device, in the task's device order) and last a small marker
that says the task is done. A task that is run twice (a worker died after writing) writes the same
files again under the same names, so the output never holds a row twice.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time as clock
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import statefile
from ..errors import InvalidInput
from .source import ROW, device_order, features_of, keep_devices, read_piece

try:  # distributed is the fleet extra's; this module is only imported by edgernn.fleet
    from distributed import WorkerPlugin, get_worker
except ImportError:  # pragma: no cover - edgernn.fleet.replay says what to install
    WorkerPlugin, get_worker = object, None

PARTS = "part-{group:06d}-{chunk:05d}"
# Rows per Stream.run call: the block path holds every step's input projections (4 x units float32
# a row for an LSTM), so a device's chunk runs in blocks of this many rows to bound that memory.
BLOCK_ROWS = 16384
# Dask starts its worker processes with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's
# mmap threshold at 128 KB: every block's temporaries (megabytes) are then mapped, faulted in page by
# page and unmapped on every Stream.run call, and the kernels ran ~1.5x slower in a worker than in a
# plain process (tools/bench/replay.py). The plugin lets this worker keep up to 128 MB of freed heap
# and serve allocations below 32 MB (glibc's largest mmap threshold) from it.
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 128 << 20


def _keep_block_memory() -> bool:
    """mallopt(M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) for this process, where the C library has it."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, MMAP_THRESHOLD)) and bool(libc.mallopt(-1, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False


DONE = "_done"  # a task's marker folder: written last, so a marker means the task's files are whole
STATES = "_state"  # each task's final states, where the next chunk of its devices starts from


def state_file_name(device) -> str:
    """The file of one device in an ``--initial-state`` folder: its key, %-quoted, + ``.state``."""
    return quote(str(device), safe="") + ".state"


class _QuietRefusals(logging.Filter):
    """Drops the worker's "Compute Failed" log of a task that refused its input (an EdgernnError):
    the client reports that error as one line, the worker's traceback of it would only repeat it."""

    REFUSALS = tuple(f"Exception: '{name}(" for name in ("InvalidInput", "InvalidStateFile", "EdgernnError"))

    def filter(self, record):
        text = record.getMessage()
        return not (text.startswith("Compute Failed") and any(r in text for r in self.REFUSALS))


class ReplayPlugin(WorkerPlugin):
    """The replay's model on each worker: loaded and warmed once (see the module's docstring)."""

    def __init__(self, name: str, model_bytes: bytes | None, qspec, fingerprint: str):
        self.name = name
        self.model_bytes = model_bytes
        self.qspec = qspec
        self.fingerprint = fingerprint
        self.model = None

    def setup(self, worker=None):
        self.tuned_allocator = _keep_block_memory()
        quiet = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _QuietRefusals) for f in quiet.filters):
            quiet.addFilter(_QuietRefusals())
        if self.qspec is not None:
            from ..quantize.runtime import QuantizedModel  # lazy: Numba, on the worker only

            model = QuantizedModel(self.qspec)
        else:
            from ..runtime import Model  # lazy: as above
            from ..store import load_spec

            folder = getattr(worker, "local_directory", None)
            fd, path = tempfile.mkstemp(suffix=".ernn", dir=folder)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(self.model_bytes)
                model = Model(load_spec(path))
            finally:
                os.unlink(path)
        if model.fingerprint != self.fingerprint:
            raise InvalidInput("the model on this worker is not the client's (fingerprints differ)")
        model.stream(1).run(np.zeros((1, 3, model.input_features), np.float32))  # compile / load every kernel
        self.model = model


class _States:
    """Stacked per-device states in the shape :func:`edgernn.statefile.save_state` writes."""

    def __init__(self, fingerprint: str, states: list):
        self.model = SimpleNamespace(fingerprint=fingerprint)
        self.batch_size = len(states)
        self._stacked = {name: np.concatenate([s[name] for s in states]) for name in states[0]}

    def get_state(self):
        return self._stacked


def split_states(stacked: dict, devices: list) -> dict:
    return {device: {name: value[i : i + 1] for name, value in stacked.items()} for i, device in enumerate(devices)}


def _atomic_json(path: Path, value) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _slices(table: pa.Table, by: str, time: str, sort: bool) -> dict:
    """``{device: row indices of table, in time order}``."""
    if table.num_rows == 0:
        return {}
    names, codes, _, order = device_order(table, by, time, sort)
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], len(order)]
    return {names[sorted_codes[s]]: order[s:e] for s, e in zip(starts, ends)}


def _as_type(column, kind, name: str):
    """The key or time column in the type of the input's first file: one schema for every part."""
    if column.type == kind:
        return column
    try:
        return column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(f"column {name!r} is {column.type} in one file and {kind} in the first: ({exc})") from None


def _concat(tables: list, what: str) -> pa.Table:
    """Tables of files whose column types differ (int32 here, int64 there) made one, or a clear error."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"{what}: the files' key or time columns are of types that do not mix ({exc})") from None


def run_chunk(context: dict, task: dict, previous) -> dict | None:
    """Replay one task; returns the final states of its devices for the next chunk of a chain
    (None after a chain's last chunk). ``previous``: that dict from the chunk before, or
    ``("file", path, devices)`` for a chunk before that a resumed replay finished earlier, or None."""
    started, cpu_started = clock.perf_counter(), clock.process_time()
    plugin = get_worker().plugins[context["plugin"]]
    model, source = plugin.model, context["source"]
    by, tm, features = source.by, source.time, source.features
    out = Path(context["output"])
    devices = [d for d, _ in task["devices"]]
    wanted: dict = {}
    for device, pieces in task["devices"]:
        for piece in pieces:
            wanted.setdefault(piece, set()).add(device)
    parts: dict = {}  # device -> [table slice per piece, in time order]
    for piece in sorted(wanted):
        file_index, row_group, first, _ = context["pieces"][piece]
        table = read_piece(source, file_index, row_group, first, [by, tm, *features])
        table = keep_devices(table, by, wanted[piece])
        for device, rows in _slices(table, by, tm, context["sort"]).items():
            parts.setdefault(device, {})[piece] = table.take(pa.array(rows))
    read_seconds = clock.perf_counter() - started

    if isinstance(previous, tuple):  # a resumed chain: the state file of the chunk before
        _, path, before = previous
        previous = split_states(statefile.read_state(path, plugin.fingerprint, len(before)), before)
    stream = model.stream(1)
    outputs, finals, kernel_seconds, from_files = [], [], 0.0, 0
    for device, pieces in task["devices"]:
        table = _concat([parts[device][p] for p in pieces if p in parts.get(device, {})], f"device {device!r}")
        state = None if previous is None else previous.get(device)
        if state is None and task["chunk"] == 0 and context.get("initial_state"):
            path = Path(context["initial_state"]) / state_file_name(device)
            if path.exists():
                state = statefile.read_state(path, plugin.fingerprint, 1)
                from_files += 1
        if state is None:
            stream.reset()
        else:
            stream.set_state(state, allow_nonfinite=True)
        t0 = clock.perf_counter()
        x = features_of(table, features)
        y = np.empty((len(x), model.output_features), np.float32)
        for a in range(0, len(x), BLOCK_ROWS):  # the state carried: the same as one run over all rows
            y[a : a + BLOCK_ROWS] = stream.run(x[None, a : a + BLOCK_ROWS])[0]
        kernel_seconds += clock.perf_counter() - t0
        finals.append(stream.get_state())
        columns = {name: _as_type(table.column(name), source.schema.field(name).type, name) for name in (by, tm)}
        columns.update({name: pa.array(y[:, j]) for j, name in enumerate(context["outputs"])})
        outputs.append(pa.table(columns))
    t0 = clock.perf_counter()
    name = PARTS.format(group=task["group"], chunk=task["chunk"])
    result = _concat(outputs, f"the devices of {name}").replace_schema_metadata(None)
    rows = result.num_rows
    if rows != task["rows"]:  # the input changed under the replay
        raise InvalidInput(f"{name}: read {rows} rows where the scan counted {task['rows']}: "
                           "did the input change during the replay?")
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
    os.close(fd)
    pq.write_table(result, tmp)
    os.replace(tmp, out / f"{name}.parquet")
    statefile.save_state(_States(plugin.fingerprint, finals), out / STATES / f"{name}.state")
    _atomic_json(out / DONE / f"{name}.json", {
        "plan": context["plan"], "rows": rows, "devices": len(devices), "from_files": from_files,
        "read_seconds": read_seconds, "kernel_seconds": kernel_seconds,
        "write_seconds": clock.perf_counter() - t0, "seconds": clock.perf_counter() - started,
        "cpu_seconds": clock.process_time() - cpu_started,  # below "seconds": the worker waited for a core
        "worker": get_worker().address})
    if task["chunk"] + 1 == task["chunks"]:
        return None
    return dict(zip(devices, finals))


__all__ = ["ReplayPlugin", "run_chunk", "state_file_name", "split_states", "PARTS", "DONE", "STATES", "ROW"]
