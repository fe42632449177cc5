"""Stream state on disk (Stream.save_state / load_state): atomic, checksummed, tied to its model."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import edgernn
from edgernn import ir
from edgernn.errors import InvalidStateFile


def _model(seed=0, units=8):
    rng = np.random.default_rng(seed)
    w = lambda *shape: ir.as_weight(rng.normal(scale=0.4, size=shape))  # noqa: E731
    nodes = (ir.Node(ir.Recurrent("lstm", "lstm", units, 3, w(3, 4 * units), w(units, 4 * units), w(4 * units),
                                  return_sequences=True), ("x",), ("h",)),
             ir.Node(ir.Dense("head", w(units, 3), w(3)), ("h",), ("y",)))
    return edgernn.Model(ir.ModelSpec((ir.Input("x", 3),), nodes, ("y",)))


def _states_equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_round_trip_continues_identically(tmp_path):
    model = _model()
    x = np.random.default_rng(1).normal(size=(4, 12, 3)).astype(np.float32)
    s = model.stream(4)
    s.run(x[:, :5])
    s.save_state(tmp_path / "state")
    expected = s.run(x[:, 5:])
    restored = model.stream(4)
    restored.load_state(tmp_path / "state")
    np.testing.assert_array_equal(restored.run(x[:, 5:]), expected)
    # forecast starts from the restored last output too
    s.load_state(tmp_path / "state")
    restored.load_state(tmp_path / "state")
    np.testing.assert_array_equal(s.forecast(3), restored.forecast(3))


def test_refusals_leave_the_stream_untouched(tmp_path):
    model = _model()
    s = model.stream(2)
    s.run(np.ones((2, 4, 3), np.float32))
    good = tmp_path / "good"
    s.save_state(good)
    target = model.stream(2)
    target.run(np.full((2, 2, 3), 0.5, np.float32))
    before = target.get_state()

    other_model = tmp_path / "other_model"
    _model(seed=1).stream(2).save_state(other_model)
    other_batch = tmp_path / "other_batch"
    model.stream(3).save_state(other_batch)
    corrupted = tmp_path / "corrupted"
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:  # flip one byte inside an array member's data
        info = next(i for i in archive.infolist() if i.filename.endswith(".npy"))
    data[info.header_offset + 30 + len(info.filename) + info.file_size - 1] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    forged = tmp_path / "forged"  # arrays changed consistently, CRCs fine, checksum not updated
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(forged, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename == "lstm/c.npy":
                array = np.lib.format.read_array(io.BytesIO(payload)) + 1.0
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array.astype(np.float32))
                payload = buffer.getvalue()
            dst.writestr(item.filename, payload)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    expectations = {
        other_model: "another model", other_batch: "3 streams", corrupted: "unreadable", forged: "checksum",
        truncated: "unreadable", tmp_path / "missing": "no such file",
    }
    for path, words in expectations.items():
        with pytest.raises(InvalidStateFile, match=words) as caught:
            target.load_state(path)
        assert str(path) in str(caught.value)
        assert _states_equal(target.get_state(), before), path.name


WRITER = r"""
import hashlib, sys, numpy as np, edgernn
sys.path.insert(0, sys.argv[3])
from test_statefile import _model
model = _model(units=256)
s = model.stream(64)
rng = np.random.default_rng(0)
log = open(sys.argv[2], "a", buffering=1)
for k in range(10_000):
    s.step(rng.normal(size=(64, 3)).astype(np.float32))
    log.write(f"begin {k} {float(s.get_state()['lstm/c'].sum())!r}\n")
    s.save_state(sys.argv[1])
    log.write(f"end {k}\n")
"""


def test_killed_writer_leaves_a_whole_state(tmp_path):
    """SIGKILL a process while it saves state over and over: the file on disk is always a
    complete state -- the last one saved or the one being saved -- never a broken one."""
    path, log = tmp_path / "state", tmp_path / "log"
    tests_dir = os.path.dirname(__file__)
    model = _model(units=256)
    rng = np.random.default_rng(5)
    for trial in range(3):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(log), tests_dir])
        deadline = time.monotonic() + 120
        while (not log.exists() or log.read_text().count("end") < 2 * (trial + 1)) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.0, 0.2)))  # somewhere inside a later save
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        lines = log.read_text().split("\n")
        begun = {int(line.split()[1]): float(line.split()[2]) for line in lines if line.startswith("begin")}
        ended = [int(line.split()[1]) for line in lines if line.startswith("end")]
        s = model.stream(64)
        s.load_state(path)  # a whole, valid state ...
        total = float(s.get_state()["lstm/c"].sum())
        # ... the last one completed, or the one in flight when the rename had already happened
        last = max(ended)
        assert total in (begun[last], begun.get(last + 1)), (total, last)
        log.write_text("")


def test_cli_run_resumes_from_its_state_file(tmp_path):
    from click.testing import CliRunner

    from edgernn.cli import main

    model = _model()
    model.save(tmp_path / "m.ernn")
    rows = np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32)
    text = lambda part: "\n".join(",".join(f"{v:.9g}" for v in r) for r in part) + "\n"  # noqa: E731
    args = ["run", str(tmp_path / "m.ernn"), "--state", str(tmp_path / "s"), "--state-every", "2"]
    first = CliRunner().invoke(main, args, input=text(rows[:6]))
    second = CliRunner().invoke(main, args, input=text(rows[6:]))  # a restart: continues where it stopped
    whole = CliRunner().invoke(main, ["run", str(tmp_path / "m.ernn")], input=text(rows))
    assert first.exit_code == second.exit_code == whole.exit_code == 0
    assert first.output + second.output == whole.output
