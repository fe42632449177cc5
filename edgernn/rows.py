"""Rows in and out of ``edgernn run``: the input format, what happens to bad rows and to NaN, the
output writers, and the loop that steps a stream over the rows.

Input text (stdin, or ``-i FILE`` of any name but ``*.npy``), one row per line:

* Bytes are read line by line (LF or CRLF) and decoded as UTF-8; an undecodable byte makes its
  line a bad row (never a crash). Line numbers count every line from 1, the skipped ones too.
* Skipped: a blank line (spaces and tabs only) and a comment, a line whose first non-blank
  character is ``#``.
* Fields (``--delimiter``): ``auto`` (the default) splits a line holding a ``,`` or a ``;`` at
  every ``,`` and ``;``, and any other line at runs of spaces and tabs; ``,``, ``;`` and ``tab``
  split at that one character only; ``space`` and ``whitespace`` (the same) at runs of spaces and
  tabs. Spaces around a field are ignored; an empty field (``1,,3``, a trailing ``,``) is not a
  number.
* A number is what Python's ``float()`` reads (``-1.5``, ``2e-3``, ``nan``, ``inf``), rounded to
  float32 (so ``1e39`` is ``inf``).
* Header: with ``--header`` the first line that is neither blank nor a comment is skipped whatever
  it holds; with ``--no-header`` there is none; by default that first line is a header when it
  has exactly as many fields as a row and none of them is a number. No later line is a header.
* A row is exactly ``streams x input features`` numbers; stream ``k`` (from 0) has columns
  ``k*F+1 .. (k+1)*F``. Any other line is a bad row, handled per ``--on-bad-row``:
  ``stop`` (an error naming the line), ``skip`` (dropped, no output row) or ``reset`` (dropped,
  and every stream reset to zero state).

Input ``.npy`` (``-i FILE.npy``): a numeric array of shape (rows, streams x features) or (rows,
streams, features); its rows are "row 1", "row 2", ... in messages. It is checked whole before
the first step, so ``--on-bad-row``, ``--delimiter`` and ``--header`` do not apply.

NaN or an infinite value (``--on-nan``), per stream, in text and ``.npy`` alike:
``stop`` (default): an error naming the line and column, the row is not stepped.
``hold``: each stream whose part of the row holds one is not stepped: its state stays and its
output columns repeat its last output (zeros for a fresh stream, or as the ``--state`` file holds).
``reset``: each such stream is reset to zero state and not stepped; its output columns are zeros
(the last output of a fresh stream), and the next row starts it as a new sequence.
``propagate``: the row is stepped as it is; NaN enters that stream's state and every later output
of it is NaN (a ``--state`` file saved then cannot be loaded: a state holding NaN is refused).
The other streams of the row step normally in every case.

Output (``-o``): ``*.npy`` (any case) is a float32 array (rows, streams x outputs) written at the
end (also after SIGINT, SIGTERM, SIGHUP or an error, with the rows done so far), atomically: a
temporary file in the same folder, then a rename. Anything else, and stdout, is CSV text: one
line per output row, ``,``-separated, each value ``%.9g`` (which reads back to the same float32),
written and flushed as soon as its input row is stepped.

Signals (:class:`Signals`): SIGINT, SIGTERM and SIGHUP end the run as its input's end would --
the row being stepped is finished and written, ``--state`` saved, the ``.npy`` written -- and the
command then exits with status 128 + the signal's number (130, 143, 129).
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import threading
from pathlib import Path

import numpy as np

from .errors import InvalidInput

DELIMITERS = ("auto", ",", ";", "tab", "space", "whitespace")
BAD_ROW_POLICIES = ("stop", "skip", "reset")
NAN_POLICIES = ("stop", "hold", "reset", "propagate")
SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # each saves and ends the run; exit status 128 + its number


def os_problem(what: str, path, exc: OSError) -> InvalidInput:
    """``cannot read x.csv: No such file or directory``: an OSError as one line naming ``path``."""
    return InvalidInput(f"{what} {path}: {exc.strerror or exc}")


# -- input -----------------------------------------------------------------------------------------
def _splitter(delimiter: str):
    if delimiter == "auto":
        def split(text):
            if "," in text or ";" in text:
                return text.replace(";", ",").split(",")
            return text.split()
        return split
    if delimiter in ("space", "whitespace"):
        return str.split
    char = {"tab": "\t"}.get(delimiter, delimiter)
    if char not in (",", ";", "\t"):
        raise InvalidInput(f"unknown delimiter {delimiter!r}: one of {', '.join(DELIMITERS)}")
    return lambda text: text.split(char)


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def text_rows(lines, width: int, delimiter: str = "auto", header: bool | None = None, streams: int = 1):
    """Yield ``(label, values)`` for each row of the text in ``lines`` (bytes or str lines):
    ``values`` is a list of ``width`` floats for a good row, a str saying what is wrong for a bad
    one (see the module's docstring for the rules); ``label`` is ``"line N"``."""
    split = _splitter(delimiter)
    per_row = f"the model takes {width} per row" if streams == 1 else \
        f"{streams} streams x {width // streams} features take {width} per row"
    first = True
    for number, line in enumerate(lines, start=1):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        fields = split(text)
        if first:
            first = False
            if header or (header is None and len(fields) == width and not any(map(_is_number, fields))):
                continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            bad = next(k for k, f in enumerate(fields, start=1) if not _is_number(f))
            what = "empty" if not fields[bad - 1].strip() else f"not a number: {fields[bad - 1].strip()[:30]!r}"
            yield f"line {number}", f"field {bad} is {what} in {text[:60]!r}"
            continue
        if len(values) != width:
            yield f"line {number}", f"{len(values)} values, {per_row}"
            continue
        yield f"line {number}", values


def read_lines(file, name):
    """The lines of the open binary ``file``; a read error is one line naming ``name``."""
    try:
        yield from file
    except OSError as exc:
        raise os_problem("cannot read", name, exc) from None


def npy_rows(file, path, width: int):
    """``("row N", row)`` for each row of the ``.npy`` array in the open binary ``file``: read and
    checked whole now, so a bad file is refused before the first step."""
    try:
        array = np.load(file, allow_pickle=False)
        if not isinstance(array, np.ndarray):
            raise ValueError("an .npz archive, not one array")
        array = np.asarray(array, dtype=np.float32)
    except (ValueError, TypeError, OSError, EOFError) as exc:
        raise InvalidInput(f"{path}: not a readable .npy array of numbers ({exc})") from None
    if array.ndim:
        array = array.reshape(len(array), -1)
    if array.ndim != 2 or array.shape[1] != width:
        raise InvalidInput(f"{path}: shape {array.shape}, expected (rows, {width})")
    return ((f"row {number}", row) for number, row in enumerate(array, start=1))


def open_rows(path, stdin, width: int, delimiter: str = "auto", header: bool | None = None, streams: int = 1):
    """``(rows, file)`` for ``-i path``: ``*.npy`` (any case) read whole now by :func:`npy_rows`,
    None or ``-`` the text on the binary ``stdin``, any other name text; ``file`` is the file
    left open for the rows (the caller closes it), or None."""
    if path is None or path == "-":
        return text_rows(read_lines(stdin, "stdin"), width, delimiter, header, streams), None
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise os_problem("cannot read", path, exc) from None
    if str(path).lower().endswith(".npy"):
        with file:
            return npy_rows(file, path, width), None
    return text_rows(read_lines(file, path), width, delimiter, header, streams), file


# -- output ----------------------------------------------------------------------------------------
class OutputClosed(Exception):
    """The reader of stdout went away (``| head``): the run stops quietly."""


class CsvWriter:
    """CSV text to an open text file, each row flushed as it is written."""

    def __init__(self, file, name: str, owned: bool):
        self.file, self.name, self.owned = file, name, owned

    def write(self, values: np.ndarray) -> None:
        try:
            self.file.write(",".join(f"{v:.9g}" for v in values.tolist()) + "\n")
            self.file.flush()
        except BrokenPipeError:
            raise OutputClosed from None
        except OSError as exc:
            raise os_problem("cannot write", self.name, exc) from None

    def close(self) -> None:
        if self.owned:
            try:
                self.file.close()
            except OSError as exc:
                raise os_problem("cannot write", self.name, exc) from None


def check_writable(path, what: str) -> None:
    """Refuse now, not after hours of rows, a ``path`` that cannot be written atomically: a
    directory, or a folder where no file can be made."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{what} {path}: is a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise os_problem(what, path, exc) from None
    os.close(fd)
    os.unlink(probe)


class NpyWriter:
    """A float32 ``.npy`` of the rows written, saved atomically at :meth:`close`."""

    def __init__(self, path, width: int):
        check_writable(path, "cannot write")
        self.path, self.count = Path(path), 0
        self.block = np.empty((1024, width), np.float32)

    def write(self, values: np.ndarray) -> None:
        if self.count == len(self.block):
            self.block = np.concatenate([self.block, np.empty_like(self.block)])
        self.block[self.count] = values
        self.count += 1

    def close(self) -> None:
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "wb") as file:
                np.save(file, self.block[: self.count], allow_pickle=False)
                file.flush()
                os.fsync(file.fileno())
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600: give the file the usual permissions
            os.replace(tmp, self.path)
        except OSError as exc:
            raise os_problem("cannot write", self.path, exc) from None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)


def open_writer(path, width: int, stdout):
    """The writer of ``-o path``: ``*.npy`` (any case) an :class:`NpyWriter`, None or ``-`` CSV to
    ``stdout``, any other name CSV to that file (created or emptied now)."""
    if path is None or path == "-":
        return CsvWriter(stdout, "stdout", owned=False)
    if str(path).lower().endswith(".npy"):
        return NpyWriter(path, width)
    try:
        return CsvWriter(open(path, "w"), path, owned=True)
    except OSError as exc:
        raise os_problem("cannot write", path, exc) from None


# -- the loop --------------------------------------------------------------------------------------
class Interrupted(BaseException):
    """Raised by :class:`Signals` to leave a read that waits for input."""


class Signals:
    """For a ``with`` block: SIGINT, SIGTERM and SIGHUP end the run cleanly instead of killing it.

    A signal that comes while :func:`step_rows` waits for the next row ends the wait at once; one
    that comes while a row is being stepped lets that row finish (its output written), so the
    saved state is always the state after the last row written. ``received`` is the first signal
    (None if none came). Outside the main thread (where handlers cannot be set) it does nothing.
    """

    def __init__(self):
        self.received = None
        self.waiting = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
        if self.waiting:
            self.waiting = False
            raise Interrupted(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                if hasattr(signal, name):
                    number = getattr(signal, name)
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        return False


class Tally:
    """What a run did: rows read, stepped, and dropped or patched by a policy."""

    def __init__(self):
        self.read = self.stepped = 0
        self.bad_skipped = self.bad_reset = self.nan_held = self.nan_reset = self.nan_propagated = 0

    def summary(self) -> str | None:
        """One line for stderr when any row was dropped or patched, else None."""
        parts = [f"{n} {what}" for n, what in (
            (self.bad_skipped, "bad row(s) skipped"), (self.bad_reset, "bad row(s) skipped, every stream reset"),
            (self.nan_held, "row(s) with NaN or Inf held"), (self.nan_reset, "row(s) with NaN or Inf reset"),
            (self.nan_propagated, "row(s) with NaN or Inf stepped as they are")) if n]
        return f"warning: of {self.read} row(s) read: " + "; ".join(parts) if parts else None


def _nan_problem(label: str, x: np.ndarray) -> InvalidInput:
    streams, features = x.shape
    column = int(np.flatnonzero(~np.isfinite(x.reshape(-1)))[0])
    value = float(x.reshape(-1)[column])
    what = "NaN" if value != value else ("Inf" if value > 0 else "-Inf")
    where = f"column {column + 1}" + (f" (stream {column // features})" if streams > 1 else "")
    return InvalidInput(f"{label}: {what} in {where} (--on-nan hold, reset or propagate to go on)")


def step_rows(stream, rows, writer, *, on_bad_row="stop", on_nan="stop", save=None, save_every=100,
              signals=None) -> Tally:
    """Step ``stream`` over ``rows`` (``(label, values)`` pairs from :func:`text_rows` or
    :func:`npy_rows`), writing each output row to ``writer``; call ``save()`` after every
    ``save_every`` rows stepped. Stops at the end of the rows, when the reader of the output went
    away, or at a signal caught by ``signals``; raises InvalidInput per the ``stop`` policies."""
    if on_bad_row not in BAD_ROW_POLICIES or on_nan not in NAN_POLICIES:
        raise InvalidInput(f"on_bad_row is one of {BAD_ROW_POLICIES}, on_nan one of {NAN_POLICIES}")
    signals = signals or Signals()
    tally = Tally()
    x = np.empty((stream.batch_size, stream.input_features), np.float32)
    y = stream.get_state()["output"]  # always each stream's last output: what `hold` repeats
    xf, yf = x.reshape(-1), y.reshape(-1)
    step = stream.step
    finite = np.empty(x.shape, np.bool_)
    rows = iter(rows)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            while signals.received is None:
                signals.waiting = True  # a signal now ends the wait for the next row
                item = next(rows, None)
                signals.waiting = False
                if item is None:
                    break
                label, values = item
                tally.read += 1
                if isinstance(values, str):
                    _bad_row(stream, label, values, y, on_bad_row, tally)
                    continue
                xf[:] = values
                # xf . xf is finite only if every value is (a square never cancels): one cheap test
                # per row; only when it fails (NaN, Inf, or a huge value) look closer.
                if math.isfinite(xf.dot(xf)) or np.isfinite(x, out=finite).all():
                    step(x, out=y)
                else:
                    _nan_row(stream, label, x, y, ~finite.all(axis=1), on_nan, tally)
                try:
                    writer.write(yf)
                except OutputClosed:
                    break
                tally.stepped += 1
                if save is not None and tally.stepped % save_every == 0:
                    save()
    except Interrupted:
        pass  # only ever raised while waiting for a row: every row read before is written
    finally:
        signals.waiting = False
    return tally


def _bad_row(stream, label, problem, y, on_bad_row, tally) -> None:
    if on_bad_row == "stop":
        raise InvalidInput(f"{label}: {problem} (--on-bad-row skip or reset to go on)")
    if on_bad_row == "reset":
        stream.reset()
        y[:] = 0.0
        tally.bad_reset += 1
    else:
        tally.bad_skipped += 1


def _nan_row(stream, label, x, y, bad, on_nan, tally) -> None:
    """Step a row holding NaN or Inf (in the streams ``bad``) per ``on_nan``."""
    if on_nan == "stop":
        raise _nan_problem(label, x)
    if on_nan == "propagate":
        stream.step(x, out=y)
        tally.nan_propagated += 1
    else:
        _patch_step(stream, x, y, bad, on_nan)
        if on_nan == "hold":
            tally.nan_held += 1
        else:
            tally.nan_reset += 1


def _patch_step(stream, x, y, bad, policy) -> None:
    """One step of the streams whose row is finite; the ``bad`` ones held or reset (not stepped)."""
    if not bad.all():
        kept = stream.get_state() if policy == "hold" else None
        last = y[bad].copy()
        x[bad] = 0.0  # never let NaN into the kernel, even for a row that is thrown away
        stream.step(x, out=y)
        if policy == "hold":
            state = stream.get_state()
            for name, array in state.items():
                array[bad] = kept[name][bad]
            stream.set_state(state)
            y[bad] = last
    if policy == "reset":
        for index in np.flatnonzero(bad):
            stream.reset(int(index))
        y[bad] = 0.0
