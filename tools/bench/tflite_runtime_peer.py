"""tflite-runtime 2.14 as a peer, run in a virtual environment of its own.

tflite-runtime's last release, 2.14, is built against NumPy 1 and needs ``numpy<2``; the
benchmark's environment has NumPy 2 (TensorFlow, LiteRT). So tflite-runtime gets its own venv,
made once with this Python (``sys.executable -m venv``) outside the repository, in
``~/.cache/edgernn-bench/tflite-runtime-venv`` or wherever ``EDGERNN_TFLITE_RUNTIME_VENV``
says, and kept for the next runs. If it cannot be made (no wheel for this platform or Python,
no package index), :func:`venv_python` raises :class:`~bench.peers.Unavailable` with the reason
and the benchmark reports the peer unavailable.

The peer runs in child processes of that venv, on a one-step .tflite file (state in resource
variables) from a fresh interpreter each time: :func:`step_outputs` for the agreement check
(inputs and outputs pass as .npy files) and :func:`time_step` for the timing. The child times
with the source of :func:`edgernn.bench.measure` itself (calibration, then rounds of ``timeit``,
seconds per step), so the methodology is the parent's; only its rounds cannot be interleaved
with the in-process contenders'.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgernn.bench import THREAD_VARIABLES, measure

from .peers import RESOURCE_VARIABLE_STEP, Unavailable

VENV_VARIABLE = "EDGERNN_TFLITE_RUNTIME_VENV"
DEFAULT_VENV = Path.home() / ".cache" / "edgernn-bench" / "tflite-runtime-venv"
REQUIREMENTS = ("tflite-runtime==2.14.0", "numpy<2")
INSTALL_TIMEOUT = 900  # seconds for venv + pip install (two wheels, ~20 MB)
CHILD_TIMEOUT = 600  # seconds for one child (an agreement check, or one contender's timing rounds)

# Runs in the venv's Python: argv = command ("outputs" or "time"), model path, inputs .npy, then
# the output .npy (outputs) or rounds and min_time (time). Prefixed with measure's source.
CHILD_SCRIPT = r"""
import json
import sys
import types

import numpy as np
from tflite_runtime.interpreter import Interpreter

command, model_path, inputs_path = sys.argv[1:4]
interpreter = Interpreter(model_path=model_path, num_threads=1)  # fresh: the state starts at zero
interpreter.allocate_tensors()
ii = interpreter.get_input_details()[0]["index"]
oi = interpreter.get_output_details()[0]["index"]
if command == "outputs":  # xs (B, T, F) one step at a time -> (B, T, O)
    xs = np.load(inputs_path)
    ys = []
    for t in range(xs.shape[1]):
        interpreter.set_tensor(ii, np.ascontiguousarray(xs[:, t]))
        interpreter.invoke()
        ys.append(np.array(interpreter.get_tensor(oi), np.float32).reshape(xs.shape[0], -1))
    np.save(sys.argv[4], np.stack(ys, axis=1))
else:
    namespace = {"set_tensor": interpreter.set_tensor, "invoke": interpreter.invoke,
                 "get_tensor": interpreter.get_tensor, "ii": ii, "oi": oi, "x": np.load(inputs_path)}
    contender = types.SimpleNamespace(name="tflite-runtime", stmt=STEP_STATEMENT, namespace=namespace, units=1)
    samples = measure([contender], rounds=int(sys.argv[4]), min_time=float(sys.argv[5]))
    print(json.dumps({"seconds": samples["tflite-runtime"]}))
"""

_venv = {}  # "python": the venv's Python, or "error": why it could not be made (asked once per process)


def venv_dir() -> Path:
    """Where the venv lives: ``$EDGERNN_TFLITE_RUNTIME_VENV``, else under ~/.cache."""
    return Path(os.environ.get(VENV_VARIABLE) or DEFAULT_VENV).expanduser()


def venv_python() -> Path:
    """The venv's Python, the venv made first if it is not there yet; :class:`Unavailable` (with
    pip's reason) if it cannot be made. Tried once per process: a failure is not retried per model."""
    if not _venv:
        try:
            _venv["python"] = _make_venv(venv_dir())
        except Unavailable as exc:
            _venv["error"] = exc
    if "error" in _venv:
        raise _venv["error"]
    return _venv["python"]


def _make_venv(directory: Path) -> Path:
    python = directory / "bin" / "python"
    marker = directory / ".edgernn-bench-installed"  # written last: a venv without it is incomplete
    wanted = f"{' '.join(REQUIREMENTS)} for Python {platform.python_version()}"  # a new Python: install again
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    directory.parent.mkdir(parents=True, exist_ok=True)
    # A lock beside the venv: a test run and a benchmark started together do not both install into it.
    with open(directory.parent / f"{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and marker.exists() and marker.read_text() == wanted:
            return python
        for command in ([sys.executable, "-m", "venv", str(directory)],
                        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS]):
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise Unavailable(f"installing {wanted} into {directory} took over {INSTALL_TIMEOUT} s") from None
            if done.returncode != 0:
                raise Unavailable(f"could not install {wanted} into {directory}: {_reason(done.stderr)}")
        marker.write_text(wanted)
    return python


def _reason(stderr: str) -> str:
    """pip's error line (its last ERROR line, else the last line of its stderr)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no message"])[-1][:300]


def _run_child(args) -> str:
    """Run the child script in the venv with ``args``; its stdout. One thread for its BLAS too;
    the parent's PYTHONPATH is not passed on (the venv has its own NumPy)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    script = ("from __future__ import annotations\nimport timeit\n" + inspect.getsource(measure)
              + f"\nSTEP_STATEMENT = {RESOURCE_VARIABLE_STEP!r}\n" + CHILD_SCRIPT)
    try:
        done = subprocess.run([str(venv_python()), "-c", script, *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"tflite-runtime child took over {CHILD_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"tflite-runtime child failed: {lines[-1] if lines else done.returncode}")
    return done.stdout


def step_outputs(model_path: Path, xs: np.ndarray) -> np.ndarray:
    """Outputs (B, T, O) of a fresh interpreter of ``model_path`` stepped over xs (B, T, F)."""
    with tempfile.TemporaryDirectory(prefix="tflite-runtime-", dir=model_path.parent) as folder:
        inputs, outputs = Path(folder) / "xs.npy", Path(folder) / "ys.npy"
        np.save(inputs, np.ascontiguousarray(xs, np.float32))
        _run_child(["outputs", model_path, inputs, outputs])
        return np.load(outputs)


def time_step(model_path: Path, x: np.ndarray, *, rounds: int, min_time: float) -> list:
    """Seconds per step of a fresh interpreter of ``model_path`` on x, one per round (measure's way)."""
    with tempfile.TemporaryDirectory(prefix="tflite-runtime-", dir=model_path.parent) as folder:
        inputs = Path(folder) / "x.npy"
        np.save(inputs, np.ascontiguousarray(x, np.float32))
        stdout = _run_child(["time", model_path, inputs, rounds, min_time])
    return json.loads(stdout.strip().splitlines()[-1])["seconds"]
