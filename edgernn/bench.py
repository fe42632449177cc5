"""Benchmarks: the timing harness, a plain NumPy baseline, and ``edgernn bench MODEL``.

The harness (:func:`measure`) is shared with the full suite in ``tools/bench`` (edgernn against
TFLite/LiteRT, ONNX Runtime, PyTorch, Keras and NumPy on the same weights). Its rules:

* outputs are checked to agree before anything is timed (:func:`max_difference`); a contender
  that disagrees is reported, not timed;
* contenders are interleaved: every round times each once, in a rotated order, so a noisy
  neighbour on a shared machine hits them all alike; the result is the median over rounds;
* each timed statement runs through :mod:`timeit` (no extra Python call layer, GC off), as many
  times as fit in ``min_time``.

:class:`NumpyChain` is the plain NumPy float32 implementation of a streamable model -- the
equations of :mod:`edgernn.reference` with ``x @ W + h @ U`` products, no tricks -- that every
benchmark holds edgernn against.

``edgernn bench MODEL`` (:func:`bench_model`) times one step of one stream, a block of steps and
many streams, each against NumPy and, when the user passes them, a TFLite or ONNX file of the same
model. Timings are never pass/fail: machines are noisy, so they go in tables, not tests.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import timeit
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import ir
from ._version import __version__
from .errors import InvalidInput, NotStreamable
from .graph import several_inputs_problem, streamable_problem
from .reference.activations import FUNCTIONS

_F32 = np.float32
AGREEMENT_ATOL = 1e-4
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------
@dataclass
class Contender:
    """One thing to time: ``stmt`` run in ``namespace``; it does ``units`` units of work
    (steps, or calls) each time, and results are reported per unit."""

    name: str
    stmt: str
    namespace: dict
    units: int = 1
    note: str = ""


def measure(contenders, *, rounds: int = 7, min_time: float = 0.05, log: Optional[Callable] = None) -> dict:
    """Time each contender: ``{name: [seconds per unit, one per round]}``.

    First a calibration (which also warms up): how many runs of the statement fill ``min_time``.
    Then ``rounds`` rounds; round ``r`` starts with contender ``r`` (mod n), so no contender
    always runs first or right after a particular other one.
    """
    contenders = list(contenders)
    timers = [timeit.Timer(c.stmt, globals=c.namespace) for c in contenders]
    numbers = []
    for c, timer in zip(contenders, timers):
        number = 1
        while True:
            elapsed = timer.timeit(number)
            if elapsed >= min_time / 4 or number >= 1 << 24:
                break
            number *= 4 if elapsed < min_time / 40 else 2
        numbers.append(max(1, int(number * min_time / max(elapsed, 1e-9))))
        if log:
            log(f"  calibrated {c.name}: {numbers[-1]} runs per measurement")
    samples = {c.name: [] for c in contenders}
    n = len(contenders)
    for r in range(rounds):
        for k in range(n):
            i = (r + k) % n
            elapsed = timers[i].timeit(numbers[i])
            samples[contenders[i].name].append(elapsed / numbers[i] / contenders[i].units)
    return samples


def median(values) -> float:
    return float(statistics.median(values))


def spread(values) -> float:
    """Half the interquartile range relative to the median: how noisy a measurement was."""
    if len(values) < 4:
        return float("nan")
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / 2 / statistics.median(values)


def max_difference(a, b) -> float:
    """Largest absolute difference between two outputs of the same shape (inf if shapes differ)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size != b.size:
        return float("inf")
    return float(np.max(np.abs(a.reshape(-1) - b.reshape(-1)))) if a.size else 0.0


def format_time(seconds: float, unit: str) -> str:
    """``seconds`` in ``unit`` (s, ms, us, ns) with three significant digits."""
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    value = seconds * scale
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


UNIT_LABEL = {"s": "s", "ms": "ms", "us": "µs", "ns": "ns"}


def markdown_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        return value
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The vector extensions the kernels' speed depends on, as /proc/cpuinfo names them (x86 "flags",
# Arm "Features": asimd is NEON), and how a table shows them.
_VECTOR_FLAGS = {"avx2": "avx2", "avx512f": "avx512f", "asimd": "neon", "neon": "neon", "sve": "sve"}


def vector_extensions() -> str:
    """The CPU's vector extensions among avx2, avx512f, neon and sve (from /proc/cpuinfo), and
    the CPU model LLVM, so Numba, compiles the kernels for: "avx2, avx512f (LLVM target znver5)"."""
    found = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    found = sorted({_VECTOR_FLAGS[flag] for flag in value.split() if flag in _VECTOR_FLAGS})
                    break
    except OSError:
        pass
    if not found and platform.machine().lower() in ("arm64", "aarch64"):
        found = ["neon"]  # every AArch64 core has it (macOS has no /proc/cpuinfo)
    text = ", ".join(found) or "none found"
    try:
        import llvmlite.binding as llvm  # lazy, as Numba (below) is: only a benchmark table reports it

        named = os.environ.get("NUMBA_CPU_NAME", "host")
        text += f" (LLVM target {llvm.get_host_cpu_name() if named == 'host' else named})"
    except Exception:  # noqa: BLE001 - a missing llvmlite only costs the note
        pass
    return text


def blas_name() -> str:
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older NumPy: no CONFIG dict
        return "?"


def system_info(extra_versions: Optional[dict] = None) -> dict:
    """What a benchmark table needs to be read: machine, versions, threads, date, load."""
    import numba  # lazy: only a benchmark table reports its version; importing bench must stay free of Numba

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "vector extensions": vector_extensions(),
        "machine": platform.machine(),
        "cores": f"{os.cpu_count()} ({usable} usable)",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "edgernn": __version__,
        "numpy": f"{np.__version__} ({blas_name()})",
        "numba": numba.__version__,
    }
    info.update(extra_versions or {})
    info["threads"] = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in THREAD_VARIABLES)
    if os.environ.get("OPENBLAS_CORETYPE"):
        info["threads"] += f", OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}"
    info["load average"] = load_average()
    return info


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "?"


def format_system(info: dict) -> str:
    return markdown_table(["", ""], [(k, v) for k, v in info.items()]).replace("| --- | ---: |", "|---|---|")


# ---------------------------------------------------------------------------------------------
# The NumPy baseline
# ---------------------------------------------------------------------------------------------
def _float32_activation(name: str):
    if name == "tanh":
        return np.tanh
    if name == "sigmoid":
        return lambda v: 1.0 / (1.0 + np.exp(-v))
    if name == "linear":
        return lambda v: v
    function = FUNCTIONS[name]
    return lambda v: np.asarray(function(v), _F32)


def _no_clip(v):
    return v


class _NpRecurrent:
    """One recurrent layer: the cell equations of :mod:`edgernn.reference`, in float32."""

    def __init__(self, op: ir.Recurrent):
        self.op = op
        n = op.units
        self.n = n
        self.W = op.kernel
        self.b = op.bias if op.bias is not None else np.zeros(op.gates * n, _F32)
        self.U = op.recurrent_kernel
        self.act = _float32_activation(op.activation)
        self.ract = _float32_activation(op.recurrent_activation)
        clip = op.cell_clip
        self.clip = _no_clip if clip is None else (lambda v: np.clip(v, _F32(-clip), _F32(clip)))
        if op.cell == "gru":
            self.rb = op.recurrent_bias
            self.U_main, self.U_candidate = self.U[:, : 2 * n].copy(), self.U[:, 2 * n :].copy()
        if op.cell == "lstm":
            self.peephole = op.peephole
            self.projection = op.projection
        self.width = op.output_size

    def zero_state(self, batch):
        sizes = self.op.state_sizes
        return [np.zeros((batch, s), _F32) for s in sizes] + [np.zeros((batch, self.width), _F32)]

    def cell(self, zx, state):
        """One step from the input projection ``zx`` (B, gates * units, bias included)."""
        n, clip, act, ract = self.n, self.clip, self.act, self.ract
        if self.op.cell == "lstm":
            h, c = state[0], state[1]
            z = zx + h @ self.U
            if self.peephole is None and clip is _no_clip and self.op.recurrent_activation == "sigmoid":
                s = ract(z)
                c = s[:, n : 2 * n] * c + s[:, :n] * act(z[:, 2 * n : 3 * n])
                h = s[:, 3 * n :] * act(c)
            else:
                p = self.peephole if self.peephole is not None else np.zeros((3, n), _F32)
                i = ract(clip(z[:, :n] + p[0] * c))
                f = ract(clip(z[:, n : 2 * n] + p[1] * c))
                c = f * c + i * act(clip(z[:, 2 * n : 3 * n]))
                h = ract(clip(z[:, 3 * n :] + p[2] * c)) * act(c)
            if self.projection is not None:
                h = h @ self.projection
            return h, [h, c]
        h = state[0]
        if self.op.cell == "gru":
            if self.op.reset_after:
                hu = h @ self.U
                if self.rb is not None:
                    hu += self.rb
                zr = ract(clip(zx[:, : 2 * n] + hu[:, : 2 * n]))
                candidate = act(clip(zx[:, 2 * n :] + zr[:, n:] * hu[:, 2 * n :]))
            else:
                zr = ract(clip(zx[:, : 2 * n] + h @ self.U_main))
                candidate = act(clip(zx[:, 2 * n :] + (zr[:, n:] * h) @ self.U_candidate))
            z = zr[:, :n]
            h = z * h + (1 - z) * candidate
        else:
            h = act(clip(zx + h @ self.U))
        return h, [h]

    def step(self, x, state, keep):
        output, new = self.cell(x @ self.W + self.b, state)
        return self._masked(output, new, state, keep)

    def _masked(self, output, new, state, keep):
        if keep is not None:
            k = keep[:, None]
            new = [np.where(k, a, b) for a, b in zip(new, state)]
            output = np.where(k, output, np.zeros_like(output) if self.op.zero_output_for_mask else state[-1])
        state[:] = new + [output]
        return output

    def block(self, x, state, keep):
        batch, steps, features = x.shape
        zx = (x.reshape(-1, features) @ self.W).reshape(batch, steps, -1)
        zx += self.b
        ys = np.empty((batch, steps, self.width), _F32)
        for t in range(steps):
            output, new = self.cell(zx[:, t], state)
            ys[:, t] = self._masked(output, new, state, None if keep is None else keep[:, t])
        return ys


class NumpyChain:
    """A streamable model as plain NumPy float32: ``step(x)`` (B, F) -> (B, O) and ``run(x)``
    (B, T, F) -> (B, T, O), the state carried like a :class:`~edgernn.Stream`'s."""

    def __init__(self, spec: ir.ModelSpec, batch: int = 1):
        problem = streamable_problem(spec)
        if problem is not None:
            raise NotStreamable(problem)
        self.batch = batch
        self.stages = []
        current = spec.inputs[0].name
        for node in spec.nodes:
            op = node.op
            if node.inputs[0] != current:  # a graph of branches: the NumPy contrast covers chains only
                raise NotStreamable(f"the NumPy baseline steps a chain; layer {op.name!r} reads another branch")
            current = node.outputs[0]
            if isinstance(op, ir.Recurrent):
                self.stages.append(_NpRecurrent(op))
            elif isinstance(op, ir.Dense):
                bias = op.bias if op.bias is not None else np.zeros(op.output_size, _F32)
                self.stages.append(("dense", op.kernel, bias, _float32_activation(op.activation)))
            elif isinstance(op, ir.Activation):
                self.stages.append(("activation", _float32_activation(op.activation)))
            elif isinstance(op, ir.Masking):
                self.stages.append(("masking", _F32(op.mask_value)))
            else:  # a Conv1D, pooling, Affine: the NumPy contrast covers recurrent chains only
                raise NotStreamable(f"the NumPy baseline has no {type(op).__name__} (layer {op.name!r})")
        self.reset()

    def reset(self):
        self.states = [s.zero_state(self.batch) if isinstance(s, _NpRecurrent) else None for s in self.stages]

    def _apply(self, x, recurrent_method):
        keep = None
        for stage, state in zip(self.stages, self.states):
            if isinstance(stage, _NpRecurrent):
                x = recurrent_method(stage, x, state, keep)
            elif stage[0] == "dense":
                x = stage[3](x @ stage[1] + stage[2])
            elif stage[0] == "activation":
                x = stage[1](x)
            else:
                keep = np.any(x != stage[1], axis=-1)
                x = np.where(keep[..., None], x, _F32(0))
        return x

    def step(self, x):
        return self._apply(x, _NpRecurrent.step)

    def run(self, x):
        return self._apply(x, _NpRecurrent.block)


# ---------------------------------------------------------------------------------------------
# A user's TFLite / ONNX file of the same model
# ---------------------------------------------------------------------------------------------
class _PeerFile:
    """An ONNX or TFLite file seen as ``inputs`` (name, shape with None for free dimensions) and
    ``session(shapes)`` -> a function from a feed dict to the list of outputs.

    The first input is the sequence: ``(batch, T, features)`` or time-major ``(T, batch, features)``
    (found by trying both against edgernn). Further inputs are taken as initial states; an output
    of the same shape as one of them is fed back into it on the next call, so the state is carried.
    """

    def __init__(self, kind: str, path: str):
        self.kind, self.path = kind, path
        if kind == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.inputs = [(i.name, [d if isinstance(d, int) and d > 0 else None for d in i.shape])
                           for i in self._session.get_inputs()]
            self.label = f"ONNX Runtime {ort.__version__}"
        else:
            try:
                from ai_edge_litert.interpreter import Interpreter
                self.label = "LiteRT"
            except ImportError:
                try:
                    from tflite_runtime.interpreter import Interpreter
                    self.label = "tflite-runtime"
                except ImportError:
                    from tensorflow.lite import Interpreter
                    self.label = "TensorFlow Lite"
            self._interpreter_class = Interpreter
            with open(path, "rb") as f:
                self._content = f.read()
            probe = Interpreter(model_content=self._content)
            self.inputs = [(d["name"], [int(v) if v > 0 else None for v in d.get("shape_signature", d["shape"])])
                           for d in probe.get_input_details()]

    def session(self, shapes: dict):
        """A callable feeds -> outputs for inputs of these shapes (TFLite resizes; ONNX checks)."""
        if self.kind == "onnx":
            session = self._session
            return lambda feeds: session.run(None, feeds)
        interpreter = self._interpreter_class(model_content=self._content, num_threads=1)
        details = {d["name"]: d for d in interpreter.get_input_details()}
        for name, shape in shapes.items():
            if tuple(details[name]["shape"]) != tuple(shape):
                interpreter.resize_tensor_input(details[name]["index"], list(shape), strict=False)
        interpreter.allocate_tensors()
        indices = [(name, details[name]["index"]) for name in shapes]
        outputs = [d["index"] for d in interpreter.get_output_details()]
        set_tensor, invoke, get_tensor = interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor

        def run(feeds):
            for name, index in indices:
                set_tensor(index, feeds[name])
            invoke()
            return [get_tensor(i) for i in outputs]

        return run


class _PeerRunner:
    """A peer file prepared for one (batch, T): ``call()`` runs it once on a fixed input, state
    carried when the file has state inputs; ``outputs(x)`` gives (B, T, O) or (B, O) for ``x``."""

    def __init__(self, peer: _PeerFile, batch: int, steps: int, time_major: bool, features: int, out_features: int):
        self.peer, self.batch, self.steps, self.time_major = peer, batch, steps, time_major
        self.out_features = out_features
        (self.x_name, x_shape), *state_inputs = peer.inputs
        if len(x_shape) != 3:
            raise InvalidInput(f"its first input has shape {x_shape}; expected a sequence (batch, T, features)")
        want = (steps, batch, features) if time_major else (batch, steps, features)
        fixed = [(w, s) for w, s in zip(want, x_shape) if s is not None and s != w]
        if fixed and peer.kind == "onnx":
            raise InvalidInput(f"its input shape is fixed to {x_shape}; this benchmark needs {list(want)}")
        self.shapes = {self.x_name: want}
        for name, shape in state_inputs:
            self.shapes[name] = tuple(batch if s is None else s for s in shape)
        self.run = peer.session(self.shapes)
        self.state_names = [name for name, _ in state_inputs]
        self.stateful = False
        self.reset()

    def reset(self):
        self.feeds = {name: np.zeros(self.shapes[name], _F32) for name in self.shapes}

    def _carry(self, outputs):
        """Feed outputs back into the state inputs: each state input takes the first output after
        the sequence output that has its shape and is not taken yet (so h and c, of one shape,
        pair up in order)."""
        free = list(range(1, len(outputs)))
        for name in self.state_names:
            for k in free:
                if outputs[k].shape == self.shapes[name]:
                    self.feeds[name] = outputs[k]
                    free.remove(k)
                    self.stateful = True
                    break

    def outputs(self, x):
        """Run on ``x`` (B, T, F); the first output as (B, T, O) if it has every step, else (B, O)."""
        self.feeds[self.x_name] = np.ascontiguousarray(x.transpose(1, 0, 2) if self.time_major else x, _F32)
        outputs = self.run(self.feeds)
        self._carry(outputs)
        y = np.asarray(outputs[0])
        if self.steps > 1 and y.size == self.batch * self.steps * self.out_features:
            y = y.reshape((self.steps, self.batch, -1) if self.time_major else (self.batch, self.steps, -1))
            return y.transpose(1, 0, 2) if self.time_major else y
        return y.reshape(self.batch, -1)

    def call(self):
        self._carry(self.run(self.feeds))


def _agreeing_runner(peer, model, batch, steps, rng, log):
    """The layout under which ``peer`` agrees with edgernn, or the reason it does not."""
    features = model.input_features
    checks = 3 if steps == 1 else 1  # steps called one after another: the state must be carried
    x = rng.normal(size=(batch, steps * checks, features)).astype(_F32)
    expected = model.stream(batch).run(x)
    problems = []
    for time_major in (False, True):
        try:
            runner = _PeerRunner(peer, batch, steps, time_major, features, model.output_features)
        except Exception as exc:  # noqa: BLE001 - whatever the peer refuses
            problems.append(_first_line(exc))
            continue
        worst = 0.0
        try:
            for k in range(checks):
                got = runner.outputs(x[:, k * steps : (k + 1) * steps])
                want = expected[:, k * steps : (k + 1) * steps]
                want = want if got.ndim == 3 else want[:, -1]
                if k > 0 and not runner.stateful:
                    break  # stateless: later calls start from zero again, nothing to compare
                worst = max(worst, max_difference(got, want))
        except Exception as exc:  # noqa: BLE001
            problems.append(_first_line(exc))
            continue
        if worst <= AGREEMENT_ATOL:
            runner.reset()
            runner.outputs(x[:, :steps])  # the timed input
            if log:
                log(f"  {peer.label} agrees ({'time' if time_major else 'batch'}-major, max diff {worst:.1e})")
            return runner, None
        problems.append(f"{'time' if time_major else 'batch'}-major: outputs differ by up to {worst:.2g}")
    return None, "; ".join(dict.fromkeys(problems))


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:120]


# ---------------------------------------------------------------------------------------------
# edgernn bench MODEL
# ---------------------------------------------------------------------------------------------
@dataclass
class SectionResult:
    title: str
    unit: str
    baseline: str
    samples: dict = field(default_factory=dict)  # name -> list of seconds per unit
    notes: dict = field(default_factory=dict)  # name -> note
    skipped: dict = field(default_factory=dict)  # name -> why not timed

    def table(self) -> str:
        base = median(self.samples[self.baseline]) if self.baseline in self.samples else None
        rows = []
        for name, values in self.samples.items():
            m = median(values)
            ratio = f"{m / base:.2f}x" if base else "-"
            noise = spread(values)
            rows.append((name, format_time(m, self.unit), "-" if noise != noise else f"±{noise * 100:.0f}%", ratio,
                         self.notes.get(name, "")))
        for name, why in self.skipped.items():
            rows.append((name, "-", "", "not timed", why))
        header = [self.title, f"median {UNIT_LABEL[self.unit]}", "spread", "time / edgernn", "note"]
        return markdown_table(header, rows)


def bench_model(model, *, tflite=None, onnx=None, quick: bool = False, steps: int = 1000, streams: int = 400,
                rounds: Optional[int] = None, log: Optional[Callable] = None) -> list:
    """Time ``model`` (an :class:`edgernn.Model`) against NumPy and the given peer files."""
    problem = several_inputs_problem(model.spec, "edgernn bench")
    if problem:
        raise InvalidInput(problem)
    rounds = rounds or (3 if quick else 7)
    min_time = 0.01 if quick else 0.05
    rng = np.random.default_rng(0)
    features = model.input_features
    peers = []
    for kind, path in (("tflite", tflite), ("onnx", onnx)):
        if path:
            try:
                peers.append(_PeerFile(kind, path))
            except ImportError as exc:
                if log:
                    log(f"skipping {path}: {exc} (install onnxruntime / ai-edge-litert to compare)")
                peers.append(None)

    results = []
    for title, batch, block, unit in (("one step, batch 1", 1, 1, "us"), (f"block of {steps} steps, 1 stream", 1, steps, "ns"),
                                      (f"{streams} streams, one step", streams, 1, "us")):
        if log:
            log(f"{title}:")
        section = SectionResult(title, unit, "edgernn")
        contenders = []
        x = rng.normal(size=(batch, block, features)).astype(_F32)
        s = model.stream(batch)
        try:
            reference = NumpyChain(model.spec, batch)
        except NotStreamable as exc:  # a Conv1D, pooling or Affine: edgernn and the peers only
            reference, section.skipped["NumPy"] = None, str(exc)
        if block == 1:
            x1 = np.ascontiguousarray(x[:, 0])
            y = np.zeros((batch, model.output_features), _F32)
            contenders.append(Contender("edgernn", "step(x, out=y)", {"step": s.step, "x": x1, "y": y}))
            section.notes["edgernn"] = "s.step(x, out=y)"
            if reference is not None:
                check = rng.normal(size=(batch, 20, features)).astype(_F32)
                want = model.stream(batch).run(check)
                got = np.stack([reference.step(check[:, t]) for t in range(check.shape[1])], axis=1)
                contenders.append(Contender("NumPy", "step(x)", {"step": reference.step, "x": x1}))
        else:
            contenders.append(Contender("edgernn", "run(x)", {"run": s.run, "x": x}, units=block))
            section.notes["edgernn"] = "s.run(x)"
            if reference is not None:
                want = model.stream(batch).run(x)
                got = reference.run(x)
                contenders.append(Contender("NumPy", "run(x)", {"run": reference.run, "x": x}, units=block))
        if reference is not None:
            reference.reset()
            difference = max_difference(got, want)
            if difference > AGREEMENT_ATOL:
                contenders.pop()
                section.skipped["NumPy"] = f"disagrees with edgernn by up to {difference:.2g}"
            section.notes["NumPy"] = "plain float32 NumPy, same equations"
        for peer, path in zip(peers, [p for p in (tflite, onnx) if p]):
            if peer is None:
                continue
            runner, why = _agreeing_runner(peer, model, batch, block, rng, log)
            if runner is None:
                section.skipped[peer.label] = why
                continue
            runner.feeds[runner.x_name] = np.ascontiguousarray(x.transpose(1, 0, 2) if runner.time_major else x)
            contenders.append(Contender(peer.label, "call()", {"call": runner.call}, units=block))
            section.notes[peer.label] = (f"{os.path.basename(str(path))}, "
                                         + ("state carried" if runner.stateful else "stateless: every call starts from zero state"))
        section.samples = measure(contenders, rounds=rounds, min_time=min_time)
        results.append(section)
    return results


def format_results(model_label: str, results, info: Optional[dict] = None) -> str:
    parts = [f"## edgernn bench {model_label}", ""]
    if info:
        parts += [format_system(info), ""]
    for section in results:
        parts += [section.table(), ""]
    parts.append("Medians over interleaved rounds; spread is half the interquartile range; "
                 "time / edgernn > 1 means edgernn is faster.")
    return "\n".join(parts)


def single_thread_environment(threads: int = 1) -> dict:
    """The environment with the BLAS/OpenMP thread counts set (they must be set before NumPy loads)."""
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def threads_pinned(threads: int = 1) -> bool:
    return all(os.environ.get(name) == str(threads) for name in THREAD_VARIABLES)


__all__ = ["Contender", "measure", "median", "spread", "max_difference", "NumpyChain", "bench_model", "format_results",
           "system_info", "markdown_table", "format_time"]
