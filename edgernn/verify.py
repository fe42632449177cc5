"""Every conversion verifies itself: the source model, run by its own framework, against the converted one.

:func:`verify` runs both on the same inputs and records how far apart they are:

* **predict**: a seeded random batch (4 sequences of 24 steps, standard normal; the file's own
  sequence length where the source fixes one, ``Input.timesteps``, and its batch size where an
  importer records one as ``source["batch_size"]``) or the user's ``data``, through the source
  framework (the importer's ``run_source``: Keras, the TFLite interpreter, PyTorch, onnxruntime
  or, for ONNX files onnxruntime refuses, onnx's reference evaluator -- an importer that chooses
  among runtimes names the one it used with ``source_runtime(source)``) and through
  :meth:`edgernn.Model.predict`;
* **stream**: for streamable models, a stateful :class:`~edgernn.Stream` fed the same sequences
  in chunks of 1, 3, 7, 2, 5, ... steps. For a sequence output (``return_sequences``) the
  concatenated chunk outputs must equal the source's predict on the whole sequence; for a
  last-step output, the stream's output at a chunk boundary must equal the source's predict on
  the prefix that ends there (at the last boundary and one near the middle; only the whole sequence
  when the source fixes the sequence length, as TFLite files do).

Tolerance (``atol`` 1e-5, ``rtol`` 1e-4 by default): an element passes when
``|ours - source| <= atol * scale * length + rtol * |source|``, where ``scale`` is the largest
magnitude of that source output (at least 1: a regression output in the thousands is judged
relative to its size, a probability absolutely) and ``length`` is ``sqrt(T / 32)`` for sequences
longer than 32 steps (float32 rounding accumulates over the recurrence), else 1. Both runs are
float32, in different orders of summation, so agreement is to a few float32 ulps, far inside the
tolerance; a wrong gate order, transpose or bias gives errors of order 1. A TFLite file with
dynamic-range quantized weights is checked with ``atol = rtol = 5e-2``: its interpreter also
quantizes the activations to int8 on the fly, which edgernn (dequantized weights, float
activations) does not -- still far below the errors of a wrong conversion.

The record (a JSON-able dict) holds ``passed``, ``max_abs_error``, ``max_rel_error`` (relative to
the largest source output), ``tolerance``, ``framework``, ``data`` and the ``checks`` done.
When the framework is not installed (``run_source`` raises ImportError) the record says
``skipped`` with the reason and ``passed`` is None; when the framework fails to run the source,
``error`` says why.

**Loading the framework.** Importing it takes seconds (TensorFlow for Keras; not benchmarked here), so when
it is installed but not yet imported, a ``WARNING`` on the logger ``edgernn.verify`` says so
first, once (the ``edgernn`` command prints it as ``edgernn: <message>``; silence it with
``logging.getLogger("edgernn.verify").setLevel(logging.ERROR)``). What the frameworks print on
their own while they load and run -- TensorFlow's C++ start-up lines (oneDNN, CUDA drivers, CPU
instructions, absl's "before InitializeLog" notice), which ``TF_CPP_MIN_LOG_LEVEL`` no longer
silences, Python absl's warnings, and the TFLite interpreter's XNNPACK line -- is held back: the process's stderr (file
descriptor 2) goes to a temporary file while the source runs, and every other line is written
back to stderr afterwards. ``TF_CPP_MIN_LOG_LEVEL=3`` and ``GRPC_VERBOSITY=ERROR`` are set unless
already set, and Python absl's logging is lowered to errors; ``TF_ENABLE_ONEDNN_OPTS`` is left
alone, since it changes TensorFlow's numerics.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import re
import sys
import tempfile
import threading
from importlib import metadata
from typing import Optional

import numpy as np

from . import ir
from .errors import InvalidInput
from .graph import streamable_problem

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
HYBRID_QUANTIZED_TOLERANCE = (5e-2, 5e-2)
RANDOM_BATCH = 4
RANDOM_STEPS = 24
CHUNKS = (1, 3, 7, 2, 5)

# Importer module -> (package name to report, distribution to ask for its version).
_FRAMEWORKS = {"keras": ("keras", "keras"), "pytorch": ("torch", "torch"), "onnx": ("onnxruntime", "onnxruntime")}
# Importer module -> the modules its run_source imports (any one of them): loaded already, or installed.
_FRAMEWORK_MODULES = {"keras": ("keras", "tf_keras"), "pytorch": ("torch",), "onnx": ("onnxruntime",),
                      "tflite": ("ai_edge_litert", "tflite_runtime")}
# What the frameworks print on stderr by themselves while they load and run: absl/glog-format lines
# below ERROR (I/W), ERROR lines about CUDA on a machine without it, absl's notice that logging is
# not initialised, the CPU-instructions line's second half, TFLite's XNNPACK line, Python absl's
# info and warnings.
_FRAMEWORK_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] [\w./-]+:\d+\] "
    r"|(E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: E )"
    r"[\w./-]*(?i:cuda|cudnn|cufft|cublas|gpu)[\w./-]*:\d+\] "
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"
    r"|(INFO|WARNING):absl:")
_log = logging.getLogger(__name__)
_stderr_lock = threading.RLock()


def verify(source, model, data=None, seed: int = 0, tolerance=None, **options) -> dict:
    """Compare ``model`` (converted from ``source``) with ``source`` run by its own framework.

    ``data``: an array ``(batch, T, features)`` (or ``(T, features)``: one sequence), or a list
    of arrays for a model with several inputs; None for a seeded random batch. ``tolerance``:
    ``atol`` (rtol is then 10 x atol) or ``(atol, rtol)``; None for the defaults described in the
    module docstring. ``options`` are the importer options the model was converted with.
    Returns the verification record (see the module docstring); never raises for a missing
    framework.
    """
    from .importers import importer_module  # lazy: the importers load their frameworks; summary imports this module

    spec = model.spec
    module = importer_module(source)
    short = module.__name__.rsplit(".", 1)[-1]
    package = _FRAMEWORKS.get(short, ("the TFLite interpreter" if short == "tflite" else short,))[0]
    run_source = getattr(module, "run_source", None)
    if run_source is None:
        return {"passed": None, "skipped": f"the {short} importer cannot run its source model"}
    inputs, description = _inputs(spec, data, seed)
    atol, rtol, reason = _tolerance(spec, tolerance)
    _announce_loading(short, source, spec)
    run_source = _quietly(run_source)
    try:
        expected = _as_list(run_source(source, inputs, **options))
    except ImportError as exc:
        return {"passed": None, "skipped": f"{package} is not installed ({exc})"}
    except Exception as exc:  # noqa: BLE001 - whatever the framework raises, verification reports it
        return {"passed": None, "error": f"{package} could not run the source model: {type(exc).__name__}: {exc}",
                "data": description}
    # An importer that may run its source with one of several runtimes names the one it used.
    runtime = getattr(module, "source_runtime", None)
    framework = runtime(source) if runtime is not None else _framework_name(short, source, spec)
    steps = inputs[0].shape[1] if inputs[0].ndim == 3 else 1
    length = math.sqrt(steps / 32) if steps > 32 else 1.0
    checks = [_compare("predict", _as_list(model.predict(*inputs)), expected, atol, rtol, length)]
    checks.append(_stream_check(source, model, inputs, expected, run_source, options, atol, rtol, length))
    done = [c for c in checks if "passed" in c]
    errors = [c["max_abs_error"] for c in done]
    rel = [c["max_rel_error"] for c in done]
    result = {
        "passed": all(c["passed"] for c in done),
        "framework": framework,
        "data": description,
        "max_abs_error": None if None in errors else max(errors),
        "max_rel_error": None if None in rel else max(rel),
        "tolerance": {"atol": atol, "rtol": rtol, **({"why": reason} if reason else {})},
        "checks": checks,
    }
    return result


def summary_line(result: dict) -> str:
    """One line for people: ``verification PASS against keras 3.15.1: max abs error 2.4e-07 (...)``.

    Defensive about the record's types: it may come from a .ernn file written by anyone.
    """
    def num(value) -> str:
        return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"

    if not isinstance(result, dict):
        return "verification: unreadable record"
    if result.get("skipped"):
        return f"verification skipped: {result['skipped']}"
    if result.get("error"):
        return f"verification not done: {result['error']}"
    verdict = {True: "PASS", False: "FAIL"}.get(result.get("passed"), "unknown")
    tol = result.get("tolerance") if isinstance(result.get("tolerance"), dict) else {}
    return (f"verification {verdict} against {result.get('framework')}: max abs error {num(result.get('max_abs_error'))}, "
            f"max rel error {num(result.get('max_rel_error'))} (tolerance atol {num(tol.get('atol'))}, "
            f"rtol {num(tol.get('rtol'))}; {result.get('data')})")


# ---------------------------------------------------------------------------------------------


def _as_list(value) -> list:
    return [np.asarray(v) for v in value] if isinstance(value, (list, tuple)) else [np.asarray(value)]


def _inputs(spec, data, seed: int):
    if data is None:
        rng = np.random.default_rng(seed)
        # An importer whose source runs only at one batch size records it as source["batch_size"].
        batch = spec.source.get("batch_size")
        batch = batch if isinstance(batch, int) and not isinstance(batch, bool) and 1 <= batch <= 64 else RANDOM_BATCH
        arrays = []
        for inp in spec.inputs:
            shape = (batch, inp.timesteps or RANDOM_STEPS, inp.features) if inp.rank == 3 else (batch, inp.features)
            if inp.dtype == "int":  # codes every Embedding reading them takes
                vocab = min(n.op.vocab for n in spec.nodes if isinstance(n.op, ir.Embedding) and n.inputs[0] == inp.name)
                arrays.append(rng.integers(0, vocab, shape).astype(np.float32))
            else:
                arrays.append(rng.standard_normal(shape).astype(np.float32))
        shapes = ", ".join("x".join(map(str, a.shape)) for a in arrays)
        declared = [f"time length {inp.timesteps}" for inp in spec.inputs[:1] if inp.rank == 3 and inp.timesteps]
        declared += [f"batch size {batch}"] if batch == spec.source.get("batch_size") else []
        note = f" (the source's declared {' and '.join(declared)})" if declared else ""
        kind = "random normal" + (" (integer codes: uniform)" if any(i.dtype == "int" for i in spec.inputs) else "")
        return arrays, f"{kind}, seed {seed}, shape {shapes}{note}"
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(spec.inputs):
        raise InvalidInput(f"the model takes {len(spec.inputs)} input(s), the data holds {len(arrays)}")
    out = []
    for inp, array in zip(spec.inputs, arrays):
        array = np.asarray(array)
        if array.dtype.kind not in "fiub":
            raise InvalidInput(f"verification data for input {inp.name!r} has dtype {array.dtype}")
        array = array.astype(np.float32)
        if array.ndim == inp.rank - 1:  # one sequence without a batch axis
            array = array[None]
        if array.ndim != inp.rank or array.shape[-1] != inp.features or array.shape[0] == 0:
            expected = ("batch", "T", inp.features)[3 - inp.rank:]
            raise InvalidInput(f"verification data for input {inp.name!r} must have shape {expected}, got {array.shape}")
        out.append(array)
    shapes = ", ".join("x".join(map(str, a.shape)) for a in out)
    return out, f"given data, shape {shapes}"


def _tolerance(spec, tolerance):
    if tolerance is None:
        quantized = spec.source.get("quantized") or []
        if spec.source.get("format") == "tflite" and any("dynamic-range" in q for q in quantized):
            atol, rtol = HYBRID_QUANTIZED_TOLERANCE
            return atol, rtol, "dynamic-range quantized TFLite: the interpreter quantizes activations too"
        return DEFAULT_ATOL, DEFAULT_RTOL, None
    if isinstance(tolerance, (tuple, list)):
        atol, rtol = (float(v) for v in tolerance)
    else:
        atol = float(tolerance)
        rtol = 10.0 * atol
    if not (math.isfinite(atol) and math.isfinite(rtol) and atol >= 0 and rtol >= 0):
        raise InvalidInput(f"tolerance must be non-negative numbers, got {tolerance!r}")
    return atol, rtol, None


def _compare(what: str, ours: list, theirs: list, atol: float, rtol: float, length: float) -> dict:
    if len(ours) != len(theirs):
        return {"check": what, "passed": False, "max_abs_error": None, "max_rel_error": None,
                "problem": f"{len(ours)} outputs, the source has {len(theirs)}"}
    worst_abs = worst_rel = 0.0
    passed = True
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return {"check": what, "passed": False, "max_abs_error": None, "max_rel_error": None,
                    "problem": f"output shape {a.shape}, the source's {b.shape}"}
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            if not np.array_equal(np.isfinite(a), np.isfinite(b)) or np.any(a[~np.isfinite(a)] != b[~np.isfinite(b)]):
                return {"check": what, "passed": False, "max_abs_error": None, "max_rel_error": None,
                        "problem": "non-finite outputs that differ"}
            finite = np.isfinite(b)
            a, b = a[finite], b[finite]
        if a.size == 0:
            continue
        diff = np.abs(a - b)
        scale = float(np.max(np.abs(b)))
        bound = atol * max(1.0, scale) * length + rtol * np.abs(b)
        passed = passed and bool(np.all(diff <= bound))
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float(diff.max()) / max(scale, 1e-30))
    return {"check": what, "passed": passed, "max_abs_error": worst_abs, "max_rel_error": worst_rel}


def _stream_check(source, model, inputs, expected, run_source, options, atol, rtol, length) -> dict:
    spec = model.spec
    problem = streamable_problem(spec)
    if problem is not None:
        return {"check": "stream", "skipped": problem}
    x = inputs[0]
    batch, steps = x.shape[0], x.shape[1]
    stream = model.stream(batch)
    pieces, emitted, ends, t, k = [], [], [], 0, 0
    while t < steps:
        n = min(CHUNKS[k % len(CHUNKS)], steps - t)
        pieces.append(stream.run(*[i[:, t:t + n] for i in inputs]))  # every input's chunk (one of each per step)
        emitted.append(stream.emitted_run)
        t += n
        ends.append(t)
        k += 1
    y = np.concatenate(pieces, axis=1)
    emitted = np.concatenate(emitted, axis=1)[0]  # one phase for all rows of a fresh stream
    chunks = ", ".join(str(e - s) for s, e in zip([0] + ends[:-1], ends))
    if spec.tensor_shape(spec.outputs[0])[0] == 3:
        # A step that emitted returns the last row predict makes from the prefix ending there (predict is causal:
        # the row of that index on the whole sequence). Its rows grow with each input, except behind a strided
        # or valid Conv1D or pooling; a ZeroPadding1D makes the first ones from its zeros alone, before any
        # input; an UpSampling1D makes several per input, and the stream returns the last.
        made = [_rows_made(spec, t) for t in range(1, steps + 1)]
        picked = [count - 1 for count, fresh in zip(made, emitted) if fresh]
        source = np.asarray(expected[0])
        fits = source.ndim == 3 and source.shape[1] == made[-1]  # else the source is off: compared whole, it fails
        rows = source[:, picked] if fits else source
        check = _compare(f"stream in chunks of {chunks} steps vs predict", [y[:, emitted]], [rows], atol, rtol, length)
        return check
    # Last-step output: the stream's output at a chunk boundary is the prediction for the prefix
    # (held since the last emission; a prefix before the first emission has no prediction).
    fixed = any(i.timesteps is not None or i.dtype == "int" for i in spec.inputs)  # (codes: converted at a fixed T)
    middle = ends[(len(ends) - 1) // 2]
    prefixes = [steps] if fixed or len(ends) < 2 or not emitted[:middle].any() else [middle, steps]
    ours, theirs = [], []
    for p in prefixes:
        ours.append(y[:, p - 1])
        theirs.append(expected[0] if p == steps else _as_list(run_source(source, [i[:, :p] for i in inputs],
                                                                         **options))[0])
    what = f"stream in chunks of {chunks} steps vs predict on the prefixes of {', '.join(map(str, prefixes))} steps"
    return _compare(what, ours, theirs, atol, rtol, length)


def _rows_made(spec, steps: int) -> int:
    """How many timesteps the model's (sequence) output has when every input has ``steps``."""
    time, _ = spec.sequence_problems({i.name: steps for i in spec.inputs})
    return time[spec.outputs[0]][1]


def _framework_name(short: str, source, spec) -> str:
    if short == "tflite":
        from .importers.tflite import interpreter_name  # lazy: as importer_module above

        return interpreter_name()
    package, dist = _FRAMEWORKS.get(short, (short, short))
    if short == "keras":
        import importlib.util

        if not isinstance(source, (str, bytes)) and not hasattr(source, "__fspath__"):
            if type(source).__module__.split(".")[0] == "tf_keras":
                package, dist = "tf-keras", "tf-keras"
        elif str(spec.source.get("framework_version") or "").startswith("2.") and importlib.util.find_spec("tf_keras"):
            package, dist = "tf-keras", "tf-keras"
    try:
        return f"{package} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return package


def _announce_loading(short: str, source, spec) -> None:
    """Say why the next seconds pass, when run_source is about to import a framework that is
    installed but not imported yet (see the module docstring)."""
    names = _FRAMEWORK_MODULES.get(short, ())
    if not names or any(name in sys.modules for name in names):
        return  # loaded already (or blocked, as None): nothing to wait for
    try:
        if not any(importlib.util.find_spec(name) is not None for name in names):
            return  # not installed: the record will say skipped
    except (ImportError, ValueError):
        return
    framework = "the TFLite interpreter" if short == "tflite" else _framework_name(short, source, spec)
    _log.warning(f"verifying against {framework}: loading it takes a few seconds "
                 "(verify=False, or `edgernn convert --no-verify`, skips verification)")


def _quietly(run_source):
    """``run_source`` with the frameworks' own start-up chatter held back (see the module docstring)."""

    def run(*args, **kwargs):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        with _stderr_filtered():
            result = run_source(*args, **kwargs)
        if "absl.logging" in sys.modules:  # imported by TensorFlow: its Python warnings are not ours to show
            sys.modules["absl.logging"].set_verbosity("error")
        return result

    return run


@contextlib.contextmanager
def _stderr_filtered():
    """Send file descriptor 2 to a temporary file, then write back what is not framework noise."""
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable descriptor 2: nothing to filter
            saved = None
        if saved is None:
            yield
            return
        held = tempfile.TemporaryFile()
        try:
            os.dup2(held.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    sys.stderr.flush()  # what Python wrote to descriptor 2 belongs to the held text
                os.dup2(saved, 2)
                held.seek(0)
                text = held.read().decode("utf-8", "replace")
                kept = [line for line in text.splitlines(keepends=True)
                        if not _FRAMEWORK_NOISE.match(line.rstrip("\r\n"))]
                if kept:
                    sys.stderr.write("".join(kept))
                    sys.stderr.flush()
        finally:
            os.close(saved)
            held.close()


def check_verify_option(value) -> Optional[str]:
    """``convert``'s ``verify``: True, False or "warn" (anything else is refused)."""
    if value is True or value is False or value == "warn":
        return value
    raise InvalidInput(f"verify must be True, False or 'warn', got {value!r}")
