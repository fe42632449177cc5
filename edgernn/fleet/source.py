"""The recorded rows: a Parquet dataset (a file or a folder, hive-partitioned or not) or CSV files.

A *piece* is the unit everything reads: one row group of a Parquet file, or one whole CSV file.
The client only lists files (:func:`open_source`) and checks the columns against the first file's
schema; the pieces themselves are read by the tasks on the workers (:func:`read_piece`), which
check every column's type and every value that could not become a float32 feature, and raise one
:class:`~edgernn.errors.InvalidInput` that names the file, the row, the device and the column.

Rows are numbered from 0 in file order within each file (a CSV file's line is that row + 2, after
its header line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import InvalidInput

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
ROW = "__edgernn_row"  # the row number in the file, carried through filters for messages


@dataclass
class Source:
    """What the tasks need to read the input: the files, their format, the columns."""

    root: str
    format: str
    files: list  # [(path, {hive partition column: value})]
    schema: pa.Schema  # the first file's columns, with the hive partition columns last
    partition_columns: list = field(default_factory=list)
    by: str = ""
    time: str = ""
    features: list = field(default_factory=list)

    def where(self, path: str, row: int | None = None) -> str:
        shown = os.path.relpath(path, self.root) if os.path.isdir(self.root) else path
        if row is None:
            return shown
        return f"{shown}, line {row + 2}" if self.format == "csv" else f"{shown}, row {row}"

    def listing(self) -> list:
        """Every file with its size and modification time: what a resumed replay compares."""
        out = []
        for path, _ in self.files:
            st = os.stat(path)
            out.append([os.path.relpath(path, self.root) if os.path.isdir(self.root) else path, st.st_size,
                        st.st_mtime_ns])
        return out


def _kind(path: str) -> str | None:
    return FORMATS.get(os.path.splitext(path)[1].lower())


def open_source(path, by: str, time: str, features=None, expected_features: int | None = None) -> Source:
    """List the input's files and check its columns (of the first file) before any work starts.

    ``features``: column names, or None for every numeric column but ``by``, ``time`` and the hive
    partition columns, in file order. ``expected_features``: the model's input size."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InvalidInput(f"{path}: no such file or folder")
    if os.path.isdir(path):
        kinds = set()
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
            kinds |= {_kind(n) for n in names if not n.startswith(("_", "."))}
        kinds.discard(None)
        if len(kinds) != 1:
            found = ", ".join(sorted(kinds)) or "no .parquet, .pq or .csv file"
            raise InvalidInput(f"{path}: replay reads a folder of Parquet or of CSV files, found {found}")
        kind = kinds.pop()
    else:
        kind = _kind(path)
        if kind is None:
            raise InvalidInput(f"{path}: not a .parquet, .pq or .csv file")
    try:
        dataset = ds.dataset(path, format=kind, partitioning="hive", exclude_invalid_files=False)
        fragments = [f for f in dataset.get_fragments() if _kind(f.path) == kind]
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read it as {kind}: {exc}") from None
    if not fragments:
        raise InvalidInput(f"{path}: no {kind} file in it")
    files = sorted((f.path, {k: _plain(v) for k, v in ds.get_partition_keys(f.partition_expression).items()})
                   for f in fragments)
    schema = dataset.schema
    partition_columns = [name for name in schema.names if any(name in keys for _, keys in files)]
    source = Source(os.path.abspath(path) if os.path.isdir(path) else path, kind,
                    [(p, k) for p, k in files], schema, partition_columns, by, time)
    source.features = _choose_features(source, features, expected_features)
    return source


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def numeric(arrow_type) -> bool:
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def _choose_features(source: Source, features, expected: int | None) -> list:
    schema, names = source.schema, source.schema.names
    problems = [f"no column {c!r} (the {what} column)" for c, what in ((source.by, "key"), (source.time, "time"))
                if c not in names]
    if features is None:
        chosen = [n for n in names if n not in (source.by, source.time) and n not in source.partition_columns
                  and numeric(schema.field(n).type)]
    else:
        chosen = list(features)
        problems += [f"no feature column {c!r}" for c in chosen if c not in names]
        problems += [f"feature column {c!r} is given twice" for c in sorted({c for c in chosen if chosen.count(c) > 1})]
        problems += [f"{c!r} is the {what} column, not a feature" for c in chosen
                     for col, what in ((source.by, "key"), (source.time, "time")) if c == col]
    if source.by in names:
        ktype = schema.field(source.by).type
        if pa.types.is_dictionary(ktype):
            ktype = ktype.value_type
        if not (pa.types.is_integer(ktype) or pa.types.is_string(ktype) or pa.types.is_large_string(ktype)):
            problems.append(f"the key column {source.by!r} is {ktype}: replay takes integer or text device keys")
    if source.time in names:
        ttype = schema.field(source.time).type
        if not (numeric(ttype) or pa.types.is_timestamp(ttype) or pa.types.is_date(ttype)):
            problems.append(f"the time column {source.time!r} is {ttype}, not a number, a date or a timestamp")
    if problems:
        raise InvalidInput(f"{source.where(source.files[0][0])}: the columns do not fit "
                           f"(columns: {', '.join(names)})", problems)
    if expected is not None and len(chosen) != expected:
        how = "--features lists" if features is not None else \
            "the input has, besides the key and time columns, these numeric columns"
        raise InvalidInput(f"the model takes {expected} input features, but {how} {len(chosen)}: "
                           f"{', '.join(chosen) or '(none)'}" + ("" if features is not None else
                                                                 " (choose them with --features a,b,c)"))
    return chosen


# -- reading, on the workers ---------------------------------------------------------------------
def pieces_of(source: Source, index: int) -> list:
    """The pieces of file ``index``: ``[(row_group or None, first row, rows)]``."""
    path = source.files[index][0]
    if source.format == "csv":
        return [(None, 0, None)]
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{source.where(path)}: not a readable Parquet file ({exc})") from None
    first, out = 0, []
    for rg in range(meta.num_row_groups):
        rows = meta.row_group(rg).num_rows
        out.append((rg, first, rows))
        first += rows
    return out


def read_piece(source: Source, index: int, row_group, first_row: int, columns) -> pa.Table:
    """Columns ``columns`` (a subset of by, time, features) of one piece, plus the row number
    column :data:`ROW`, each column checked: present, of a usable type, no missing value."""
    path, keys = source.files[index]
    on_disk = [c for c in columns if c not in keys]
    try:
        if source.format == "csv":
            table = pacsv.read_csv(path)
        else:
            parquet = pq.ParquetFile(path)
            present = parquet.schema_arrow.names
            table = parquet.read_row_group(row_group, columns=[c for c in on_disk if c in present])
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{source.where(path)}: cannot read it ({exc})") from None
    missing = [c for c in on_disk if c not in table.column_names]
    if missing:
        raise InvalidInput(f"{source.where(path)}: no column {', '.join(map(repr, missing))} "
                           f"(columns: {', '.join(table.column_names)})")
    rows = table.num_rows
    arrays = {}
    for name in columns:
        if name in keys:
            arrays[name] = pa.array([keys[name]] * rows, type=source.schema.field(name).type)
        else:
            arrays[name] = table.column(name).combine_chunks() if rows else pa.array([], table.column(name).type)
    arrays[ROW] = pa.array(np.arange(first_row, first_row + rows, dtype=np.int64))
    result = pa.table(arrays)
    _check(source, path, result)
    return result


def _first_row(table: pa.Table, mask) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _check(source: Source, path: str, table: pa.Table) -> None:
    by = table.column(source.by) if source.by in table.column_names else None

    def fail(column, position, problem):
        row = int(table.column(ROW)[position].as_py())
        device = f", device {by[position].as_py()!r}" if by is not None and column != source.by else ""
        raise InvalidInput(f"{source.where(path, row)}{device}: column {column!r} {problem}")

    for name in table.column_names:
        if name == ROW:
            continue
        column = table.column(name)
        if column.null_count:
            fail(name, _first_row(table, column.is_null().to_numpy(zero_copy_only=False)), "has no value")
        if name == source.time:
            kind = column.type
            if not (numeric(kind) or pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
                fail(name, 0, f"is {kind}, not a number, a date or a timestamp")
            if pa.types.is_floating(kind):
                bad = np.isnan(column.to_numpy())
                if bad.any():
                    fail(name, _first_row(table, bad), "is NaN (a time must be a number)")
        elif name in source.features and not numeric(column.type):
            values = column.cast(pa.string()).to_pylist() if pa.types.is_string(column.type) or \
                pa.types.is_large_string(column.type) else None
            if values is not None:
                for position, value in enumerate(values):
                    try:
                        float(value)
                    except ValueError:
                        fail(name, position, f"holds {value!r}, not a number")
            fail(name, 0, f"is {column.type}, not numeric (replay reads integer and float feature columns)")


def time_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The time column as numbers that order like it (int64 for timestamps and dates)."""
    if pa.types.is_date32(column.type):
        column = column.cast(pa.int32()).cast(pa.int64())
    elif pa.types.is_timestamp(column.type) or pa.types.is_date64(column.type):
        column = column.cast(pa.int64())
    return np.asarray(column.to_numpy(zero_copy_only=False))


def device_order(table: pa.Table, by: str, time: str, sort: bool):
    """``(device names, codes, times, order)``: ``order`` lists the rows device by device, each
    device's rows in file order (or by time, with ``sort``); ``codes[i]`` is row i's device."""
    encoded = table.column(by).combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    times = time_values(table.column(time).combine_chunks())
    order = np.lexsort((times, codes)) if sort else np.argsort(codes, kind="stable")
    return encoded.dictionary.to_pylist(), codes, times, order


def keep_devices(table: pa.Table, by: str, devices) -> pa.Table:
    """The rows of ``table`` whose key is one of ``devices``."""
    value_set = pa.array(list(devices), type=table.column(by).type)
    return table.filter(pc.is_in(table.column(by), value_set=value_set))


def features_of(table: pa.Table, features) -> np.ndarray:
    """The feature columns as one float32 (rows, features) array."""
    out = np.empty((table.num_rows, len(features)), np.float32)
    for j, name in enumerate(features):
        out[:, j] = table.column(name).to_numpy(zero_copy_only=False)
    return out
