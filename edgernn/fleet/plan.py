"""From the input's key and time columns to the list of tasks a replay runs.

**Scan** (:func:`scan_file`, one Dask task per file): reads only the key and time columns of every
piece (a Parquet row group, a CSV file) and checks, before any output is written, that no key or
time is missing, that each device's times rise within a piece (``sort=True`` sorts them instead)
and that no (device, time) comes twice; feature columns are checked from the file's schema and its
row-group statistics (read only where a column is not numeric or may hold an empty value). It
returns, per piece and device, the number of rows and the first and last time.

**Plan** (:func:`make_plan`, on the client): each device's pieces are put in time order; two pieces
of one device whose times overlap are refused (a device's rows must not interleave across pieces),
a time shared by two pieces is a duplicate. Devices, in the order of their first piece, are packed
into groups of at most ``task_rows`` rows: one task each, every device run whole. A device with more
rows than that is a group of its own, cut at piece boundaries into chunks of at most ``task_rows``
rows (a piece is never split, so one piece larger than that is one chunk): a chain of tasks, each
starting from the final state of the one before. The plan is deterministic (same input, options
and model: same tasks), which is what lets a restarted replay trust what the last one finished.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidInput
from .source import ROW, Source, device_order, numeric, pieces_of, read_piece


def _show_time(value):
    return value.item() if isinstance(value, np.generic) else value


def _feature_columns_to_read(source: Source, index: int) -> list:
    """Feature columns of a Parquet file that the schema or the statistics cannot vouch for."""
    path, keys = source.files[index]
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    meta = parquet.metadata
    doubtful = []
    for name in source.features:
        if name in keys:
            continue
        if name not in schema.names or not numeric(schema.field(name).type):
            doubtful.append(name)  # read_piece names the missing column or the first bad value
            continue
        position = [meta.schema.column(i).path for i in range(meta.num_columns)].index(name)
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(position).statistics
            if stats is None or not stats.has_null_count or stats.null_count:
                doubtful.append(name)
                break
    return doubtful


def scan_file(source: Source, index: int, sort: bool = False) -> dict:
    """Check file ``index`` and summarize it: ``{"pieces": [(row_group, first_row, rows)],
    "summary": [(devices (list), rows, tmin, tmax) per piece]}``."""
    path = source.files[index][0]
    columns = [source.by, source.time]
    if source.format == "csv":
        columns += source.features  # the whole file is read anyway
    else:
        columns += _feature_columns_to_read(source, index)
    pieces, summary = [], []
    for row_group, first, _ in pieces_of(source, index):
        table = read_piece(source, index, row_group, first, columns)
        pieces.append((row_group, first, table.num_rows))
        summary.append(_summarize(source, path, table, sort))
    return {"pieces": pieces, "summary": summary}


def _summarize(source: Source, path: str, table: pa.Table, sort: bool):
    if table.num_rows == 0:
        return [], np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    devices, codes, times, order = device_order(table, source.by, source.time, sort)
    rows = table.column(ROW).to_numpy()
    c, t = codes[order], times[order]
    same = c[1:] == c[:-1]
    bad = np.flatnonzero(same & (t[1:] <= t[:-1]))
    if bad.size:
        i = bad[np.argmin(rows[order][bad + 1])] if not sort else bad[0]
        before, at = order[i], order[i + 1]
        device = devices[c[i]]
        shown = table.column(source.time)
        if t[i + 1] == t[i]:
            raise InvalidInput(f"{source.where(path, int(rows[at]))}, device {device!r}: time "
                               f"{_show_time(shown[int(at)].as_py())!r} comes twice for this device (also at "
                               f"{'line' if source.format == 'csv' else 'row'} "
                               f"{int(rows[before]) + (2 if source.format == 'csv' else 0)}): duplicate (device, time) rows")
        raise InvalidInput(f"{source.where(path, int(rows[at]))}, device {device!r}: time "
                           f"{_show_time(shown[int(at)].as_py())!r} is earlier than the device's row before it "
                           f"({_show_time(shown[int(before)].as_py())!r}): the rows of a partition must be in time "
                           "order for each device (or pass --sort to sort them)")
    starts = np.flatnonzero(np.r_[True, ~same])
    ends = np.r_[starts[1:], len(c)] - 1
    return [devices[k] for k in c[starts]], np.diff(np.r_[starts, len(c)]), t[starts], t[ends]


def make_plan(source: Source, scans: list, task_rows: int) -> dict:
    """The tasks of a replay from the files' scans (see the module's docstring)."""
    pieces = []  # global piece id -> (file index, row_group, first row, rows)
    per_device: dict = {}

    def where(piece):
        file_index, row_group = pieces[piece][:2]
        return source.where(source.files[file_index][0]) + (
            f" (row group {row_group})" if row_group is not None and source.format == "parquet" else "")

    for file_index, scan in enumerate(scans):
        for (row_group, first, rows), (devices, counts, tmin, tmax) in zip(scan["pieces"], scan["summary"]):
            piece = len(pieces)
            pieces.append((file_index, row_group, first, rows))
            for device, count, lo, hi in zip(devices, counts.tolist(), tmin.tolist(), tmax.tolist()):
                per_device.setdefault(device, []).append((lo, hi, piece, count))
    for device, entries in per_device.items():
        entries.sort()
        for (lo0, hi0, p0, _), (lo1, hi1, p1, _) in zip(entries, entries[1:]):
            if lo1 == hi0:
                raise InvalidInput(f"device {device!r}: time {lo1!r} comes twice, in {where(p0)} and in {where(p1)}: "
                                   "duplicate (device, time) rows")
            if lo1 < hi0:
                raise InvalidInput(f"device {device!r}: its rows in {where(p0)} (times {lo0!r} to {hi0!r}) and in "
                                   f"{where(p1)} ({lo1!r} to {hi1!r}) interleave in time: replay reads a device's "
                                   "partitions one after the other, so they must not overlap (sort the dataset "
                                   "by device and time)")
    order = sorted(per_device, key=lambda d: (min(e[2] for e in per_device[d]), d))  # (entries are in time order)
    tasks, group, group_rows, groups = [], [], 0, 0

    def flush():
        nonlocal group, group_rows, groups
        if group:
            tasks.append({"group": groups, "chunk": 0, "chunks": 1, "rows": group_rows, "devices": group})
            groups += 1
        group, group_rows = [], 0

    for device in order:
        entries = per_device[device]
        rows = sum(e[3] for e in entries)
        if rows <= task_rows:
            if group_rows + rows > task_rows:
                flush()
            group.append([device, [e[2] for e in entries]])
            group_rows += rows
            continue
        flush()
        chunks, current, current_rows = [], [], 0
        for entry in entries:
            if current and current_rows + entry[3] > task_rows:
                chunks.append((current, current_rows))
                current, current_rows = [], 0
            current.append(entry[2])
            current_rows += entry[3]
        chunks.append((current, current_rows))
        for k, (ids, n) in enumerate(chunks):
            tasks.append({"group": groups, "chunk": k, "chunks": len(chunks), "rows": n, "devices": [[device, ids]]})
        groups += 1
    flush()
    return {"pieces": pieces, "tasks": tasks, "devices": len(per_device), "rows": sum(t["rows"] for t in tasks)}


def plan_id(identity: dict, plan: dict) -> str:
    """A digest of everything that decides the output: the model, the options, the input files
    (names, sizes, times) and the tasks."""
    text = json.dumps({"identity": identity, "pieces": plan["pieces"], "tasks": plan["tasks"]}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()
