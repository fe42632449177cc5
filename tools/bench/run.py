"""Run the benchmark suite: edgernn against LiteRT, ONNX Runtime, PyTorch, Keras and NumPy.

    python tools/bench/run.py                      # everything, printed as markdown
    python tools/bench/run.py --quick              # few repeats (CI smoke)
    python tools/bench/run.py --models a,c --sections step,block
    python tools/bench/run.py --output docs/benchmarks.md

Everything runs single-threaded: the BLAS/OpenMP thread counts are set here, before NumPy is
imported, and each framework is told one thread. OPENBLAS_CORETYPE, if the machine sets it, is
left alone. Sections: step, block, streams, cold, gil, crossover (see docs/benchmarks.md).
"""

from __future__ import annotations

import os
import sys

# Before NumPy (and so OpenBLAS) is loaded anywhere: one thread everywhere.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ[_name] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import shlex  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

if __package__ in (None, ""):  # run as a script: make `bench` (this folder) importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

ALL_SECTIONS = ("step", "block", "streams", "cold", "gil", "crossover")


def _configure_frameworks(log):
    """One thread for each framework that is installed; quiet logs. Returns their versions."""
    versions = {}
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.get_logger().setLevel("ERROR")
        import keras

        versions["tensorflow / keras"] = f"{tf.__version__} / {keras.__version__}"
    except Exception as exc:  # noqa: BLE001
        log(f"TensorFlow unavailable: {exc}")
    try:
        import ai_edge_litert

        versions["ai-edge-litert"] = getattr(ai_edge_litert, "__version__", "?")
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        torch.set_grad_enabled(False)
        versions["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return versions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats and short measurements (CI smoke)")
    parser.add_argument("--models", default="a,b,c,d,e", help="comma-separated keys of the models (a, b, c, d, e)")
    parser.add_argument("--sections", default=",".join(ALL_SECTIONS), help=f"comma-separated: {', '.join(ALL_SECTIONS)}")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per measurement (default 7, quick 3)")
    parser.add_argument("--min-time", type=float, help="seconds per timed measurement (default 0.05, quick 0.01)")
    parser.add_argument("--steps", type=int, default=1000, help="steps in a block (default 1000)")
    parser.add_argument("--streams", type=int, default=400, help="streams in the many-streams section (default 400)")
    parser.add_argument("--output", type=Path, help="also write the tables into this markdown file (between markers)")
    args = parser.parse_args(argv)

    started = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(ALL_SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    rounds = args.rounds or (3 if args.quick else 7)
    min_time = args.min_time or (0.01 if args.quick else 0.05)

    from edgernn.bench import load_average, system_info

    from . import cold as cold_section
    from . import models as M
    from . import report
    from . import sections as S
    from .peers import Bundle

    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in keys if k not in M.MODELS]
    if bad:
        parser.error(f"unknown models: {', '.join(bad)} (choose from {', '.join(M.MODELS)})")
    load_before = load_average()
    versions = _configure_frameworks(log)
    workdir = Path(tempfile.mkdtemp(prefix="edgernn-bench-"))
    log(f"generated models go to {workdir}")
    bundles = [Bundle(M.make_weights(M.MODELS[k]), workdir) for k in keys]
    models = [b.model for b in bundles]

    # The stream's fused step is the ahead-of-time module when `edgernn warmup` built one (as a
    # device does at install): build it for this process too, or say why it is not used.
    from edgernn.kernels import aot

    start = time.perf_counter()
    try:
        log(f"ahead-of-time step: {aot.build_step()} ({time.perf_counter() - start:.1f} s)")
    except aot.AotUnavailable as exc:
        log(f"ahead-of-time step unavailable, streams use Numba's kernel: {exc}")

    tables, parts = {}, []
    cold = gil = None
    for key in ("step", "block", "streams"):
        if key in sections:
            tables[key] = S.run_section(key, bundles, rounds=rounds, min_time=min_time, log=log,
                                        steps=args.steps, streams=args.streams)
            parts.append(report.section_table(tables[key]))
    if "cold" in sections:
        cold = cold_section.run_cold(bundles, repeats=2 if args.quick else 5, cold_repeats=1 if args.quick else 3,
                                     log=log, workdir=workdir)
        parts.append(report.cold_table(cold, models))
    if "gil" in sections:
        gil = S.run_gil(bundles, rounds=rounds, min_time=min_time, log=log)
        parts.append(report.gil_table(gil, models))
    if "crossover" in sections:
        parts.append(report.crossover_table(S.run_crossover(bundles, rounds=rounds, min_time=min_time, log=log), models))

    info = system_info(versions)
    info["load average"] = f"{load_before} at start; {load_average()} at end (1, 5, 15 min)"
    info["settings"] = f"rounds={rounds}, min_time={min_time}s per measurement" + (" (--quick)" if args.quick else "")
    summary = report.targets(tables, cold, gil, models)
    command = "python tools/bench/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    noisy = None
    try:
        if float(load_before.split(",")[0]) > 0.5 * (os.cpu_count() or 1) or \
                float(load_average().split(",")[0]) > 0.5 * (os.cpu_count() or 1):
            noisy = ("**The machine was busy during this run** (see the load average): other processes shared its cores, "
                     "so absolute times are inflated and noisy; ratios from interleaved rounds hold up better.")
    except ValueError:
        pass
    body = report.document(info, command.strip(), [summary] + parts, noisy)
    print(body)
    if args.output:
        report.write(args.output, body)
        log(f"wrote {args.output}")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
