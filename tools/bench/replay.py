"""Fleet replay throughput: a plain single-process loop over ``Stream.run`` against ``edgernn replay``
on a Dask LocalCluster of 1 and 2 worker processes, on a generated fleet written to Parquet.

    python tools/bench/replay.py                        # 2,000 devices x 10,000 rows, model (a) LSTM(64) on 8
    python tools/bench/replay.py --quick                # 200 devices x 2,000 rows, 100,000 rows a task: a smoke run
    python tools/bench/replay.py --devices 500 --rows 4000 --workers 1,2 --task-rows 500000

The model is benchmark model (a) of tools/bench/models.py (LSTM(64) on 8 features + Dense(1), its
seeded random weights), built straight in edgernn's IR, which is what ``edgernn.convert`` of the
Keras model makes. The fleet: every device a random walk of 8 features at 1 Hz (int64 seconds),
written sorted by device and time into files of ``--devices-per-file`` devices (row groups of
128k rows), as a fleet's logs are laid out for replay (docs/fleet.md).

Measured, each once (the figures are seconds of wall time, rows/s over all rows):

* loop, in memory: one process, one stream, ``reset`` + ``s.run(x[None])`` per device over arrays
  already in memory -- the kernels alone;
* loop, from Parquet: the same, reading each file with pyarrow first (no output written);
* replay, N workers: ``edgernn.replay`` on a fresh ``LocalCluster(n_workers=N, threads_per_worker=1)``,
  from the call to its return (scan, plan, plugin set-up and warm-up, tasks, manifest); the
  cluster's start is timed apart. Where the time goes is summed from the tasks' own markers:
  reading (Parquet, filter, sort), kernels (``s.run``), writing (output part, state file, marker),
  and the rest of the workers' time (scheduling, warm-up, idle) as workers x wall - the tasks' sum.
  The tasks' CPU time (``time.process_time``) against their wall time shows how long the worker
  processes waited for a core: on a machine shared with other work, 2 workers on 2 cores do.

Everything runs with one BLAS thread per process. Markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a script: make `bench` (this folder) importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"


def log(message):
    print(message, file=sys.stderr, flush=True)


def model_a():
    """Benchmark model (a), LSTM(64) on 8 + Dense(1), with the suite's seeded weights."""
    import edgernn
    from edgernn import ir

    from .models import MODELS, make_weights

    definition = make_weights(MODELS["a"])
    (kernel, recurrent, bias), (dense, dense_bias) = definition.weights
    nodes = (ir.Node(ir.Recurrent("lstm", "lstm", 64, 8, ir.as_weight(kernel), ir.as_weight(recurrent),
                                  ir.as_weight(bias), return_sequences=True), ("x",), ("h",)),
             ir.Node(ir.Dense("dense", ir.as_weight(dense), ir.as_weight(dense_bias)), ("h",), ("y",)))
    return edgernn.Model(ir.ModelSpec((ir.Input("x", 8),), nodes, ("y",))), definition.short


def write_fleet(folder: Path, devices: int, rows: int, per_file: int, seed: int = 0) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    names = np.array([f"dev{i:06d}" for i in range(devices)])
    for start in range(0, devices, per_file):
        count = min(per_file, devices - start)
        steps = rng.normal(scale=0.1, size=(count, rows, 8)).astype(np.float32)
        x = np.cumsum(steps, axis=1).reshape(-1, 8)
        table = {"device": pa.array(np.repeat(names[start : start + count], rows)),
                 "ts": pa.array(np.tile(np.arange(rows, dtype=np.int64) + 1_700_000_000, count))}
        table.update({f"f{j}": pa.array(x[:, j]) for j in range(8)})
        pq.write_table(pa.table(table), folder / f"fleet-{start // per_file:05d}.parquet", row_group_size=131072)
    return sum(f.stat().st_size for f in folder.iterdir())


def loop_in_memory(model, folder: Path) -> tuple[float, int]:
    import pyarrow.parquet as pq

    arrays = []
    for path in sorted(folder.iterdir()):
        table = pq.read_table(path)
        x = np.stack([table[f"f{j}"].to_numpy() for j in range(8)], 1)
        devices = table["device"].to_numpy(zero_copy_only=False)
        cuts = np.flatnonzero(devices[1:] != devices[:-1]) + 1
        arrays += np.split(x, cuts)
    stream = model.stream(1)
    stream.run(arrays[0][None, :10])
    t0 = time.perf_counter()
    for x in arrays:
        stream.reset()
        stream.run(x[None])
    return time.perf_counter() - t0, sum(len(x) for x in arrays)


def loop_from_parquet(model, folder: Path) -> tuple[float, int]:
    import pyarrow.parquet as pq

    stream, rows = model.stream(1), 0
    t0 = time.perf_counter()
    for path in sorted(folder.iterdir()):
        table = pq.read_table(path)
        x = np.stack([table[f"f{j}"].to_numpy() for j in range(8)], 1)
        devices = table["device"].to_numpy(zero_copy_only=False)
        for part in np.split(x, np.flatnonzero(devices[1:] != devices[:-1]) + 1):
            stream.reset()
            stream.run(part[None])
            rows += len(part)
    return time.perf_counter() - t0, rows


def replay_on(model_path: Path, folder: Path, out: Path, workers: int, task_rows: int) -> dict:
    from distributed import Client, LocalCluster

    import edgernn

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        start = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = edgernn.replay(str(model_path), folder, by="device", time="ts", output=out, client=client,
                                task_rows=task_rows)
        result["wall"] = time.perf_counter() - t1
    result["cluster_start"] = start
    result["workers"] = workers
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=10000, help="rows per device")
    parser.add_argument("--devices-per-file", type=int, default=100)
    parser.add_argument("--workers", default="1,2", help="LocalCluster sizes to run, e.g. 1,2")
    parser.add_argument("--task-rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200 devices x 2,000 rows, --task-rows 100000")
    parser.add_argument("--folder", type=Path, help="work folder (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.rows, args.task_rows = 200, 2000, 100_000

    from edgernn.bench import system_info

    model, label = model_a()
    work = args.folder or Path(tempfile.mkdtemp(prefix="edgernn-replay-bench-"))
    try:
        fleet = work / "fleet"
        if fleet.exists():
            shutil.rmtree(fleet)
        log(f"writing {args.devices} devices x {args.rows} rows to {fleet}")
        t0 = time.perf_counter()
        size = write_fleet(fleet, args.devices, args.rows, args.devices_per_file)
        log(f"  {size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")
        model.save(work / "model.ernn")
        rows = args.devices * args.rows
        measured = []
        log("loop over s.run, in memory")
        seconds, n = loop_in_memory(model, fleet)
        assert n == rows
        measured.append(("one process: loop over `s.run`, arrays in memory (kernels only)", seconds, None))
        log("loop over s.run, reading Parquet")
        seconds, n = loop_from_parquet(model, fleet)
        measured.append(("one process: loop over `s.run`, reading the Parquet files", seconds, None))
        results = []
        for workers in [int(w) for w in args.workers.split(",")]:
            out = work / f"out-{workers}"
            if out.exists():
                shutil.rmtree(out)
            log(f"edgernn replay, LocalCluster of {workers} worker(s)")
            result = replay_on(work / "model.ernn", fleet, out, workers, args.task_rows)
            assert result["rows"] == rows and result["computed"] == result["tasks"]
            results.append(result)
            measured.append((f"`edgernn replay`, LocalCluster of {workers} worker process(es)", result["wall"], result))
        print(report(args, label, rows, size, measured, results, system_info()))
    finally:
        if args.folder is None:
            shutil.rmtree(work, ignore_errors=True)


def report(args, label, rows, size, measured, results, info) -> str:
    lines = [f"Fleet: {args.devices:,} devices x {args.rows:,} rows = {rows:,} rows of 8 float32 features "
             f"({size / 1e6:,.0f} MB of Parquet in files of {args.devices_per_file} devices); model {label}; "
             f"`--task-rows {args.task_rows:,}`.", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}, Python {info['python']}, "
             f"numpy {info['numpy']}, numba {info['numba']}; {info['threads']}; load average {info['load average']}; "
             f"{info['date']}.", "",
             "| run | wall (s) | rows/s | vs the in-memory loop |", "|---|---:|---:|---:|"]
    base = rows / measured[0][1]
    for name, seconds, _ in measured:
        lines.append(f"| {name} | {seconds:.2f} | {rows / seconds:,.0f} | {rows / seconds / base:.2f}x |")
    if len(results) >= 2:
        one, many = results[0], results[-1]
        efficiency = (rows / many["wall"]) / (many["workers"] / one["workers"] * rows / one["wall"])
        lines += ["", f"Scaling efficiency from {one['workers']} to {many['workers']} workers: "
                  f"{efficiency:.0%} (rows/s of {many['workers']} / ({many['workers'] // one['workers']} x rows/s of "
                  f"{one['workers']})).", ""]
    lines += ["Where the replay's time goes (seconds; the task columns are summed over all tasks, i.e. worker-seconds):",
              "", "| workers | cluster start | wall | scan + plan | tasks: read | tasks: kernels | tasks: write | "
              "tasks: CPU time | workers x wall - tasks (scheduling, warm-up, idle) | tasks |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        t = r["timings"]
        rest = r["workers"] * r["wall"] - t["seconds"]
        lines.append(f"| {r['workers']} | {r['cluster_start']:.2f} | {r['wall']:.2f} | {t['scan_seconds']:.2f} | "
                     f"{t['read_seconds']:.2f} | {t['kernel_seconds']:.2f} | {t['write_seconds']:.2f} | "
                     f"{t['cpu_seconds']:.2f} of {t['seconds']:.2f} | {rest:.2f} | "
                     f"{r['tasks']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
