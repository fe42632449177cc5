"""Cold start: a fresh process, from nothing to the first output, and its peak memory.

Each measurement is a new Python process (``sys.executable``, the benchmark's own environment:
single-threaded BLAS). Inside it, the script times its phases with ``perf_counter`` from its
first line; the parent measures the time from spawning it to its first output (interpreter start-up
included; the child stamps the wall clock at its first output) and to its exit. Peak RSS is the
child's ``VmHWM``.

* edgernn after ``edgernn warmup MODEL``: ``NUMBA_CACHE_DIR`` is a directory that warmup
  prepared in another process -- what a device does at install time. warmup builds the
  ahead-of-time step module there (edgernn.kernels.aot), so the stream never imports Numba; the
  child reports whether it did, and whether the module was used.
* the same with ``EDGERNN_AOT=0``: the fused step loads from Numba's on-disk cache instead (the
  child reports the chain kernel's cache hits and misses to prove it).
* edgernn, cold cache: ``NUMBA_CACHE_DIR`` is a new empty directory each time: Numba compiles.
  Compile time = cold - Numba-cache (medians).
* LiteRT: the same model's one-step .tflite (state in resource variables), load + allocate +
  first invoke.
* Python + NumPy alone, for scale.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgernn.bench import median

# Peak RSS: VmHWM of this process's own address space. ru_maxrss is not used: on Linux it keeps
# the high-water mark of the forked parent across exec (a benchmark process with TensorFlow
# loaded reads ~900 MB in every child).
PEAK = r"""
def peak_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

EDGERNN_CHILD = r"""
import time
t0 = time.perf_counter()
import json, sys
import numpy as np
t1 = time.perf_counter()
import edgernn
t3 = time.perf_counter()
model = edgernn.load(sys.argv[1])
s = model.stream(1)
t4 = time.perf_counter()
y = s.step(np.zeros((1, model.input_features), np.float32))
t5 = time.perf_counter()
stamp = time.time()
aot = edgernn.kernels.aot.loaded is not None
stats = None if aot else edgernn.kernels.chain_step.stats
print(json.dumps({"numpy": t1 - t0, "numba": float("numba" in sys.modules), "aot": float(aot), "edgernn": t3 - t1,
                  "load": t4 - t3, "first": t5 - t4, "total": t5 - t0, "rss_mb": peak_mb(),
                  "hits": sum(stats.cache_hits.values()) if stats else 0,
                  "misses": sum(stats.cache_misses.values()) if stats else 0,
                  "stamp": stamp, "y": float(y.reshape(-1)[0])}))
"""

LITERT_CHILD = r"""
import time
t0 = time.perf_counter()
import json, sys
import numpy as np
t1 = time.perf_counter()
from ai_edge_litert.interpreter import Interpreter
t2 = time.perf_counter()
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
t4 = time.perf_counter()
detail = interpreter.get_input_details()[0]
interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], np.float32))
interpreter.invoke()
y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
t5 = time.perf_counter()
stamp = time.time()
print(json.dumps({"numpy": t1 - t0, "numba": 0.0, "edgernn": t2 - t1, "load": t4 - t2, "first": t5 - t4,
                  "total": t5 - t0, "rss_mb": peak_mb(),
                  "stamp": stamp, "y": float(y.reshape(-1)[0])}))
"""

NUMPY_CHILD = r"""
import time
t0 = time.perf_counter()
import json
import numpy as np
t1 = time.perf_counter()
print(json.dumps({"numpy": t1 - t0, "numba": 0.0, "edgernn": 0.0, "load": 0.0, "first": 0.0, "total": t1 - t0,
                  "rss_mb": peak_mb(), "stamp": time.time()}))
"""


WARM = "edgernn after `edgernn warmup` (ahead-of-time step)"
NUMBA_CACHE = "edgernn, Numba's warm cache only (EDGERNN_AOT=0)"
COLD = "edgernn, cold cache (compiles)"


def _child(script, args, env):
    """Run one child: its phases, ``to_first`` (seconds from spawning it to its first output, on
    the wall clock both processes share) and ``wall`` (spawn to exit: exit included)."""
    spawned = time.time()
    start = time.perf_counter()
    # peak_mb is defined first (a def costs nothing); the script's clock starts on its first line
    done = subprocess.run([sys.executable, "-c", PEAK + script, *map(str, args)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"child failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["to_first"] = result.pop("stamp") - spawned
    return result


# 0/1 per run (was Numba imported, was the ahead-of-time step used): their mean is the share of runs.
FLAGS = ("numba", "aot")


def _summary(runs):
    keys = runs[0].keys()
    return {k: (statistics.fmean if k in FLAGS else median)([r[k] for r in runs])
            for k in keys if isinstance(runs[0][k], (int, float))} | {"n": len(runs)}


def run_cold(bundles, *, repeats, cold_repeats, log, workdir: Path):
    """``{model key: {row: summary}}``; the cold-cache row for the first model only (the compiled
    kernel is one function for every model, so its compile time does not depend on the model)."""
    env = dict(os.environ)
    env.pop("EDGERNN_AOT_DIR", None)  # the module lives beside Numba's cache, in NUMBA_CACHE_DIR
    env.pop("EDGERNN_AOT", None)
    results = {}
    # One warm cache for all models, as on a device: the chain kernel is one function for every model.
    cache = Path(tempfile.mkdtemp(prefix="numba-warm-", dir=workdir))
    warm_env = dict(env, NUMBA_CACHE_DIR=str(cache))
    for index, bundle in enumerate(bundles):
        md = bundle.model
        log(f"[cold] model {md.label}")
        rows = {}
        ernn = bundle.ernn_path
        start = time.perf_counter()
        prepared = subprocess.run([sys.executable, "-m", "edgernn.cli", "warmup", str(ernn)], env=warm_env,
                                  capture_output=True, text=True)
        if prepared.returncode != 0:
            raise RuntimeError(f"edgernn warmup failed: {prepared.stderr.strip()[-300:]}")
        log(f"  edgernn warmup: {time.perf_counter() - start:.2f} s wall")
        what = ("compiles every kernel the model uses, builds the ahead-of-time step" if index == 0
                else "the kernels it shares with earlier models load")
        rows[f"`edgernn warmup MODEL` ({what})"] = {"wall": time.perf_counter() - start, "n": 1}
        try:
            tflite_path = bundle.tflite_path("step_rv", 1)
        except Exception as exc:  # noqa: BLE001
            log(f"  LiteRT unavailable: {exc}")
            tflite_path = None
        warm, jit, litert, bare, cold = [], [], [], [], []
        for r in range(repeats):
            warm.append(_child(EDGERNN_CHILD, [ernn], warm_env))
            jit.append(_child(EDGERNN_CHILD, [ernn], dict(warm_env, EDGERNN_AOT="0")))
            if tflite_path:
                litert.append(_child(LITERT_CHILD, [tflite_path], env))
            if index == 0:
                bare.append(_child(NUMPY_CHILD, [], env))
            if index == 0 and r < cold_repeats:
                empty = tempfile.mkdtemp(prefix="numba-cold-", dir=workdir)
                cold.append(_child(EDGERNN_CHILD, [ernn], dict(env, NUMBA_CACHE_DIR=empty)))
        rows[WARM] = _summary(warm)
        rows[NUMBA_CACHE] = _summary(jit)
        if cold:
            rows[COLD] = _summary(cold)
        if litert:
            rows["LiteRT (one-step .tflite, resource variables)"] = _summary(litert)
        if bare:
            rows["Python + import numpy only"] = _summary(bare)
        for name, row in rows.items():
            if "total" in row:
                log(f"  {name}: to first output {row['to_first']:.3f} s, in-process {row['total']:.3f} s, "
                    f"to exit {row['wall']:.3f} s, peak RSS {row['rss_mb']:.0f} MB"
                    + (f", numba imported {row['numba']:.0f}, ahead-of-time step {row['aot']:.0f}" if "aot" in row else "")
                    + (f", chain_step cache hits {row['hits']:.0f} misses {row['misses']:.0f}" if "hits" in row else ""))
        results[md.key] = rows
    return results
