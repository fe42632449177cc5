"""The contenders: edgernn and every peer, each able to (1) produce outputs from zero state for
the agreement check and (2) hand the harness a timed statement, starting from fresh state.

Two modes: ``"step"`` (one timestep per call, ``batch`` streams, state carried) and ``"block"``
(``steps`` timesteps per call). A :class:`Peer` is built by a factory; a factory that cannot
build its peer (framework missing, conversion refused) raises :class:`Unavailable` with the
reason, which the report prints instead of a time. A peer that runs in another environment (see
tflite_runtime_peer.py) hands the harness an :class:`ExternallyTimed` instead of a Contender.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgernn.bench import Contender, NumpyChain

from . import models as M

F32 = np.float32


class Unavailable(Exception):
    """This contender cannot run here (the reason is its message)."""


@dataclass
class ExternallyTimed:
    """A contender that cannot be timed in this process (it runs in another environment):
    ``time(rounds=, min_time=)`` returns its seconds per unit, one per round, measured there the
    way :func:`edgernn.bench.measure` does. Its rounds cannot be interleaved with the others'."""

    time: Callable


@dataclass
class Peer:
    name: str
    outputs: Callable  # xs (B, T, F) -> (B, T, O) from zero state (or (B, steps, O) for a stateless block)
    contender: Callable  # x -> Contender (or ExternallyTimed), from fresh state
    note: str = ""
    stateful: bool = True
    informational: bool = False  # shown in the table, but not one of "the peers"
    tolerance: float = 1e-4  # largest |difference| from edgernn's float outputs that counts as agreeing


class Bundle:
    """One benchmark model in every framework, built lazily and cached."""

    def __init__(self, model: M.ModelDef, workdir: Path):
        self.model = model
        self.workdir = workdir
        self._cache = {}

    def get(self, what, build):
        if what not in self._cache:
            try:
                self._cache[what] = build()
            except Unavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - a framework failing to build is a result
                self._cache[what] = Unavailable(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        value = self._cache[what]
        if isinstance(value, Unavailable):
            raise value
        return value

    @property
    def edgernn(self):
        def build():
            import edgernn

            return edgernn.convert(M.keras_model(self.model))

        return self.get("edgernn", build)

    @property
    def ernn_path(self) -> Path:
        def build():
            path = self.workdir / f"model_{self.model.key}.ernn"
            self.edgernn.save(path)
            return path

        return self.get("ernn", build)

    @property
    def torch(self):
        def build():
            try:
                import torch  # noqa: F401
            except ImportError as exc:
                raise Unavailable("torch not installed") from exc
            return M.torch_modules(self.model)

        return self.get("torch", build)

    @property
    def onnx_path(self) -> Path:
        def build():
            try:
                import onnxruntime  # noqa: F401
            except ImportError as exc:
                raise Unavailable("onnxruntime not installed") from exc
            net, _ = self.torch
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                return M.export_onnx(self.model, net, self.workdir / f"model_{self.model.key}.onnx")

        return self.get("onnx", build)

    def tflite(self, kind: str, batch: int = 1, steps: int = 1) -> bytes:
        def build():
            try:
                import ai_edge_litert  # noqa: F401
                import tensorflow  # noqa: F401
            except ImportError as exc:
                raise Unavailable(f"{exc.name} not installed") from exc
            if kind == "step_rv":
                return M.tflite_step(self.model, batch, resource_variables=True)
            if kind == "step_io":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return M.tflite_step(self.model, batch, resource_variables=False)
            return M.tflite_sequence(self.model, steps, batch, flavor=kind)

        return self.get(("tflite", kind, batch, steps), build)

    def tflite_path(self, kind: str, batch: int = 1, steps: int = 1) -> Path:
        """:meth:`tflite` written to a file in the workdir, for a process that loads it by path."""
        def build():
            path = self.workdir / f"model_{self.model.key}_{kind}_batch{batch}_steps{steps}.tflite"
            path.write_bytes(self.tflite(kind, batch, steps))
            return path

        return self.get(("tflite file", kind, batch, steps), build)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _note(model, note, windows):
    """A row's note; for a model with convolutions, a note per model (the row's first model sets
    the plain note, this one is appended) that says how the peer carries the windows."""
    if not model.conv:
        return note
    return lambda: f"({model.key}) {windows}"


def _step_outputs(make_step, xs, convert=None):
    """Outputs (B, T, O) of a fresh ``step`` (from ``make_step()``) called on each xs[:, t]."""
    step = make_step()
    ys = []
    for t in range(xs.shape[1]):
        x = np.ascontiguousarray(xs[:, t])
        ys.append(np.array(step(convert(x) if convert else x), F32).reshape(xs.shape[0], -1))  # a copy: out= reuses y
    return np.stack(ys, axis=1)


def _block_outputs(make_run, xs, steps, stateful=True, convert=None):
    """Outputs of a fresh ``run`` over xs in blocks of ``steps`` (only the first if stateless)."""
    run = make_run()
    ys = []
    for start in range(0, xs.shape[1] if stateful else steps, steps):
        x = np.ascontiguousarray(xs[:, start : start + steps])
        ys.append(np.array(run(convert(x) if convert else x), F32).reshape(xs.shape[0], steps, -1))
    return np.concatenate(ys, axis=1)


def _outputs(mode, make, xs, steps, stateful=True, convert=None):
    if mode == "step":
        return _step_outputs(make, xs, convert)
    return _block_outputs(make, xs, steps, stateful, convert)


# ---------------------------------------------------------------------------------------------
# edgernn
# ---------------------------------------------------------------------------------------------
def edgernn_peers(bundle: Bundle, mode: str, batch: int, steps: int) -> list:
    model = bundle.edgernn
    out = model.output_features
    peers = []
    if mode == "block":
        def make():
            return model.stream(batch).run

        peers.append(Peer("edgernn s.run(x)", lambda xs: _block_outputs(make, xs, steps),
                          lambda x: Contender("edgernn s.run(x)", "run(x)", {"run": make(), "x": x}, units=steps)))
        return peers

    def with_out(kernel=None):
        s = model.stream(batch)
        if kernel is not None:
            s._use_kernel(kernel)
        y = np.zeros((batch, out), F32)
        return lambda x: s.step(x, out=y)

    peers.append(Peer("edgernn s.step(x, out=y)", lambda xs: _step_outputs(with_out, xs),
                      lambda x: _edgernn_step_contender(model, batch, x, "out")))
    peers.append(Peer("edgernn s.step(x)", lambda xs: _step_outputs(lambda: model.stream(batch).step, xs),
                      lambda x: _edgernn_step_contender(model, batch, x, "copy")))

    def kernel():
        import edgernn

        s = model.stream(batch)
        y = np.zeros((batch, out), F32)
        packed = s._packed

        def step(x):
            edgernn.kernels.chain_step(packed, x, y, s._memory)
            return y.copy()

        return step

    from edgernn.kernels import aot
    from edgernn.kernels.chain import jit_chain_step
    from edgernn.runtime import fused_step_max_batch

    if batch <= fused_step_max_batch(model.spec) and aot.loaded is not None:
        peers.append(Peer("edgernn s.step(x, out=y), Numba's JIT kernel",
                          lambda xs: _step_outputs(lambda: with_out(jit_chain_step()), xs),
                          lambda x: _edgernn_step_contender(model, batch, x, "jit"),
                          note="the stream's kernel without `edgernn warmup`'s ahead-of-time module (EDGERNN_AOT=0)",
                          informational=True))

    what = ("per-stream loop; s.step uses products across streams at this batch" if batch > fused_step_max_batch(model.spec)
            else "the stream's compiled kernel, " + ("ahead-of-time module" if aot.loaded else "Numba JIT")
            + ", no Python around it")
    peers.append(Peer("edgernn kernel chain_step(...) direct", lambda xs: _step_outputs(kernel, xs),
                      lambda x: _edgernn_step_contender(model, batch, x, "kernel"), note=what, informational=True))
    if batch == 1:
        peers.append(Peer("Numba dispatch floor: no-op jitted fn, same 4 args", lambda xs: None,
                          lambda x: _edgernn_step_contender(model, batch, x, "noop"),
                          note="what any jitted step pays before its first instruction", informational=True))
    return peers


_NOOP = None


def _noop():
    global _NOOP
    if _NOOP is None:
        from numba import njit

        from edgernn.kernels.chain import CHAIN_STEP_SIGNATURE

        @njit(CHAIN_STEP_SIGNATURE, nogil=True, cache=False)
        def noop(model, x, y, memory):
            return 0

        _NOOP = noop
    return _NOOP


def _edgernn_step_contender(model, batch, x, how):
    import edgernn

    s = model.stream(batch)
    y = np.zeros((batch, model.output_features), F32)
    if how == "out":
        return Contender("edgernn s.step(x, out=y)", "step(x, out=y)", {"step": s.step, "x": x, "y": y})
    if how == "jit":
        from edgernn.kernels.chain import jit_chain_step

        s._use_kernel(jit_chain_step())
        return Contender("edgernn s.step jit", "step(x, out=y)", {"step": s.step, "x": x, "y": y})
    if how == "copy":
        return Contender("edgernn s.step(x)", "step(x)", {"step": s.step, "x": x})
    packed = s._packed
    k = _noop() if how == "noop" else edgernn.kernels.chain_step
    return Contender(how, "k(p, x, y, m)", {"k": k, "p": packed, "x": x, "y": y, "m": s._memory})


# ---------------------------------------------------------------------------------------------
# NumPy
# ---------------------------------------------------------------------------------------------
def numpy_peers(bundle: Bundle, mode: str, batch: int, steps: int) -> list:
    spec = bundle.edgernn.spec

    def make():
        from edgernn.runtime import NotStreamable

        try:
            chain = NumpyChain(spec, batch)
        except NotStreamable as exc:  # e.g. a Conv1D: the NumPy contrast covers recurrent chains only
            raise Unavailable(str(exc)) from exc
        return chain.step if mode == "step" else chain.run

    stmt = "f(x)"
    return [Peer("NumPy (x@W + h@U, float32)", lambda xs: _outputs(mode, make, xs, steps),
                 lambda x: Contender("numpy", stmt, {"f": make(), "x": x}, units=steps if mode == "block" else 1))]


# ---------------------------------------------------------------------------------------------
# TFLite / LiteRT
# ---------------------------------------------------------------------------------------------
def litert_interpreter(content: bytes):
    """A LiteRT interpreter of ``content`` on one thread, its tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


# One step of a .tflite model whose state lives in resource variables; the same statement is timed
# in tflite-runtime's own environment (tflite_runtime_peer.py).
RESOURCE_VARIABLE_STEP = "set_tensor(ii, x); invoke(); get_tensor(oi)"


def tflite_peers(bundle: Bundle, mode: str, batch: int, steps: int) -> list:
    peers = []
    if mode == "step":
        def resource_variables():
            content = bundle.tflite("step_rv", batch)
            interpreter = litert_interpreter(content)
            ii = interpreter.get_input_details()[0]["index"]
            oi = interpreter.get_output_details()[0]["index"]
            return interpreter, ii, oi

        def make_rv():
            interpreter, ii, oi = resource_variables()

            def step(x):
                interpreter.set_tensor(ii, x)
                interpreter.invoke()
                return interpreter.get_tensor(oi)

            return step

        def contender_rv(x):
            interpreter, ii, oi = resource_variables()
            return Contender("tflite-rv", RESOURCE_VARIABLE_STEP,
                             {"set_tensor": interpreter.set_tensor, "invoke": interpreter.invoke,
                              "get_tensor": interpreter.get_tensor, "ii": ii, "oi": oi, "x": x})

        peers.append(Peer("TFLite/LiteRT, state in resource variables", lambda xs: _step_outputs(make_rv, xs),
                          contender_rv, note=_note(bundle.model, "tf.Module step, one cell unrolled; XNNPACK delegate",
                                                    "each Conv1D's last k - 1 inputs in a resource variable, one "
                                                    "FULLY_CONNECTED over window + x per step")))

        def make_io():
            interpreter = litert_interpreter(bundle.tflite("step_io", batch))
            # the converter orders inputs and outputs its own way: x is the input named x, the states
            # states_0, states_1, ...; the outputs are named by their position in the return value
            inputs = sorted(interpreter.get_input_details(), key=lambda d: (_bare(d["name"]) != "x", _natural(d["name"])))
            outputs = sorted(interpreter.get_output_details(), key=lambda d: _natural(d["name"]))
            x_index = inputs[0]["index"]
            state_in = [d["index"] for d in inputs[1:]]
            state_out = [d["index"] for d in outputs[1:]]
            y_index = outputs[0]["index"]
            states = [np.zeros(d["shape"], F32) for d in inputs[1:]]
            set_tensor, get_tensor, invoke = interpreter.set_tensor, interpreter.get_tensor, interpreter.invoke

            def step(x):
                set_tensor(x_index, x)
                for index, value in zip(state_in, states):
                    set_tensor(index, value)
                invoke()
                for k, index in enumerate(state_out):
                    states[k] = get_tensor(index)
                return get_tensor(y_index)

            return step

        peers.append(Peer("TFLite/LiteRT, state as inputs/outputs", lambda xs: _step_outputs(make_io, xs),
                          lambda x: Contender("tflite-io", "f(x)", {"f": make_io(), "x": x}),
                          note=_note(bundle.model, "the state copied in and out by the caller",
                                     "the Conv1D windows copied in and out too")))
        return peers

    for flavor, label in (("tf_keras", "TFLite/LiteRT sequence model (stateless), from tf-keras"),
                          ("keras3", "TFLite/LiteRT sequence model (stateless), from Keras 3")):
        def make(flavor=flavor):
            interpreter = litert_interpreter(bundle.tflite(flavor, batch, steps))
            ii = interpreter.get_input_details()[0]["index"]
            oi = interpreter.get_output_details()[0]["index"]

            def run(x):
                interpreter.set_tensor(ii, x)
                interpreter.invoke()
                return interpreter.get_tensor(oi)

            return run

        def note(flavor=flavor):
            ops = M.tflite_ops(bundle.tflite(flavor, batch, steps))
            return f"ops ({bundle.model.key}): " + ", ".join(o for o in ops if o != "DELEGATE")

        peers.append(Peer(label, lambda xs, make=make: _block_outputs(make, xs, steps, stateful=False),
                          lambda x, make=make: Contender(flavor, "f(x)", {"f": make(), "x": x}, units=steps),
                          note=note, stateful=False))
    return peers


TFLITE_RUNTIME = "tflite-runtime 2.14 (own venv, numpy<2), state in resource variables"


def tflite_runtime_peers(bundle: Bundle, mode: str, batch: int, steps: int) -> list:
    """tflite-runtime 2.14 on the same one-step .tflite as the LiteRT resource-variables peer, in
    its own venv (it needs numpy<2): checked and timed in child processes."""
    from . import tflite_runtime_peer

    if mode != "step":
        return []

    def path():  # the venv and the file are made on first use: a failure shows in this row, as unavailable
        tflite_runtime_peer.venv_python()
        return bundle.tflite_path("step_rv", batch)

    def externally_timed(x):
        model_path = path()
        return ExternallyTimed(lambda *, rounds, min_time: tflite_runtime_peer.time_step(model_path, x, rounds=rounds,
                                                                                         min_time=min_time))

    return [Peer(TFLITE_RUNTIME, lambda xs: tflite_runtime_peer.step_outputs(path(), xs), externally_timed,
                 note="the LiteRT row's .tflite, run by tflite_runtime.interpreter (1 thread) in its own venv; timed "
                      "the same way but in a child process, after the others: its rounds are not interleaved with theirs")]


def _bare(name: str) -> str:
    """A TFLite tensor name without the converter's decorations: "serving_default_x:0" -> "x"."""
    return name.removeprefix("serving_default_").split(":")[0]


def _natural(name: str):
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# ---------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------
def onnx_peers(bundle: Bundle, mode: str, batch: int, steps: int) -> list:
    names = M.state_names(bundle.model)

    def make():
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(bundle.onnx_path), options, providers=["CPUExecutionProvider"])
        run = session.run
        feeds = {name: np.zeros(shape, F32) for name, shape in zip(names, M.state_shapes(bundle.model, batch, "torch"))}
        pairs = list(enumerate(names, start=1))

        def call(x):
            feeds["x"] = x
            outs = run(None, feeds)
            for k, name in pairs:
                feeds[name] = outs[k]
            return outs[0]

        return call

    def convert(x):  # a step is a sequence of length 1
        return x[:, None, :] if x.ndim == 2 else x

    def contender(x):
        call = make()
        return Contender("onnx", "f(x)", {"f": call, "x": convert(x)}, units=steps if mode == "block" else 1)

    return [Peer("ONNX Runtime (exported nn.LSTM/GRU, state as inputs/outputs)",
                 lambda xs: _outputs(mode, make, xs, steps, convert=convert), contender,
                 note=_note(bundle.model, "sess.run with h, c fed back",
                            "each Conv's last k - 1 inputs fed back as inputs/outputs like h, c (they are its causal padding)"))]


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------
def torch_peers(bundle: Bundle, mode: str, batch: int, steps: int) -> list:
    import torch

    def make_net():
        net, _ = bundle.torch
        state = [torch.zeros(shape) for shape in M.state_shapes(bundle.model, batch, "torch")]

        def call(x):
            y, *new = net(x, *state)
            state[:] = new
            return y

        return call

    def make_cells():
        _, cells = bundle.torch
        state = [torch.zeros(shape) for shape in M.state_shapes(bundle.model, batch, "cells")]

        def call(x):
            y, *new = cells(x, *state)
            state[:] = new
            return y

        return call

    def to_sequence(x):
        return torch.from_numpy(np.ascontiguousarray(x[:, None, :] if x.ndim == 2 else x))

    def to_tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x))

    units = steps if mode == "block" else 1
    peers = [Peer("PyTorch nn.LSTM / nn.GRU, state carried", lambda xs: _outputs(mode, make_net, xs, steps, convert=to_sequence),
                  lambda x: Contender("torch", "f(x)", {"f": make_net(), "x": to_sequence(x)}, units=units),
                  note=_note(bundle.model, "torch.no_grad, 1 thread, tensors in and out",
                             "nn.Conv1d, (N, C, T); each one's last k - 1 inputs carried in and out like h, c, "
                             "in place of F.pad(x, (k - 1, 0))"))]
    if mode == "step":
        peers.append(Peer("PyTorch nn.LSTMCell / nn.GRUCell, state carried", lambda xs: _step_outputs(make_cells, xs, to_tensor),
                          lambda x: Contender("torch-cell", "f(x)", {"f": make_cells(), "x": to_tensor(x)})))
    return peers


# ---------------------------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------------------------
def keras_peers(bundle: Bundle, mode: str, batch: int, steps: int) -> list:
    if mode != "step" or batch != 1:
        return []
    conv = bool(bundle.model.conv)

    def net():
        return M.keras_model(bundle.model, batch=1, steps=1, stateful=True)

    def make(how):
        if conv:
            raise Unavailable("no streaming conv: a stateful Keras model keeps its RNN state between calls, but "
                              "Conv1D keeps no window (each call would start from zero padding)")
        model = net()
        if how == "predict_on_batch":
            return model.predict_on_batch
        return lambda x: model(x, training=False)

    def seq(x):
        return x[:, None, :]

    peers = []
    for how, stmt in (("predict_on_batch", "f(x)"), ("model(x)", "f(x)")):
        peers.append(Peer(f"Keras 3 stateful, {how}", lambda xs, how=how: _step_outputs(lambda: make(how), xs, seq),
                          lambda x, how=how: Contender(how, stmt, {"f": make(how), "x": seq(x)}),
                          note="TensorFlow backend"))
    return peers


# ---------------------------------------------------------------------------------------------
# edgernn's int8 simulation (the firmware's arithmetic, bit-exact, in Numba)
# ---------------------------------------------------------------------------------------------
INT8_TOLERANCE = 1.0  # flags a broken simulation, not quantization error (printed in the notes)


def int8_peers(bundle: Bundle, mode: str, batch: int, steps: int) -> list:
    import edgernn

    model = bundle.edgernn
    if not hasattr(model, "quantize"):
        raise Unavailable("this edgernn has no Model.quantize")

    def quantized():
        def build():
            calibration = np.random.default_rng(7).normal(size=(16, 100, bundle.model.features)).astype(F32)
            try:
                return model.quantize(calibration, "int8")
            except edgernn.UnsupportedModel as exc:  # its first reason is enough for a footnote, e.g. a Conv1D
                return Unavailable(str(exc).split("; ")[0])  # kept, and raised on every use, by bundle.get

        return bundle.get("int8", build)

    def make():
        s = quantized().stream(batch)
        return s.step if mode == "step" else s.run

    name = f"edgernn int8 simulation (Model.quantize, s.{'step' if mode == 'step' else 'run'})"
    return [Peer(name, lambda xs: _outputs(mode, make, xs, steps),
                 lambda x: Contender("int8", "f(x)", {"f": make(), "x": x}, units=steps if mode == "block" else 1),
                 note="the C firmware's int8 arithmetic simulated bit-exactly; checked against float edgernn with "
                      f"atol {INT8_TOLERANCE} (quantization error, largest below)",
                 informational=True, tolerance=INT8_TOLERANCE)]


FACTORIES = (edgernn_peers, tflite_peers, tflite_runtime_peers, onnx_peers, torch_peers, numpy_peers, keras_peers, int8_peers)
