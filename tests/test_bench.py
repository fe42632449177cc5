"""The benchmark machinery runs, and its contenders agree with edgernn -- no timing is asserted
(timings are for tables, not for pass/fail: machines are noisy)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgernn
from edgernn import bench, ir
from edgernn.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _w(rng, *shape):
    return ir.as_weight(rng.normal(scale=0.4, size=shape))


def _chain(*ops, features):
    names = ["x"] + [f"t{k}" for k in range(len(ops))]
    nodes = tuple(ir.Node(op, (names[k],), (names[k + 1],)) for k, op in enumerate(ops))
    return edgernn.Model(ir.ModelSpec((ir.Input("x", features),), nodes, (names[-1],)))


def _models():
    rng = np.random.default_rng(5)
    w = lambda *shape: _w(rng, *shape)  # noqa: E731
    yield "lstm+dense", _chain(ir.Recurrent("l", "lstm", 4, 3, w(3, 16), w(4, 16), w(16)), ir.Dense("d", w(4, 2), w(2)),
                               features=3)
    yield "gru reset_after + gru reset_before + softmax", _chain(
        ir.Recurrent("g1", "gru", 5, 3, w(3, 15), w(5, 15), w(15), recurrent_bias=w(15), return_sequences=True),
        ir.Recurrent("g2", "gru", 3, 5, w(5, 9), w(3, 9), w(9), reset_after=False),
        ir.Dense("d", w(3, 4), w(4), "softmax"), features=3)
    nodes = (ir.Node(ir.Masking("m", 0.0), ("x",), ("masked", "mask")),
             ir.Node(ir.Recurrent("r", "simple", 4, 2, w(2, 4), w(4, 4), w(4), activation="relu"), ("masked",), ("h",),
                     mask="mask"),
             ir.Node(ir.Activation("a", "sigmoid"), ("h",), ("y",)))
    yield "masking + simple rnn + activation", edgernn.Model(ir.ModelSpec((ir.Input("x", 2),), nodes, ("y",)))
    yield "lstm peephole, projection, clip", _chain(
        ir.Recurrent("p", "lstm", 4, 3, w(3, 16), w(2, 16), w(16), peephole=w(3, 4), projection=w(4, 2), cell_clip=1.5,
                     recurrent_activation="hard_sigmoid"), features=3)


@pytest.mark.parametrize("name,model", list(_models()), ids=[n for n, _ in _models()])
def test_numpy_baseline_agrees_with_streams(name, model):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 12, model.input_features)).astype(np.float32)
    if "masking" in name:
        x[0, 3:5] = 0.0  # masked steps
    want = model.stream(3).run(x)
    chain = bench.NumpyChain(model.spec, 3)
    stepped = np.stack([chain.step(x[:, t]) for t in range(6)], axis=1)
    blocked = chain.run(x[:, 6:])  # state carried from the steps
    got = np.concatenate([stepped, blocked], axis=1)
    assert got.dtype == np.float32
    assert bench.max_difference(got, want) <= bench.AGREEMENT_ATOL


def test_bench_model_runs_and_reports(tmp_path):
    model = next(_models())[1]
    results = bench.bench_model(model, quick=True, steps=20, streams=5, rounds=1)
    assert [r.title for r in results] == ["one step, batch 1", "block of 20 steps, 1 stream", "5 streams, one step"]
    for section in results:
        assert set(section.samples) == {"edgernn", "NumPy"}, section.skipped  # NumPy agreed, so it was timed
        assert all(len(v) == 1 and v[0] > 0 for v in section.samples.values())
    text = bench.format_results("m.ernn", results, bench.system_info())
    assert "| edgernn |" in text and "NumPy" in text and "cpu" in text and "| vector extensions |" in text


def test_vector_extensions_names_what_proc_cpuinfo_lists(monkeypatch, tmp_path):
    """The table header's vector extensions come from the flags line (x86) or Features line (Arm)."""
    import builtins

    real_open = builtins.open
    for lines, want in ((["flags\t\t: fpu sse avx avx2 fma avx512f avx512bw\n"], "avx2, avx512f"),
                        (["flags\t\t: fpu sse sse2\n"], "none found"),
                        (["Features\t: fp asimd evtstrm crc32\n"], "neon")):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text("processor\t: 0\n" + "".join(lines))
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(
            cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
        monkeypatch.setattr(bench.platform, "machine", lambda: "x86_64")
        assert bench.vector_extensions().split(" (LLVM")[0] == want


def test_measure_interleaves_and_counts_units():
    calls = []
    contenders = [bench.Contender(name, "f()", {"f": lambda name=name: calls.append(name)}, units=units)
                  for name, units in (("a", 1), ("b", 10))]
    samples = bench.measure(contenders, rounds=3, min_time=0.001)
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3}
    assert set(calls) == {"a", "b"}


def test_peer_files_are_checked_before_timing(tmp_path):
    """An ONNX file of the same model is timed; one of a different model is reported, not timed."""
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    del ort
    model = next(_models())[1]
    lstm, dense = (node.op for node in model.spec.nodes)

    class Net(torch.nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
            self.head = torch.nn.Linear(4, 2)
            with torch.no_grad():
                self.lstm.weight_ih_l0.copy_(torch.from_numpy(lstm.kernel.T.copy()) * scale)
                self.lstm.weight_hh_l0.copy_(torch.from_numpy(lstm.recurrent_kernel.T.copy()))
                self.lstm.bias_ih_l0.copy_(torch.from_numpy(lstm.bias))
                self.lstm.bias_hh_l0.zero_()
                self.head.weight.copy_(torch.from_numpy(dense.kernel.T.copy()))
                self.head.bias.copy_(torch.from_numpy(dense.bias))

        def forward(self, x, h, c):
            y, (h, c) = self.lstm(x, (h, c))
            return self.head(y), h, c

    paths = {}
    for label, scale in (("same", 1.0), ("other", 2.0)):
        paths[label] = tmp_path / f"{label}.onnx"
        args = (torch.zeros(2, 3, 3), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
        axes = {"x": {0: "b", 1: "t"}, "h": {1: "b"}, "c": {1: "b"}, "y": {0: "b", 1: "t"}}
        torch.onnx.export(Net(scale), args, str(paths[label]), input_names=["x", "h", "c"], output_names=["y", "h2", "c2"],
                          dynamic_axes=axes, dynamo=False)
    same = bench.bench_model(model, onnx=str(paths["same"]), quick=True, steps=10, streams=3, rounds=1)
    assert all(any(name.startswith("ONNX Runtime") for name in s.samples) for s in same)
    assert all("state carried" in note for s in same for name, note in s.notes.items() if name.startswith("ONNX"))
    other = bench.bench_model(model, onnx=str(paths["other"]), quick=True, steps=10, streams=3, rounds=1)
    assert all(not any(name.startswith("ONNX") for name in s.samples) for s in other)
    assert all("differ" in why for s in other for why in s.skipped.values())


def test_cli_bench(tmp_path):
    path = tmp_path / "m.ernn"
    next(_models())[1].save(path)
    result = CliRunner().invoke(main, ["bench", str(path), "--quick", "--steps", "10", "--streams", "3"])
    assert result.exit_code == 0, result.output
    assert "## edgernn bench m.ernn" in result.output and "block of 10 steps" in result.output


def _quick_suite(tmp_path, models, sections):
    """The markdown of ``tools/bench/run.py --quick`` on ``models`` and ``sections``: one round of
    1 ms, blocks of 30 steps, 6 streams."""
    out = tmp_path / "bench.md"
    # The suite builds the ahead-of-time step first, as `edgernn warmup` would: into this test's own directory.
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               EDGERNN_AOT_DIR=str(tmp_path / "aot"))
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench" / "run.py"), "--quick", "--models", models,
                           "--sections", sections, "--rounds", "1", "--min-time", "0.001", "--steps", "30",
                           "--streams", "6", "--output", str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out.read_text()


def test_suite_runs_quick(tmp_path):
    """``tools/bench/run.py --quick`` end to end on one model: tables, and every contender that
    is installed agrees with edgernn (a disagreement is printed as such in a cell)."""
    pytest.importorskip("tensorflow")
    text = _quick_suite(tmp_path, "b", "step,block,streams")
    for title in ("1. One step", "2. A block of 30 steps", "3. 6 independent streams"):
        assert title in text
    assert "disagrees" not in text, text
    assert "| edgernn s.step(x, out=y) |" in text and "TFLite/LiteRT, state in resource variables" in text
    assert "| *edgernn s.step(x, out=y), Numba's JIT kernel* |" in text  # the stream's kernel was the module's
    # tflite-runtime, in its own venv, is a peer (not in italics) with a time in both one-step tables
    runtime_rows = [line for line in text.splitlines() if line.startswith("| tflite-runtime 2.14 ")]
    assert len(runtime_rows) == 2 and all(re.search(r"\| [\d.,]+ \([\d.]+x\) \|$", row) for row in runtime_rows), text


def test_suite_runs_the_cnn_lstm_quick(tmp_path):
    """Model (e), Conv1D x 2 (causal) + LSTM + Dense, through the suite: every peer that can step
    it carries the convolutions' windows itself and agrees with edgernn (so it is timed: a time
    and a ratio), and the ones that cannot say why instead of a time."""
    pytest.importorskip("tensorflow")
    text = _quick_suite(tmp_path, "e", "step,block,streams,gil")
    assert "disagrees" not in text and "failed" not in text, text
    label = "(e) 2 x Conv1D(32, 5) causal + LSTM(64) on 6 + Dense(6)"
    tables = {title: body for title, body in re.findall(r"^### (\d\. .+?)\n(.+?)(?=^### |\Z)", text, re.MULTILINE | re.DOTALL)}
    step, block, streams, gil = (next(body for title, body in tables.items() if title.startswith(f"{n}.")) for n in "1235")
    for table in (step, block, streams):
        assert label in next(line for line in table.splitlines() if line.startswith("| "))  # the column header
    ratio = r" \| [\d.,]+ \([\d.]+x\) \|$"

    def row(table, name):
        (line,) = [line for line in table.splitlines() if line.startswith(f"| {name} |")]
        return line

    for table, names in ((step, ["TFLite/LiteRT, state in resource variables", "TFLite/LiteRT, state as inputs/outputs",
                                 "ONNX Runtime (exported nn.LSTM/GRU, state as inputs/outputs)",
                                 "PyTorch nn.LSTM / nn.GRU, state carried", "PyTorch nn.LSTMCell / nn.GRUCell, state carried"]),
                         (streams, ["TFLite/LiteRT, state in resource variables", "ONNX Runtime (exported nn.LSTM/GRU, state as inputs/outputs)",
                                    "PyTorch nn.LSTM / nn.GRU, state carried"]),
                         (block, ["TFLite/LiteRT sequence model (stateless), from tf-keras",
                                  "TFLite/LiteRT sequence model (stateless), from Keras 3",
                                  "ONNX Runtime (exported nn.LSTM/GRU, state as inputs/outputs)",
                                  "PyTorch nn.LSTM / nn.GRU, state carried"])):
        for name in names:
            assert re.search(ratio, row(table, name)), row(table, name)
        assert re.search(r" \| [\d.,]+ \|$", row(table, "edgernn s.step(x, out=y)" if table is not block else "edgernn s.run(x)"))
    # the windows are carried as state by the step peers (said in the notes), not recomputed
    assert "(e) each Conv1D's last k - 1 inputs in a resource variable" in step
    assert "(e) nn.Conv1d, (N, C, T); each one's last k - 1 inputs carried in and out" in step
    # the ones that cannot: a time-less cell pointing at a footnote that says why
    for name in ("Keras 3 stateful, predict_on_batch", "NumPy (x@W + h@U, float32)"):
        footnote = re.search(r"\| n/a \[(\d)\] \|$", row(step, name)).group(1)
        assert re.search(rf"^- \[{footnote}\] unavailable: .*(no streaming conv|no Conv1D)", step, re.MULTILINE), step
    assert re.search(r"^- \[\d\] unavailable: .*Conv1D", block, re.MULTILINE), block  # int8 and NumPy
    assert "| NumPy step (for contrast) | n/a: the NumPy baseline has no Conv1D" in gil
    assert re.search(r"\| edgernn s.step\(x, out=y\) \| [\d.]+x \(", gil), gil


def test_tflite_runtime_peer_agrees_and_is_timed(tmp_path, monkeypatch):
    """tflite-runtime 2.14 in its own venv (numpy<2; made once, cached under ~/.cache): the child
    process steps a tiny one-step .tflite in agreement with edgernn, then returns one time per round."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")  # the bundle's .tflite conversion needs it
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    from bench import models, peers, tflite_runtime_peer

    try:
        tflite_runtime_peer.venv_python()
    except peers.Unavailable as exc:  # with EDGERNN_NO_SKIPS=1 (CI) a skip fails the run
        pytest.skip(f"tflite-runtime venv: {exc}")
    bundle = peers.Bundle(models.make_weights(models.ModelDef("t", "gru", 3, (4,), 2)), tmp_path)
    (peer,) = peers.tflite_runtime_peers(bundle, "step", 2, 1)
    assert peer.name == peers.TFLITE_RUNTIME and not peer.informational
    xs = np.random.default_rng(3).normal(size=(2, 8, 3)).astype(np.float32)
    got = peer.outputs(xs)
    assert got.shape == (2, 8, 2)
    assert bench.max_difference(got, bundle.edgernn.stream(2).run(xs)) <= bench.AGREEMENT_ATOL
    timed = peer.contender(xs[:, 0])
    assert isinstance(timed, peers.ExternallyTimed)
    seconds = timed.time(rounds=2, min_time=0.001)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)


def test_many_streams_profile_runs(tmp_path):
    """tools/bench/profile_streams.py takes a many-streams step of model (e) apart next to
    TFLite's ops -- each Conv1D, the LSTM, the head: every part gets a time, the parts it
    subtracts are consistent with the wholes they come from, and the machine is described."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench" / "profile_streams.py"), "--models", "e",
                           "--streams", "120", "--rounds", "1", "--min-time", "0.001"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    parts, system = done.stdout.split("\n|  |  |\n")
    assert "| vector extensions |" in system and "| load average |" in system
    times = dict(re.findall(r"^\| (.+?) \| ([\d,.-]+) \|", parts, re.MULTILINE))
    conv = ["edgernn Conv1D {}: whole step (conv_batch: count, product from the ring, relu, push)",
            "edgernn Conv1D {}: count, push, call (difference)",
            "edgernn Conv1D {}: product from the ring alone (relu as it stores)",
            "for comparison, Conv1D {}: gathering the windows into a copy (conv_gather)",
            "for comparison, Conv1D {}: its activation as a pass of its own (activation_forward)"]
    expected = (["edgernn s.step(x, out=y), whole"] + [row.format(n) for n in (1, 2) for row in conv] +
                ["edgernn layer 1: packed product(s) across streams",
                 "for comparison, layer 1: h U by OpenBLAS (np.matmul)",
                 "edgernn layer 1: whole step (products + jitted pass)", "edgernn layer 1: jitted pass (difference)",
                 "edgernn layer 1: of which the flat tanh over all gates alone (tanh_in_place)",
                 "edgernn head (Dense)", "edgernn rest: Python side, copies, caches shared in one step (difference)",
                 "TFLite+XNNPACK one-step model, whole (set input, invoke, get output)",
                 "TFLite Conv1D 1: window product alone (FULLY_CONNECTED, 30 -> 32)",
                 "TFLite Conv1D 1: relu over (120, 32) alone",
                 "TFLite Conv1D 2: window product alone (FULLY_CONNECTED, 160 -> 32)",
                 "TFLite Conv1D 2: relu over (120, 32) alone",
                 "TFLite layer 1: h U alone (FULLY_CONNECTED)", "TFLite layer 1: sigmoid over (120, 256) alone",
                 "TFLite layer 1: tanh over (120, 64) alone"])
    assert list(times) == expected, done.stdout
    value = {name: float(text.replace(",", "")) for name, text in times.items()}
    assert all(value[name] > 0 for name in expected if "difference" not in name)
    whole_layer = value["edgernn layer 1: whole step (products + jitted pass)"]
    assert value["edgernn layer 1: jitted pass (difference)"] == pytest.approx(
        whole_layer - value["edgernn layer 1: packed product(s) across streams"], abs=0.11)
    for n in (1, 2):
        assert value[conv[1].format(n)] == pytest.approx(value[conv[0].format(n)] - value[conv[2].format(n)], abs=0.11)
    stages = [conv[0].format(1), conv[0].format(2), "edgernn layer 1: whole step (products + jitted pass)",
              "edgernn head (Dense)"]
    assert value["edgernn rest: Python side, copies, caches shared in one step (difference)"] == pytest.approx(
        value["edgernn s.step(x, out=y), whole"] - sum(value[name] for name in stages), abs=0.3)


def test_many_streams_profile_refuses_a_fused_batch():
    """Below the fused/across-streams switch there are no products to take apart: said, not a traceback."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench" / "profile_streams.py"), "--models", "b",
                           "--streams", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "step through the fused kernel" in done.stderr, done.stderr[-2000:]
