"""edgernn.replay on a real Dask LocalCluster (2 worker processes): the outputs equal one process's
Stream.run over each device's whole series (float32 to rounding, int8 bit for bit), across chunk
boundaries, a killed worker and a killed client; every bad input is one clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

import edgernn
from edgernn import ir
from edgernn.errors import InvalidInput
from edgernn.fleet.work import state_file_name

ROOT = Path(__file__).resolve().parent.parent
F = 3


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as c:
        yield c


def _w(rng):
    return lambda *shape: ir.as_weight(rng.normal(scale=0.4, size=shape))


def _lstm(seed=0, units=8):
    w = _w(np.random.default_rng(seed))
    nodes = (ir.Node(ir.Recurrent("lstm", "lstm", units, F, w(F, 4 * units), w(units, 4 * units), w(4 * units),
                                  return_sequences=True), ("x",), ("h",)),
             ir.Node(ir.Dense("head", w(units, 2), w(2)), ("h",), ("y",)))
    return edgernn.Model(ir.ModelSpec((ir.Input("x", F),), nodes, ("y",)))


def _gru(seed=1, units=6):
    w = _w(np.random.default_rng(seed))
    nodes = (ir.Node(ir.Recurrent("gru", "gru", units, F, w(F, 3 * units), w(units, 3 * units), w(3 * units),
                                  recurrent_bias=w(3 * units), return_sequences=True), ("x",), ("h",)),
             ir.Node(ir.Dense("head", w(units, 1), w(1)), ("h",), ("y",)))
    return edgernn.Model(ir.ModelSpec((ir.Input("x", F),), nodes, ("y",)))


def _masked(seed=2, units=5):
    w = _w(np.random.default_rng(seed))
    nodes = (ir.Node(ir.Masking("m", 0.0), ("x",), ("masked", "mask")),
             ir.Node(ir.Recurrent("lstm", "lstm", units, F, w(F, 4 * units), w(units, 4 * units), w(4 * units),
                                  return_sequences=True), ("masked",), ("h",), mask="mask"),
             ir.Node(ir.Dense("head", w(units, 2), w(2)), ("h",), ("y",)))
    return edgernn.Model(ir.ModelSpec((ir.Input("x", F),), nodes, ("y",)))


def _fleet(seed, devices=12, low=5, high=80, long=None, zeros=False):
    """``{device: (times (T,) int64, x (T, F) float32)}``, times rising with gaps."""
    rng = np.random.default_rng(seed)
    lengths = [int(n) for n in rng.integers(low, high, devices)]
    if long:
        lengths[0] = long
    fleet = {}
    for i, n in enumerate(lengths):
        x = rng.normal(size=(n, F)).astype(np.float32)
        if zeros:
            x[rng.random(n) < 0.2] = 0.0  # rows Masking(0.0) masks
        fleet[f"dev{i:03d}"] = (np.cumsum(rng.integers(1, 5, n)).astype(np.int64) + 1000, x)
    return fleet


def _table(rows):
    keys, times, xs = zip(*rows) if rows else ((), (), ())
    x = np.array(xs, np.float32).reshape(-1, F)
    return pa.table({"device": pa.array(keys, pa.string()), "ts": pa.array(times, pa.int64()),
                     "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})


def _write_by_time(fleet, folder, files=3, row_group_size=40, shuffle_rows=None):
    """Every file holds a time slice of every device (devices interleaved), in small row groups."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in range(files):
        rows = []
        for device, (t, x) in fleet.items():
            a, b = part * len(t) // files, (part + 1) * len(t) // files
            rows += [(device, int(t[i]), x[i]) for i in range(a, b)]
        rows.sort(key=lambda r: (r[1], r[0]))  # interleaved by time, as a logger writes them
        pq.write_table(_table(rows), folder / f"part{part}.parquet", row_group_size=row_group_size)
    return folder


def _write_hive(fleet, folder):
    """device=<key>/data.parquet: the key is a directory name only."""
    for device, (t, x) in fleet.items():
        (folder / f"device={device}").mkdir(parents=True)
        table = _table([(device, int(t[i]), x[i]) for i in range(len(t))]).drop(["device"])
        pq.write_table(table, folder / f"device={device}" / "data.parquet", row_group_size=30)
    return folder


def _read(out, outputs):
    table = pq.read_table(out)
    got = {}
    for device in pc.unique(table["device"]).to_pylist():
        part = table.filter(pc.equal(table["device"], device))
        got[device] = (part["ts"].to_numpy(), np.stack([part[n].to_numpy() for n in outputs], 1))
    return table, got


def _reference(model, fleet):
    return {d: model.stream(1).run(x[None])[0] for d, (_, x) in fleet.items()}


def _check(out, model, fleet, exact=False):
    names = [f"y{j}" for j in range(model.output_features)]
    table, got = _read(out, names)
    assert table.num_rows == sum(len(t) for t, _ in fleet.values())
    assert set(got) == set(fleet)
    want = _reference(model, fleet)
    for device, (t, _) in fleet.items():
        times, y = got[device]
        np.testing.assert_array_equal(times, t)  # every row once, in time order
        if exact:
            np.testing.assert_array_equal(y, want[device])
        else:
            np.testing.assert_allclose(y, want[device], rtol=1e-5, atol=1e-6)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["rows"] == table.num_rows and manifest["devices"] == len(fleet)
    return manifest


def _plan(out):
    return json.loads((out / "_plan.json").read_text())


@pytest.mark.parametrize("name", ["lstm", "gru", "masked"])
def test_float_models_equal_one_process(client, tmp_path, name):
    model = {"lstm": _lstm, "gru": _gru, "masked": _masked}[name]()
    fleet = _fleet(seed=len(name), long=400, zeros=name == "masked")
    data = _write_hive(fleet, tmp_path / "in") if name == "gru" else _write_by_time(fleet, tmp_path / "in")
    model.save(tmp_path / "m.ernn")
    result = edgernn.replay(str(tmp_path / "m.ernn"), data, by="device", time="ts", output=tmp_path / "out",
                            client=client, task_rows=150)
    _check(tmp_path / "out", model, fleet)
    assert result["rows"] == sum(len(t) for t, _ in fleet.values()) and result["devices"] == len(fleet)
    tasks = _plan(tmp_path / "out")["tasks"]
    assert max(t["chunks"] for t in tasks) >= 3  # the long device ran as a chain
    assert any(len(t["devices"]) > 1 for t in tasks)  # short devices were packed


@pytest.mark.parametrize("scheme", ["int8", "int8-weights"])
def test_quantized_is_bit_for_bit(client, tmp_path, scheme):
    model = _lstm(seed=5)
    fleet = _fleet(seed=7, long=300)
    calibration = np.concatenate([x for _, x in fleet.values()])[None]
    np.save(tmp_path / "calib.npy", calibration)
    model.save(tmp_path / "m.ernn")
    edgernn.replay(str(tmp_path / "m.ernn"), _write_by_time(fleet, tmp_path / "in"), by="device", time="ts",
                   output=tmp_path / "out", client=client, quant=scheme, calibration=tmp_path / "calib.npy",
                   task_rows=100)
    _check(tmp_path / "out", model.quantize(calibration, scheme), fleet, exact=True)
    assert max(t["chunks"] for t in _plan(tmp_path / "out")["tasks"]) >= 3


def test_chunk_states_are_the_streams_states(client, tmp_path):
    """A device over 4 files, cut into chunks: each chunk's state file holds the stream's state at its end."""
    model = _lstm()
    fleet = _fleet(seed=3, devices=1, long=240)
    _write_by_time(fleet, tmp_path / "in", files=4, row_group_size=1000)

    def block_rows(n):
        import edgernn.fleet.work

        edgernn.fleet.work.BLOCK_ROWS = n

    client.run(block_rows, 7)  # each chunk runs in Stream.run calls of 7 rows: the same outputs
    try:
        edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=tmp_path / "out", client=client,
                       task_rows=60)
    finally:
        client.run(block_rows, edgernn.fleet.work.BLOCK_ROWS)
    _check(tmp_path / "out", model, fleet)
    tasks = _plan(tmp_path / "out")["tasks"]
    assert [t["chunk"] for t in tasks] == [0, 1, 2, 3]
    (t, x), = fleet.values()
    stream, end = model.stream(1), 0
    for task in tasks:
        end += task["rows"]
        stream.run(x[None, end - task["rows"] : end])
        saved = model.stream(1)
        saved.load_state(tmp_path / "out" / "_state" / f"part-000000-{task['chunk']:05d}.state")
        for key, value in stream.get_state().items():
            np.testing.assert_array_equal(saved.get_state()[key], value)


def test_nan_propagates_across_chunks_as_in_one_process(client, tmp_path):
    model = _lstm()
    fleet = _fleet(seed=4, devices=2, long=200)
    fleet["dev000"][1][50, 1] = np.nan  # in the first chunk: the state is NaN from there on
    _write_by_time(fleet, tmp_path / "in", files=4, row_group_size=1000)
    edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=tmp_path / "out", client=client,
                   task_rows=60)
    _, got = _read(tmp_path / "out", ["y0", "y1"])
    want = _reference(model, fleet)
    assert np.isnan(got["dev000"][1][50:]).all() and np.isfinite(got["dev000"][1][:50]).all()
    np.testing.assert_allclose(got["dev001"][1], want["dev001"], rtol=1e-5, atol=1e-6)


def test_initial_state_folder_and_csv_and_default_features(client, tmp_path):
    model = _lstm()
    fleet = _fleet(seed=9, devices=3)
    rows = sorted(((d, int(t[i]), x[i]) for d, (t, x) in fleet.items() for i in range(len(t))), key=lambda r: r[1])
    table = _table(rows).add_column(2, "label", pa.array(["ok"] * len(rows)))  # not numeric: not a feature
    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "log.csv", "w") as f:
        f.write(",".join(table.column_names) + "\n")
        for r in table.to_pylist():
            f.write(",".join(repr(v) if isinstance(v, float) else str(v) for v in r.values()) + "\n")
    warm = model.stream(1)
    warm.run(np.random.default_rng(0).normal(size=(1, 10, F)).astype(np.float32))
    (tmp_path / "states").mkdir()
    warm.save_state(tmp_path / "states" / state_file_name("dev001"))
    result = edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=tmp_path / "out", client=client,
                            initial_state=tmp_path / "states")
    assert result["devices"] == 3
    _, got = _read(tmp_path / "out", ["y0", "y1"])
    for device, (_, x) in fleet.items():
        stream = model.stream(1)
        if device == "dev001":
            stream.load_state(tmp_path / "states" / state_file_name("dev001"))
        np.testing.assert_allclose(got[device][1], stream.run(x[None])[0], rtol=1e-5, atol=1e-6)


def test_unsorted_rows_are_refused_or_sorted(client, tmp_path):
    model = _lstm()
    fleet = _fleet(seed=11, devices=3)
    rows = [(d, int(t[i]), x[i]) for d, (t, x) in fleet.items() for i in range(len(t))]
    rows[5], rows[6] = rows[6], rows[5]
    (tmp_path / "in").mkdir()
    pq.write_table(_table(rows), tmp_path / "in" / "log.parquet")
    with pytest.raises(InvalidInput, match=r"log.parquet, row 6, device 'dev000': time .* is earlier than"):
        edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=tmp_path / "out", client=client)
    assert not list((tmp_path / "out").glob("*.parquet"))
    edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=tmp_path / "out2", client=client, sort=True)
    _check(tmp_path / "out2", model, fleet)


def _bad(tmp_path, client, rows=None, table=None, features=None, files=None, match="", model=None):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name, t in (files or {"log.parquet": table if table is not None else _table(rows)}).items():
        if name.endswith(".csv"):
            (folder / name).write_text(t)
        else:
            pq.write_table(t, folder / name)
    with pytest.raises(InvalidInput, match=match):
        edgernn.replay(model or _lstm(), folder, by="device", time="ts", features=features, output=tmp_path / "out",
                       client=client)
    assert not (tmp_path / "out").exists()  # refused before anything was written


X = np.ones(F, np.float32)


def test_duplicate_time_in_a_partition(client, tmp_path):
    _bad(tmp_path, client, [("d1", 1, X), ("d1", 2, X), ("d2", 2, X), ("d1", 2, X)],
         match=r"log.parquet, row 3, device 'd1': time 2 comes twice for this device \(also at row 1\)")


def test_duplicate_time_across_partitions(client, tmp_path):
    _bad(tmp_path, client, files={"a.parquet": _table([("d1", 1, X), ("d1", 2, X)]),
                                  "b.parquet": _table([("d1", 2, X), ("d1", 3, X)])},
         match=r"device 'd1': time 2 comes twice, in a.parquet \(row group 0\) and in b.parquet")


def test_interleaved_partitions(client, tmp_path):
    _bad(tmp_path, client, files={"a.parquet": _table([("d1", 1, X), ("d1", 5, X)]),
                                  "b.parquet": _table([("d1", 3, X), ("d1", 7, X)])},
         match=r"device 'd1': its rows in a.parquet .* interleave in time")


def test_missing_columns(client, tmp_path):
    _bad(tmp_path, client, table=_table([("d1", 1, X)]).drop(["ts"]),
         match=r"no column 'ts' \(the time column\)")


def test_missing_feature_column_named(client, tmp_path):
    _bad(tmp_path, client, table=_table([("d1", 1, X)]), features=["a", "b", "nope"],
         match=r"no feature column 'nope'")


def test_column_missing_in_a_later_file(client, tmp_path):
    _bad(tmp_path, client, files={"a.parquet": _table([("d1", 1, X)]),
                                  "b.parquet": _table([("d1", 2, X)]).drop(["c"])},
         match=r"b.parquet: no column 'c'")


def test_wrong_feature_count(client, tmp_path):
    _bad(tmp_path, client, table=_table([("d1", 1, X)]).drop(["c"]),
         match=r"the model takes 3 input features, but the input has.* 2: a, b")


def test_non_numeric_value_named(client, tmp_path):
    csv = "device,ts,a,b,c\nd1,1,0.5,1,2\nd2,1,0.5,x7,2\n"
    _bad(tmp_path, client, files={"log.csv": csv}, features=["a", "b", "c"],
         match=r"log.csv, line 3, device 'd2': column 'b' holds 'x7', not a number")


def test_empty_value_named(client, tmp_path):
    table = _table([("d1", 1, X), ("d1", 2, X), ("d2", 3, X)])
    table = table.set_column(3, "b", pa.array([1.0, None, 2.0], pa.float32()))
    _bad(tmp_path, client, table=table, match=r"log.parquet, row 1, device 'd1': column 'b' has no value")


def test_output_folder_of_another_replay_is_refused(client, tmp_path):
    fleet = _fleet(seed=12, devices=2)
    _write_by_time(fleet, tmp_path / "in", files=1)
    edgernn.replay(_lstm(), tmp_path / "in", by="device", time="ts", output=tmp_path / "out", client=client)
    with pytest.raises(InvalidInput, match="holds a replay of another model.*model"):
        edgernn.replay(_gru(), tmp_path / "in", by="device", time="ts", output=tmp_path / "out", client=client)


def _big_fleet(tmp_path, devices=40, rows=600):
    fleet = _fleet(seed=21, devices=devices, low=rows, high=rows + 1)
    _write_by_time(fleet, tmp_path / "in", files=4, row_group_size=4000)
    return fleet


def test_killed_worker_output_complete_and_equal(client, tmp_path):
    model = _lstm()
    fleet = _big_fleet(tmp_path)
    pids = client.run(os.getpid)
    errors = []

    def run():
        try:
            edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=tmp_path / "out", client=client,
                           task_rows=300)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not list((tmp_path / "out" / "_done").glob("*.json")) if (tmp_path / "out" / "_done").exists() else True:
        assert time.monotonic() < deadline, "no task finished"
        time.sleep(0.02)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)  # a worker process, mid-replay
    finished_at_kill = len(list((tmp_path / "out" / "_done").glob("*.json")))
    thread.join(120)
    assert not thread.is_alive() and not errors, errors
    done = len(list((tmp_path / "out" / "_done").glob("*.json")))
    assert done == len(_plan(tmp_path / "out")["tasks"]) > finished_at_kill + 10  # killed early, then all ran
    _check(tmp_path / "out", model, fleet)
    client.wait_for_workers(2, timeout=60)  # the nanny brought it back, for the tests after this one


def test_killed_client_resumes_without_recomputing(client, tmp_path):
    model = _lstm()
    model.save(tmp_path / "m.ernn")
    fleet = _big_fleet(tmp_path)
    command = [sys.executable, "-m", "edgernn.cli", "replay", str(tmp_path / "m.ernn"), "--input", str(tmp_path / "in"),
               "--by", "device", "--time", "ts", "--output", str(tmp_path / "out"), "--task-rows", "300",
               "--scheduler", client.scheduler.address, "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = tmp_path / "out" / "_done"
    deadline = time.monotonic() + 90
    while len(list(done.glob("*.json")) if done.exists() else []) < 3:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no task finished"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # the client dies mid-replay
    first.wait()
    time.sleep(1.0)  # tasks it had started may still finish: they write their marker, or not
    before = {p.name: p.stat().st_mtime_ns for p in done.glob("*.json")}
    assert not json.loads((tmp_path / "out" / "_manifest.json").read_text())["complete"]
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert "finished by an earlier run" in second.stderr + second.stdout
    after = {p.name: p.stat().st_mtime_ns for p in done.glob("*.json")}
    assert all(after[name] == mtime for name, mtime in before.items())  # finished chunks were not recomputed
    assert len(after) == len(_plan(tmp_path / "out")["tasks"]) > len(before)
    _check(tmp_path / "out", model, fleet)


def test_cli_help_and_a_small_run(client, tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "edgernn.cli", "replay", "--help"], capture_output=True,
                               text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert help_text.returncode == 0 and "--scheduler" in help_text.stdout and "--initial-state" in help_text.stdout
    model = _gru()
    model.save(tmp_path / "m.ernn")
    fleet = _fleet(seed=30, devices=4)
    _write_by_time(fleet, tmp_path / "in", files=2)
    run = subprocess.run([sys.executable, "-m", "edgernn.cli", "replay", str(tmp_path / "m.ernn"), "-i",
                          str(tmp_path / "in"), "--by", "device", "--time", "ts", "-o", str(tmp_path / "out"),
                          "--scheduler", client.scheduler.address, "--features", "a,b,c"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert "rows of 4 devices" in run.stdout and "rows/s" in run.stdout and "dashboard" in run.stderr
    _check(tmp_path / "out", model, fleet)
    bad = subprocess.run([sys.executable, "-m", "edgernn.cli", "replay", str(tmp_path / "m.ernn"), "-i",
                          str(tmp_path / "in"), "--by", "device", "--time", "nope", "-o", str(tmp_path / "o2"),
                          "--scheduler", client.scheduler.address], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "no column 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr
    calibration = np.concatenate([x for _, x in fleet.values()])[None]
    np.save(tmp_path / "calib.npy", calibration)
    common = [sys.executable, "-m", "edgernn.cli", "replay", str(tmp_path / "m.ernn"), "-i", str(tmp_path / "in"),
              "--by", "device", "--time", "ts", "--scheduler", client.scheduler.address, "--no-progress"]
    no_calibration = subprocess.run(common + ["-o", str(tmp_path / "q0"), "--quant", "int8"], capture_output=True,
                                    text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert no_calibration.returncode == 1 and "--quant int8 needs --calibration" in no_calibration.stderr
    int8 = subprocess.run(common + ["-o", str(tmp_path / "q"), "--quant", "int8", "--calibration",
                                    str(tmp_path / "calib.npy")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert int8.returncode == 0, int8.stderr
    _check(tmp_path / "q", model.quantize(calibration, "int8"), fleet, exact=True)


def test_quantized_stream_state_file_round_trip(tmp_path):
    """What replay needs of the int8 simulation: its int8 h / int16 c saved and restored exactly."""
    model = _lstm(seed=5)
    x = np.random.default_rng(0).normal(size=(2, 30, F)).astype(np.float32)
    quantized = model.quantize(x, "int8")
    stream = quantized.stream(2)
    stream.run(x[:, :10])
    stream.save_state(tmp_path / "q.state")
    again = quantized.stream(2)
    again.load_state(tmp_path / "q.state")
    assert {k: v.dtype for k, v in again.get_state().items()} == {"lstm/h": np.int8, "lstm/c": np.int16}
    np.testing.assert_array_equal(again.run(x[:, 10:]), stream.run(x[:, 10:]))
    with pytest.raises(edgernn.errors.InvalidStateFile, match="another model"):
        model.stream(2).load_state(tmp_path / "q.state")
    with pytest.raises(edgernn.errors.InvalidStateFile, match="of 2 streams"):
        quantized.stream(1).load_state(tmp_path / "q.state")
    model.stream(1).save_state(tmp_path / "f.state")  # a float state file stays version 1
    import zipfile

    header = json.loads(zipfile.ZipFile(tmp_path / "f.state").read("header.json"))
    assert header["format_version"] == 1
    assert json.loads(zipfile.ZipFile(tmp_path / "q.state").read("header.json"))["format_version"] == 2


def test_integer_keys_timestamps_and_the_plugin_on_every_worker(client, tmp_path):
    """Integer device keys in hive folders, timestamp times; the model lives in a plugin on each worker."""
    model = _gru()
    fleet = _fleet(seed=31, devices=5)
    for i, (device, (t, x)) in enumerate(fleet.items()):
        folder = tmp_path / "in" / f"unit={i}"
        folder.mkdir(parents=True)
        table = pa.table({"when": pa.array(t * 1_000_000_000, pa.timestamp("ns")), "a": x[:, 0], "b": x[:, 1],
                          "c": x[:, 2]})
        pq.write_table(table, folder / "data.parquet", row_group_size=25)
    result = edgernn.replay(model, tmp_path / "in", by="unit", time="when", output=tmp_path / "out", client=client,
                            task_rows=40)
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("when").type == pa.timestamp("ns") and pa.types.is_integer(table.schema.field("unit").type)
    for i, (device, (t, x)) in enumerate(fleet.items()):
        part = table.filter(pc.equal(table["unit"], i))
        np.testing.assert_array_equal(part["when"].cast(pa.int64()).to_numpy(), t * 1_000_000_000)
        np.testing.assert_allclose(part["y0"].to_numpy(), model.stream(1).run(x[None])[0, :, 0], rtol=1e-5, atol=1e-6)
    assert result["devices"] == 5

    def plugin_models(dask_worker):
        return {name: type(p.model).__name__ for name, p in dask_worker.plugins.items() if name.startswith("edgernn")}

    loaded = client.run(plugin_models)
    name = f"edgernn-replay-{model.fingerprint[:16]}"
    assert len(loaded) == 2 and all(models.get(name) == "Model" for models in loaded.values())

    def refusal_logged():
        import logging

        record = logging.LogRecord("distributed.worker", logging.ERROR, "", 0,
                                   "Compute Failed\nKey: k\nException: 'InvalidInput(\"x\")'", None, None)
        bug = logging.LogRecord("distributed.worker", logging.ERROR, "", 0,
                                "Compute Failed\nKey: k\nException: 'KeyError(1)'", None, None)
        return logging.getLogger("distributed.worker").filter(record), logging.getLogger("distributed.worker").filter(bug)

    # a refused input is reported once, by the client; a bug's traceback is still logged by the worker
    assert all(not bool(refused) and bool(bug) for refused, bug in client.run(refusal_logged).values())


def test_resume_continues_a_chain_from_its_state_file(client, tmp_path):
    """Chunks 2 and 3 of a chain lost (as if the client died after chunk 1): the rerun runs only
    those, chunk 2 starting from chunk 1's state file, and the result is still one process's."""
    model = _masked()
    fleet = _fleet(seed=41, devices=1, long=240, zeros=True)
    _write_by_time(fleet, tmp_path / "in", files=4, row_group_size=1000)
    out = tmp_path / "out"
    edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=out, client=client, task_rows=60)
    for chunk in (2, 3):
        for path in (out / f"part-000000-{chunk:05d}.parquet", out / "_done" / f"part-000000-{chunk:05d}.json",
                     out / "_state" / f"part-000000-{chunk:05d}.state"):
            path.unlink()
    manifest = json.loads((out / "_manifest.json").read_text())
    (out / "_manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    result = edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=out, client=client, task_rows=60)
    assert (result["computed"], result["resumed"]) == (2, 2)
    _check(out, model, fleet)


def test_import_edgernn_stays_free_of_dask_until_replay():
    code = ("import sys, edgernn; heavy = ('distributed', 'dask', 'pyarrow', 'numba'); "
            "assert not [m for m in heavy if m in sys.modules], sys.modules.keys(); "
            "assert 'replay' in dir(edgernn) and callable(edgernn.replay); "
            "assert 'distributed' in sys.modules and 'pyarrow' in sys.modules and 'numba' not in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr


def test_files_whose_column_types_differ(client, tmp_path):
    """int64 times and float64 features in one file, int32 and float32 in the next: one output schema."""
    model = _lstm()
    fleet = _fleet(seed=51, devices=3, low=20, high=30)
    _write_by_time(fleet, tmp_path / "in", files=2)
    second = pq.read_table(tmp_path / "in" / "part1.parquet")
    second = second.cast(pa.schema([("device", pa.large_string()), ("ts", pa.int32()), ("a", pa.float64()),
                                    ("b", pa.float64()), ("c", pa.float64())]))
    pq.write_table(second, tmp_path / "in" / "part1.parquet")
    edgernn.replay(model, tmp_path / "in", by="device", time="ts", output=tmp_path / "out", client=client, task_rows=25)
    _check(tmp_path / "out", model, fleet)
    assert {pq.read_schema(p).field("ts").type for p in (tmp_path / "out").glob("part-*.parquet")} == {pa.int64()}
