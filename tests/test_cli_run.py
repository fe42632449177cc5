"""`edgernn run`: its input format, bad rows and NaN, .npy output, error paths and signals.

Expected outputs come from a Python stream of the same model stepped one row at a time over the
same rows, as the command steps them; its CSV values are ``%.9g``, which reads back to the same
float32, so most comparisons are exact.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgernn
from edgernn import ir
from edgernn.cli import main

FEATURES, OUTPUTS = 2, 2


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A GRU(4) -> Dense(2) chain on 2 features, saved as .ernn."""
    rng = np.random.default_rng(11)
    w = lambda *shape: ir.as_weight(rng.normal(scale=0.5, size=shape))  # noqa: E731
    gru = ir.Recurrent("gru", "gru", 4, FEATURES, w(2, 12), w(4, 12), w(12), recurrent_bias=w(12),
                       return_sequences=True)
    head = ir.Dense("head", w(4, OUTPUTS), w(OUTPUTS))
    spec = ir.ModelSpec((ir.Input("x", FEATURES),), (ir.Node(gru, ("x",), ("h",)), ir.Node(head, ("h",), ("y",))),
                        ("y",))
    path = tmp_path_factory.mktemp("run") / "m.ernn"
    edgernn.Model(spec).save(path)
    return path


def _rows(n, streams=1, seed=0):
    return np.random.default_rng(seed).normal(size=(n, streams * FEATURES)).astype(np.float32)


def _text(rows, sep=","):
    return "".join(sep.join(f"{v:.9g}" for v in row) + "\n" for row in rows)


def _stepped(model_path, rows, streams=1):
    """(outputs (rows, streams x outputs), final state) of a stream stepped row by row."""
    s = edgernn.load(model_path).stream(streams)
    out = np.array([s.step(row.reshape(streams, FEATURES)).reshape(-1) for row in rows], np.float32)
    return out.reshape(len(rows), streams * OUTPUTS), s.get_state()


def _parse(text):
    lines = text.strip().splitlines()
    return np.array([[float(v) for v in line.split(",")] for line in lines], np.float32).reshape(len(lines), -1)


def _run(model_path, *args, input=None):
    return CliRunner().invoke(main, ["run", str(model_path), *map(str, args)], input=input)


def _said(stderr):
    """What the command said on stderr, without the library's log lines (``edgernn: ...``, such as
    the notice before a first compile of the kernels, which depends on Numba's cache)."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith("edgernn: "))


def _one_line_error(result, *words):
    assert result.exit_code == 1, result.output
    said = _said(result.stderr)
    assert "error" not in result.stdout
    assert said.startswith("error: ") and len(said.strip().splitlines()) == 1, said
    assert "Traceback" not in result.output and ".tmp" not in said
    for word in words:
        assert str(word) in said, (word, said)


# -- the input format -----------------------------------------------------------------------------
def test_space_tab_and_semicolon_rows_read_like_commas(model_path):
    rows = _rows(6)
    expected, _ = _stepped(model_path, rows)
    for sep in (" ", "\t", "  \t ", ";", ", "):
        result = _run(model_path, input=_text(rows, sep))
        assert result.exit_code == 0, (sep, result.output)
        np.testing.assert_array_equal(_parse(result.stdout), expected)
    mixed = _text(rows[:3], " ") + _text(rows[3:], ",")  # auto decides line by line
    np.testing.assert_array_equal(_parse(_run(model_path, input=mixed).stdout), expected)


def test_forced_delimiter_reads_only_that_one(model_path):
    rows = _rows(3)
    expected, _ = _stepped(model_path, rows)
    for name, sep in (("tab", "\t"), (";", ";"), (",", ","), ("space", " "), ("whitespace", "\t ")):
        result = _run(model_path, "--delimiter", name, input=_text(rows, sep))
        assert result.exit_code == 0, (name, result.output)
        np.testing.assert_array_equal(_parse(result.stdout), expected)
    # a space-separated line is one field under --delimiter tab: a bad row, named
    _one_line_error(_run(model_path, "--delimiter", "tab", input=_text(rows, " ")), "line 1")
    _one_line_error(_run(model_path, "--delimiter", ",", input="1,,2\n"), "line 1", "field 2 is empty")


def test_header_is_only_the_first_line_or_by_flag(model_path):
    rows = _rows(3)
    expected, _ = _stepped(model_path, rows)
    # auto: the first content line (after comments and blanks) with one non-number per column
    for header in ("a,b\n", "# log of a sensor\n\nt h\n", "temp\thumidity\n"):
        result = _run(model_path, input=header + _text(rows))
        assert result.exit_code == 0, (header, result.output)
        np.testing.assert_array_equal(_parse(result.stdout), expected)
    # not a header: too few names, a number among them, or a later line
    _one_line_error(_run(model_path, input="a\n" + _text(rows)), "line 1", "not a number: 'a'")
    _one_line_error(_run(model_path, input="a,1\n" + _text(rows)), "line 1", "'a'")
    _one_line_error(_run(model_path, input=_text(rows[:2]) + "a,b\n" + _text(rows[2:])), "line 3", "'a'")
    # --header skips the first line whatever it holds; --no-header makes it a row
    result = _run(model_path, "--header", input=_text(rows))
    assert result.exit_code == 0
    np.testing.assert_array_equal(_parse(result.stdout), _stepped(model_path, rows[1:])[0])
    _one_line_error(_run(model_path, "--no-header", input="a,b\n" + _text(rows)), "line 1")


def test_garbled_bytes_are_a_bad_row_not_a_crash(model_path):
    rows = _rows(2)
    text = _text(rows[:1]).encode() + b"\xff\xfe\x00,1\n" + _text(rows[1:]).encode()
    _one_line_error(_run(model_path, input=text), "line 2")
    result = _run(model_path, "--on-bad-row", "skip", input=text)
    assert result.exit_code == 0
    np.testing.assert_array_equal(_parse(result.stdout), _stepped(model_path, rows)[0])


# -- bad rows ------------------------------------------------------------------------------------
def test_on_bad_row_stop_skip_reset(model_path, tmp_path):
    rows = _rows(6)
    text = _text(rows[:3]) + "1.0,x\n" + _text(rows[3:])  # line 4 is garbled
    stopped = _run(model_path, "--state", tmp_path / "state", input=text)
    _one_line_error(stopped, "line 4", "'x'", "--on-bad-row")
    np.testing.assert_array_equal(_parse(stopped.stdout), _stepped(model_path, rows[:3])[0])
    saved = edgernn.load(model_path).stream(1)
    saved.load_state(tmp_path / "state")  # saved after the last good row
    _same_state(saved.get_state(), _stepped(model_path, rows[:3])[1])

    skipped = _run(model_path, "--on-bad-row", "skip", input=text)
    assert skipped.exit_code == 0
    np.testing.assert_array_equal(_parse(skipped.stdout), _stepped(model_path, rows)[0])
    assert _said(skipped.stderr) == "warning: of 7 row(s) read: 1 bad row(s) skipped\n"

    reset = _run(model_path, "--on-bad-row", "reset", input=text)
    assert reset.exit_code == 0
    out = _parse(reset.stdout)
    np.testing.assert_array_equal(out[:3], _stepped(model_path, rows[:3])[0])
    np.testing.assert_array_equal(out[3:], _stepped(model_path, rows[3:])[0])  # from zero state
    assert "1 bad row(s) skipped, every stream reset" in reset.stderr


def _same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# -- NaN -----------------------------------------------------------------------------------------
def test_nan_stops_by_default_naming_line_and_column(model_path, tmp_path):
    rows = _rows(4)
    for bad in ("nan", "inf", "-inf", "1e39"):  # 1e39 is inf in float32
        text = _text(rows[:2]) + f"0.5,{bad}\n" + _text(rows[2:])
        result = _run(model_path, input=text)
        _one_line_error(result, "line 3", "column 2", "--on-nan")
        np.testing.assert_array_equal(_parse(result.stdout), _stepped(model_path, rows[:2])[0])
    # .npy input too, its rows named "row N"
    x = rows.copy()
    x[1, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    _one_line_error(_run(model_path, "-i", tmp_path / "x.npy"), "row 2", "NaN in column 1")
    # a huge but finite value is not NaN
    assert _run(model_path, input="3e19,3e19\n").exit_code == 0


def test_on_nan_hold_keeps_that_streams_state_and_repeats_its_output(model_path, tmp_path):
    rows = _rows(6, streams=2, seed=3)
    x = rows.copy()
    x[0, 2] = np.nan   # stream 1 at row 1: nothing before, so its held output is zeros
    x[3, 3] = np.inf   # stream 1 at row 4
    np.save(tmp_path / "x.npy", x)
    result = _run(model_path, "--streams", 2, "--on-nan", "hold", "-i", tmp_path / "x.npy", "--state", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert _said(result.stderr) == "warning: of 6 row(s) read: 2 row(s) with NaN or Inf held\n"
    out = _parse(result.stdout)
    stream0, _ = _stepped(model_path, rows[:, :2])
    kept = [1, 2, 4, 5]  # the rows stream 1 was stepped on
    stream1, state1 = _stepped(model_path, rows[kept, 2:])
    np.testing.assert_allclose(out[:, :2], stream0, rtol=1e-6, atol=1e-6)  # the other stream: untouched
    np.testing.assert_array_equal(out[0, 2:], 0.0)
    np.testing.assert_allclose(out[kept, 2:], stream1, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[3, 2:], out[2, 2:])  # held: the last output again
    saved = edgernn.load(model_path).stream(2)
    saved.load_state(tmp_path / "s")
    np.testing.assert_allclose(saved.get_state()["gru/h"][1], state1["gru/h"][0], rtol=1e-6, atol=1e-6)

    # one stream: the whole row is held, the state untouched
    one = _run(model_path, "--on-nan", "hold", input=_text(rows[:2, :2]) + "nan,1\n" + _text(rows[2:, :2]))
    out = _parse(one.stdout)
    np.testing.assert_array_equal(out[2], out[1])
    np.testing.assert_array_equal(np.delete(out, 2, axis=0), stream0)


def test_on_nan_reset_restarts_that_stream_with_zero_output(model_path, tmp_path):
    rows = _rows(6, streams=2, seed=4)
    x = rows.copy()
    x[2, 3] = np.nan  # stream 1 at row 3
    np.save(tmp_path / "x.npy", x)
    result = _run(model_path, "--streams", 2, "--on-nan", "reset", "-i", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    assert "1 row(s) with NaN or Inf reset" in result.stderr
    out = _parse(result.stdout)
    np.testing.assert_allclose(out[:, :2], _stepped(model_path, rows[:, :2])[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[:2, 2:], _stepped(model_path, rows[:2, 2:])[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[2, 2:], 0.0)
    np.testing.assert_allclose(out[3:, 2:], _stepped(model_path, rows[3:, 2:])[0], rtol=1e-6, atol=1e-6)


def test_on_nan_propagate_is_the_old_behaviour_and_says_so(model_path):
    rows = _rows(3)
    result = _run(model_path, "--on-nan", "propagate", input=_text(rows[:1]) + "nan,0\n" + _text(rows[1:]))
    assert result.exit_code == 0
    out = _parse(result.stdout)
    assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()
    assert _said(result.stderr) == "warning: of 4 row(s) read: 1 row(s) with NaN or Inf stepped as they are\n"
    assert _said(_run(model_path, "--on-nan", "propagate", input=_text(rows)).stderr) == ""  # nothing to count


# -- output ---------------------------------------------------------------------------------------
def test_npy_output_is_a_real_npy_file(model_path, tmp_path):
    rows = _rows(7)
    expected, _ = _stepped(model_path, rows)
    for name in ("y.npy", "Y.NPY"):
        result = _run(model_path, "-o", tmp_path / name, input=_text(rows))
        assert result.exit_code == 0, result.output
        y = np.load(tmp_path / name, allow_pickle=False)
        assert y.dtype == np.float32 and y.shape == (7, OUTPUTS)
        np.testing.assert_array_equal(y, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Y.NPY", "y.npy"]  # no temporary file left
    # any other name is CSV
    assert _run(model_path, "-o", tmp_path / "y.txt", input=_text(rows)).exit_code == 0
    np.testing.assert_array_equal(_parse((tmp_path / "y.txt").read_text()), expected)
    # no row at all: an empty array of the right width
    assert _run(model_path, "-o", tmp_path / "e.npy", input="").exit_code == 0
    assert np.load(tmp_path / "e.npy").shape == (0, OUTPUTS)


# -- errors ---------------------------------------------------------------------------------------
def test_file_errors_are_one_line_naming_the_path_given(model_path, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("1\n")
    (tmp_path / "text.npy").write_text("1,2\n")
    cases = [
        (["-i", tmp_path / "missing.csv"], tmp_path / "missing.csv"),
        (["-i", tmp_path / "missing.npy"], tmp_path / "missing.npy"),
        (["-i", tmp_path], tmp_path),
        (["-i", a_file], "line 1"),  # a row of 1 value where 2 are taken
        (["-i", tmp_path / "text.npy"], tmp_path / "text.npy"),
        (["-o", tmp_path / "no" / "y.csv"], tmp_path / "no" / "y.csv"),
        (["-o", tmp_path / "no" / "y.npy"], tmp_path / "no" / "y.npy"),
        (["-o", tmp_path], tmp_path),
        (["-o", tmp_path / "d.npy"], tmp_path / "d.npy"),
        (["-o", a_file / "y.npy"], a_file / "y.npy"),
        (["--state", a_file / "state"], a_file / "state"),
        (["--state", tmp_path / "no" / "state"], tmp_path / "no" / "state"),
        (["--state", tmp_path], tmp_path),
    ]
    (tmp_path / "d.npy").mkdir()
    for args, path in cases:
        result = _run(model_path, *args, input="1,2\n")
        _one_line_error(result, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "d.npy", "text.npy"]


def test_library_state_save_error_names_the_target_not_the_temporary_file(model_path, tmp_path):
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "state"
    with pytest.raises(OSError) as caught:
        edgernn.load(model_path).stream(1).save_state(target)
    assert caught.value.filename == str(target) and ".tmp" not in str(caught.value)


def test_option_ranges_are_usage_errors_naming_the_option(model_path):
    for option in ("--streams", "--state-every"):
        result = _run(model_path, option, 0, input="1,2\n")
        assert result.exit_code == 2
        assert f"'{option}'" in result.output and "batch_size" not in result.output
    assert _run(model_path, "--on-nan", "maybe").exit_code == 2
    assert _run(model_path, "--delimiter", "|").exit_code == 2


def test_help_documents_format_options_and_exit_statuses(model_path):
    text = CliRunner().invoke(main, ["run", "--help"]).output
    for word in ("--delimiter", "--header", "--no-header", "--on-bad-row", "--on-nan", "--streams", "--state",
                 "--state-every", "FILE.npy", "'#'", "Exit status", "143 SIGTERM", "129 SIGHUP", "130 SIGINT",
                 "usage", "CSV"):
        assert word in text, word


# -- signals and pipes (real processes) -----------------------------------------------------------
def _command(model_path, *args):
    script = Path(sys.executable).parent / "edgernn"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "edgernn.cli"]
    return [*head, "run", str(model_path), *map(str, args)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_saves_the_state_of_the_rows_answered(model_path, tmp_path, signum):
    """Rows fed slowly, then a signal while the command waits for the next one: it exits
    128 + signum with the state after exactly the rows it answered saved (--state-every is
    larger than the rows: only the signal's save writes the file)."""
    state = tmp_path / "state"
    process = subprocess.Popen(_command(model_path, "--state", state, "--state-every", 1000),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = _rows(5, seed=5)
    answered = []
    try:
        for row in rows:
            process.stdin.write(_text([row]))
            process.stdin.flush()
            answered.append(process.stdout.readline())
        time.sleep(0.3)
        assert not state.exists()
        process.send_signal(signum)
        assert process.wait(timeout=60) == 128 + signum, process.stderr.read()
    finally:
        process.kill()
        process.stdin.close()
    assert _said(process.stderr.read()) == ""
    expected, expected_state = _stepped(model_path, rows)
    np.testing.assert_array_equal(_parse("".join(answered)), expected)
    restored = edgernn.load(model_path).stream(1)
    restored.load_state(state)
    _same_state(restored.get_state(), expected_state)


def test_sigterm_writes_the_npy_output_of_the_rows_done(model_path, tmp_path):
    state, out = tmp_path / "state", tmp_path / "y.npy"
    process = subprocess.Popen(_command(model_path, "--state", state, "--state-every", 3, "-o", out),
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = _rows(5, seed=7)
    try:
        process.stdin.write(_text(rows))
        process.stdin.flush()
        deadline = time.monotonic() + 60
        while not state.exists() and time.monotonic() < deadline:  # saved after row 3
            time.sleep(0.05)
        time.sleep(1.0)  # rows 4 and 5 are in the pipe already
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM, process.stderr.read()
    finally:
        process.kill()
        process.stdin.close()
    expected, expected_state = _stepped(model_path, rows)
    y = np.load(out, allow_pickle=False)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)
    restored = edgernn.load(model_path).stream(1)
    restored.load_state(state)
    _same_state(restored.get_state(), expected_state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "y.npy"]


def test_sigterm_while_busy_saves_the_state_of_the_rows_answered(model_path, tmp_path):
    """A burst of rows and SIGTERM in the middle of it: the saved state is the state after exactly
    the rows whose output was written (the row being stepped is finished first)."""
    state = tmp_path / "state"
    rows = _rows(20000, seed=6)
    process = subprocess.Popen(_command(model_path, "--state", state, "--state-every", 997),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    feeder = threading.Thread(target=_feed, args=(process.stdin, _text(rows)), daemon=True)
    feeder.start()
    answered = [process.stdout.readline() for _ in range(200)]
    process.send_signal(signal.SIGTERM)
    answered += process.stdout.readlines()
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    count = len(answered)
    assert 200 <= count < len(rows)
    expected, expected_state = _stepped(model_path, rows[:count])
    np.testing.assert_array_equal(_parse("".join(answered)), expected)
    restored = edgernn.load(model_path).stream(1)
    restored.load_state(state)
    _same_state(restored.get_state(), expected_state)


def _feed(pipe, text):
    try:
        pipe.write(text)
        pipe.close()
    except (BrokenPipeError, ValueError):
        pass


def test_sigkill_never_leaves_a_half_npy_under_the_users_name(model_path, tmp_path):
    out = tmp_path / "y.npy"
    np.save(out, np.arange(4, dtype=np.float32))
    process = subprocess.Popen(_command(model_path, "-o", out), stdin=subprocess.PIPE, text=True)
    process.stdin.write(_text(_rows(3)))
    process.stdin.flush()
    time.sleep(2.0)
    process.kill()
    process.wait(timeout=60)
    np.testing.assert_array_equal(np.load(out), np.arange(4, dtype=np.float32))


def test_reader_going_away_ends_quietly(model_path):
    """`edgernn run M | head -1`: no traceback, no BrokenPipeError message, exit 0."""
    process = subprocess.Popen(_command(model_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    feeder = threading.Thread(target=_feed, args=(process.stdin, _text(_rows(20000))), daemon=True)
    feeder.start()
    assert process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=60) == 0
    assert _said(process.stderr.read()) == ""
