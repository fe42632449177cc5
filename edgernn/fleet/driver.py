"""The client side of a replay: check, scan, plan, submit the chain of tasks, watch, finish.

Output folder layout (every name that starts with ``_`` or ``.`` is skipped by Parquet readers, so
``pyarrow.parquet.read_table(output)`` or ``dask.dataframe.read_parquet(output)`` read the parts only):

* ``part-GGGGGG-CCCCC.parquet`` -- one per task (group G, chunk C): the key, the time, one column per
  model output, each device's rows in time order;
* ``_state/part-GGGGGG-CCCCC.state`` -- the final state of the task's devices (an
  :mod:`edgernn.statefile` file, one stream per device in the plan's order);
* ``_done/part-GGGGGG-CCCCC.json`` -- written last by the task: it is finished (rows, timings);
* ``_plan.json`` -- the tasks, so that a restarted replay neither rescans nor replans;
* ``_manifest.json`` -- what the replay is (model, options, input files) and ``"complete"``, true
  only once every task's marker is there.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time as clock
import uuid
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import EdgernnError, InvalidInput
from .plan import make_plan, plan_id, scan_file
from .source import open_source
from .work import DONE, PARTS, STATES, ReplayPlugin, _atomic_json, run_chunk

DEFAULT_TASK_ROWS = 1_000_000
MANIFEST = "_manifest.json"
PLAN = "_plan.json"
FORMAT = "edgernn-replay"


def _distributed():
    try:
        import distributed  # noqa: F401  (the fleet extra)
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise EdgernnError(f"replay runs on Dask and reads Parquet: pip install 'edgernn[fleet]' ({exc})") from None
    return distributed


def _resolve_model(model, quant, calibration):
    """-> (the model to run, the .ernn bytes or None, the integer spec or None)."""
    from ..quantize.runtime import QuantizedModel  # lazy: the fleet's client only
    from ..runtime import Model
    from ..store import load_spec

    if isinstance(model, QuantizedModel):
        if quant is not None:
            raise InvalidInput("the model is already quantized: pass its float model to quantize it with `quant`")
        return model, None, model.spec
    if isinstance(model, (str, os.PathLike)):
        data = Path(model).read_bytes()
        model = Model(load_spec(model))
    elif isinstance(model, Model):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.ernn"
            model.save(path)
            data = path.read_bytes()
    else:
        raise InvalidInput(f"replay takes a .ernn path, an edgernn.Model or a QuantizedModel, got {type(model).__name__}")
    from ..graph import several_inputs_problem  # lazy, as the imports above

    problem = several_inputs_problem(model.spec, "replay")
    if problem:
        raise InvalidInput(problem)
    if quant is None:
        if calibration is not None:
            raise InvalidInput("calibration data is for a quantized replay: pass quant='int8' too")
        return model, data, None
    if isinstance(calibration, (str, os.PathLike)):
        from ..export import load_calibration  # lazy: a file reader of the export package

        calibration = load_calibration(calibration, model.input_features)
    quantized = model.quantize(calibration, quant)
    return quantized, None, quantized.spec


def _output_names(model, by: str, time: str) -> list:
    count = model.output_features
    spec = getattr(getattr(model, "float_model", None) or model, "spec", None)
    about = getattr(spec, "source", None)
    names = about.get("output_names") if isinstance(about, dict) else None
    if not (isinstance(names, list) and len(names) == count and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == count):
        names = [f"y{j}" for j in range(count)]
    clash = [n for n in names if n in (by, time)]
    if clash:
        raise InvalidInput(f"the output column {clash[0]!r} would have the name of the key or time column: rename it")
    return names


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _prepare_output(out: Path, identity: dict) -> dict | None:
    """The existing manifest of the same replay (to resume), or None for a new one."""
    manifest = _read_json(out / MANIFEST) if (out / MANIFEST).exists() else None
    if manifest is not None:
        if manifest.get("format") != FORMAT or manifest.get("identity") != identity:
            changed = sorted(k for k in identity if (manifest.get("identity") or {}).get(k) != identity[k])
            raise InvalidInput(f"{out}: holds a replay of another model, input or options "
                               f"({', '.join(changed) or 'another format'} differ): choose another output folder, "
                               "or delete this one")
        return manifest
    if out.exists() and any(out.iterdir()):
        raise InvalidInput(f"{out}: the folder is not empty and holds no replay: choose an empty or new folder")
    return None


def _markers(out: Path, plan: str) -> dict:
    done = {}
    folder = out / DONE
    if folder.is_dir():
        for path in folder.glob("part-*.json"):
            marker = _read_json(path)
            if isinstance(marker, dict) and marker.get("plan") == plan:
                done[path.stem] = marker
    return done


def _make_folders(out: Path) -> None:
    for folder in (out, out / STATES, out / DONE):
        folder.mkdir(parents=True, exist_ok=True)


def _clean_temporaries(out: Path) -> None:
    for folder in (out, out / STATES, out / DONE):
        for path in folder.glob(".*.tmp"):
            path.unlink(missing_ok=True)


def _start_client(distributed, client, scheduler, workers, echo):
    if client is not None:
        return client, None
    if scheduler is not None:
        return distributed.Client(scheduler), None
    dashboard = "127.0.0.1:0" if importlib.util.find_spec("bokeh") else None
    cluster = distributed.LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                       processes=True, host="127.0.0.1", dashboard_address=dashboard)
    return distributed.Client(cluster), cluster


def replay(model, input, by: str, time: str, features=None, output=None, client=None, *, scheduler=None,
           workers=None, quant=None, calibration=None, initial_state=None, task_rows: int = DEFAULT_TASK_ROWS,
           sort: bool = False, progress: bool = False, echo=None) -> dict:
    """Run ``model`` over every device's recorded rows on Dask, as each device would have, and write
    the outputs to the Parquet folder ``output``. See docs/fleet.md.

    ``model``: a ``.ernn`` path, an :class:`edgernn.Model` or a quantized model; ``quant``
    ("int8", ...) with ``calibration`` (an array or a ``.npy`` path) quantizes it first.
    ``input``: a Parquet file or folder (hive partitions allowed) or CSV; ``by``: the device key
    column; ``time``: the time column; ``features``: the input columns (default: every numeric
    column but those, in file order). ``client``: a ``distributed.Client``; else ``scheduler`` (an
    address) or a ``LocalCluster`` of ``workers`` processes (default: one per core).
    ``initial_state``: a folder of per-device state files (``<key>.state``, see
    :func:`edgernn.fleet.work.state_file_name`); devices without one start from zero.
    ``task_rows``: rows per task (devices packed up to it; longer devices cut into a chain of
    chunks). ``sort``: sort each device's rows by time within a partition instead of refusing
    unsorted ones. ``progress``: Dask's progress bar. ``echo``: a function given each line of news.

    Returns ``{"rows", "devices", "tasks", "computed", "resumed", "seconds", "rows_per_second",
    "output", "dashboard", "timings"}``; raises :class:`~edgernn.errors.InvalidInput` naming the
    device, column and row of the first bad input, without marking the output complete. Run again
    with the same arguments, it continues from what is finished.
    """
    started = clock.perf_counter()
    distributed = _distributed()
    say = echo or (lambda line: None)
    if output is None:
        raise InvalidInput("replay needs an output folder")
    if not (isinstance(task_rows, (int, np.integer)) and not isinstance(task_rows, bool) and task_rows >= 1):
        raise InvalidInput(f"task_rows must be a positive integer, got {task_rows!r}")
    if isinstance(features, str):
        features = [f.strip() for f in features.split(",") if f.strip()]
    model, model_bytes, qspec = _resolve_model(model, quant, calibration)
    source = open_source(input, by, time, features, model.input_features)
    outputs = _output_names(model, by, time)
    if initial_state is not None and not Path(initial_state).is_dir():
        raise InvalidInput(f"{initial_state}: the initial state folder does not exist")
    identity = {"model": model.fingerprint, "scheme": getattr(model, "scheme", "float32-runtime"), "by": by,
                "time": time, "features": source.features, "outputs": outputs, "task_rows": int(task_rows),
                "sort": bool(sort), "initial_state": os.path.abspath(initial_state) if initial_state else None,
                "input": os.path.abspath(input), "files": source.listing()}
    out = Path(output)
    manifest = _prepare_output(out, identity)
    if manifest is not None and manifest.get("complete"):
        say(f"{out}: this replay is already complete ({manifest['rows']} rows of {manifest['devices']} devices)")
        return {**_summary(manifest, 0, 0, clock.perf_counter() - started, str(out), None), "timings": {}}

    client, cluster = _start_client(distributed, client, scheduler, workers, say)
    try:
        dashboard = client.dashboard_link if _has_dashboard(client, cluster) else None
        say(f"dashboard: {dashboard}" if dashboard else "dashboard: off (install bokeh>=3.1 for Dask's dashboard)")
        name = f"edgernn-replay-{model.fingerprint[:16]}"
        client.register_plugin(ReplayPlugin(name, model_bytes, qspec, model.fingerprint), name=name)
        plan = _read_json(out / PLAN) if manifest is not None and (out / PLAN).exists() else None
        if plan is None or plan.get("identity") != identity:
            plan = _make_plan(distributed, client, source, identity, int(task_rows), sort, progress, say)
            _make_folders(out)  # only now: an input the scan refuses leaves no folder behind
            _atomic_json(out / PLAN, plan)
            _atomic_json(out / MANIFEST, {"format": FORMAT, "version": 1, "edgernn_version": __version__,
                                          "plan": plan["id"], "identity": identity, "tasks": len(plan["tasks"]),
                                          "rows": plan["rows"], "devices": plan["devices"], "outputs": outputs,
                                          "complete": False})
        _make_folders(out)
        done = _markers(out, plan["id"])
        context = {"plugin": name, "source": source, "output": str(out.resolve()), "plan": plan["id"],
                   "sort": bool(sort), "outputs": outputs,
                   "initial_state": os.path.abspath(initial_state) if initial_state else None}
        futures = _submit(client, context, plan, done, say)
        _watch(distributed, client, futures, progress)
        markers = _markers(out, plan["id"])
        missing = [PARTS.format(group=t["group"], chunk=t["chunk"]) for t in plan["tasks"]
                   if PARTS.format(group=t["group"], chunk=t["chunk"]) not in markers]
        if missing:
            raise EdgernnError(f"{out}: {len(missing)} task(s) finished without their marker, e.g. {missing[0]}: "
                               "run the same replay again to complete them")
        _clean_temporaries(out)
        manifest = {"format": FORMAT, "version": 1, "edgernn_version": __version__, "plan": plan["id"],
                    "identity": identity, "tasks": len(plan["tasks"]), "rows": plan["rows"],
                    "devices": plan["devices"], "outputs": outputs, "complete": True,
                    "parts": sorted(f"{n}.parquet" for n in markers)}
        _atomic_json(out / MANIFEST, manifest)
        computed = [markers[n] for n in markers if n not in done]
        seconds = clock.perf_counter() - started
        result = _summary(manifest, len(computed), len(done), seconds, str(out), dashboard)
        result["rows_computed"] = sum(m["rows"] for m in computed)
        result["timings"] = {k: sum(m[k] for m in computed) for k in
                             ("read_seconds", "kernel_seconds", "write_seconds", "seconds", "cpu_seconds")}
        result["timings"]["scan_seconds"] = plan.get("scan_seconds", 0.0)
        return result
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


def _has_dashboard(client, own_cluster) -> bool:
    if own_cluster is not None and not importlib.util.find_spec("bokeh"):
        return False  # the scheduler's HTTP server answers, but with no dashboard on it
    try:
        return bool(client.scheduler_info().get("services", {}).get("dashboard"))
    except Exception:  # noqa: BLE001 - a scheduler that does not say: no link
        return False


def _summary(manifest, computed, resumed, seconds, output, dashboard) -> dict:
    rows = manifest["rows"]
    return {"rows": rows, "devices": manifest["devices"], "tasks": manifest["tasks"], "computed": computed,
            "resumed": resumed, "seconds": seconds, "rows_per_second": rows / seconds if seconds > 0 else 0.0,
            "output": output, "dashboard": dashboard}


def _make_plan(distributed, client, source, identity, task_rows, sort, progress, say) -> dict:
    t0 = clock.perf_counter()
    say(f"scanning {len(source.files)} file(s): keys and times")
    # Each task gets the source with its one file: nothing scattered, so nothing that a dead
    # worker takes with it (Dask recomputes a lost result from its task, not a scattered value).
    token = uuid.uuid4().hex[:12]
    futures = [client.submit(scan_file, dataclasses.replace(source, files=[entry]), 0, sort=sort,
                             key=f"edgernn-scan-{token}-{i}") for i, entry in enumerate(source.files)]
    _watch(distributed, client, futures, progress)
    scans = client.gather(futures)
    plan = make_plan(source, scans, task_rows)
    plan["identity"] = identity
    plan["id"] = plan_id(identity, plan)
    plan["scan_seconds"] = clock.perf_counter() - t0
    return plan


def _submit(client, context, plan, done, say) -> list:
    """One future per task not finished yet, each chunk of a chain depending on the one before."""
    futures, previous = [], {}
    tag = f"{plan['id'][:10]}-{uuid.uuid4().hex[:8]}"  # this run's: a killed client's tasks may still be known
    skipped = 0
    tasks = plan["tasks"]
    for index, task in enumerate(tasks):
        name = PARTS.format(group=task["group"], chunk=task["chunk"])
        if name in done:
            skipped += 1
            continue
        before = None
        if task["chunk"] > 0:
            before = previous.get(task["group"])
            if before is None:  # finished by an earlier run: start from its state file
                last = tasks[index - 1]
                path = Path(context["output"]) / STATES / (PARTS.format(group=last["group"], chunk=last["chunk"]) + ".state")
                before = ("file", str(path), [d for d, _ in last["devices"]])
        future = client.submit(run_chunk, _task_context(context, plan, task), task, before,
                               key=f"edgernn-replay-{tag}-{name}")
        previous[task["group"]] = future
        futures.append(future)
    say(f"{len(tasks)} task(s) over {plan['devices']} device(s), {plan['rows']} rows"
        + (f"; {skipped} finished by an earlier run" if skipped else ""))
    return futures


def _task_context(context: dict, plan: dict, task: dict) -> dict:
    """The context with only the files and pieces this task reads (a task's arguments travel with it)."""
    source = context["source"]
    ids = sorted({p for _, pieces in task["devices"] for p in pieces})
    files = sorted({plan["pieces"][p][0] for p in ids})
    local = {f: i for i, f in enumerate(files)}
    pieces = {p: (local[plan["pieces"][p][0]], *plan["pieces"][p][1:]) for p in ids}
    return {**context, "source": dataclasses.replace(source, files=[source.files[f] for f in files]),
            "pieces": pieces}


def _watch(distributed, client, futures, progress) -> None:
    """Wait for ``futures`` (with Dask's progress bar), then raise the first task's error."""
    if not futures:
        return
    if progress:
        distributed.progress(futures)
    distributed.wait(futures)
    for future in futures:
        if future.status == "error":
            error = future.exception()
            client.cancel(futures)
            if isinstance(error, EdgernnError):
                raise error
            raise EdgernnError(f"a replay task failed: {type(error).__name__}: {error}") from error
        if future.status == "cancelled":
            raise EdgernnError("the scheduler cancelled the replay's tasks (it was restarted, or lost them): "
                               "run the same replay again to continue")
