"""The TFLite importer against the live TFLite interpreter (ai-edge-litert).

Keras models with random weights (biases included: the converter folds zero biases away) are
converted with TFLiteConverter inside the tests, in two subprocesses run side by side: one with
Keras 3, one with tf-keras (``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is imported).
Between them they produce the three forms found in the wild: the fused UNIDIRECTIONAL_SEQUENCE_LSTM
(tf-keras LSTM), WHILE loops (Keras 3 everything, tf-keras GRU/SimpleRNN) and unrolled graphs
(``unroll=True``). Each file is converted with :func:`edgernn.convert` and ``predict`` and streams
are compared with the interpreter's output at atol 1e-5 + rtol 1e-4.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

import edgernn  # noqa: E402
from edgernn import ir  # noqa: E402
from edgernn.errors import InvalidModelFile, UnsupportedModel  # noqa: E402
from edgernn.importers import tflite  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

ATOL, RTOL = 1e-5, 1e-4
T, F = 8, 3

# name -> (layers, options). Layers are [class name, kwargs]; "rs" abbreviates return_sequences.
# Few files, each covering several things: every TFLiteConverter call costs seconds.
KERAS3 = {
    "lstm_last": ([["LSTM", {"units": 8}], ["Dense", {"units": 3, "activation": "softmax"}]], {"weights": True}),
    "gru_seq_b2": ([["GRU", {"units": 5, "rs": True}], ["Dense", {"units": 4, "activation": "relu"}],
                    ["Dense", {"units": 2, "activation": "tanh"}]], {"batch": 2}),
    "gru_ra0_float16": ([["GRU", {"units": 16, "reset_after": False}], ["Dense", {"units": 1}]], {"quant": "float16"}),
    "stack": ([["TimeDistributed", {"layer": ["Dense", {"units": 6, "activation": "tanh"}]}],
               ["LSTM", {"units": 6, "rs": True}], ["GRU", {"units": 5, "rs": True, "recurrent_activation": "hard_sigmoid"}],
               ["SimpleRNN", {"units": 4, "activation": "relu"}], ["Dense", {"units": 3, "activation": "softmax"}]], {}),
    "unroll_lstm": ([["LSTM", {"units": 5, "rs": True, "unroll": True}], ["Dense", {"units": 2}]], {}),
    "unroll_gru_simple": ([["GRU", {"units": 5, "rs": True, "unroll": True}], ["SimpleRNN", {"units": 4, "unroll": True}]], {}),
    "simple_relu_dyn_t": ([["SimpleRNN", {"units": 6, "activation": "relu", "rs": True}],
                           ["Dense", {"units": 3, "activation": "sigmoid"}]], {"steps": None}),
    "dynamic_range": ([["LSTM", {"units": 32, "rs": True}], ["Dense", {"units": 3}]], {"quant": "dynamic"}),
    "refused": ([["Masking", {"mask_value": 0.0}], ["Bidirectional", {"layer": ["LSTM", {"units": 4, "rs": True}]}],
                 ["GRU", {"units": 4, "go_backwards": True}]], {}),
}
KERAS2 = {
    "k2_lstm_last": ([["LSTM", {"units": 8}], ["Dense", {"units": 3, "activation": "softmax"}]], {"weights": True}),
    "k2_stack_lstm_dyn_t_b2": ([["LSTM", {"units": 6, "rs": True}], ["LSTM", {"units": 5, "rs": True}],
                                ["Dense", {"units": 2}]], {"batch": 2, "steps": None}),
    "k2_gru_ra0_simple": ([["GRU", {"units": 5, "rs": True, "reset_after": False}], ["SimpleRNN", {"units": 4, "rs": True}]], {}),
    "k2_unroll_lstm": ([["LSTM", {"units": 5, "unroll": True}]], {}),
    "k2_lstm_then_gru": ([["LSTM", {"units": 4, "rs": True}], ["GRU", {"units": 4}]], {}),
}

# What each convertible file holds (the form TensorFlow 2.21 writes) and whether it is a sequence model.
FUSED, WHILE, UNROLLED = ["fused UNIDIRECTIONAL_SEQUENCE_LSTM/RNN"], ["WHILE loop"], ["unrolled"]
EXPECTED = {
    "lstm_last": (WHILE, False), "gru_seq_b2": (WHILE, True), "gru_ra0_float16": (WHILE, False),
    "stack": (WHILE, False), "unroll_lstm": (UNROLLED, True), "unroll_gru_simple": (UNROLLED, False),
    "simple_relu_dyn_t": (WHILE, True), "dynamic_range": (WHILE, True),
    "k2_lstm_last": (FUSED, False), "k2_stack_lstm_dyn_t_b2": (FUSED, True), "k2_gru_ra0_simple": (WHILE, True),
    "k2_unroll_lstm": (UNROLLED, False),
}
REFUSED = {
    "refused": ["SELECT_V2", "REVERSE_V2", "masking", "go_backwards and Bidirectional"],
    "k2_lstm_then_gru": ["state variable of the UNIDIRECTIONAL_SEQUENCE_LSTM", "final state instead of zeros"],
}

# The start of every generator script: its arguments (models as JSON, the output directory, "1" for
# tf-keras), then TensorFlow and Keras 3 or tf-keras (TF_USE_LEGACY_KERAS set before the import).
GENERATOR_PREAMBLE = textwrap.dedent(
    """
    import json, os, sys
    models, out, legacy = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    if legacy:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    if legacy:
        keras = tf.keras
    else:
        import keras
    """
)

GENERATOR = GENERATOR_PREAMBLE + textwrap.dedent(
    """
    def make(spec):
        cls, kw = spec
        kw = dict(kw)
        if "rs" in kw:
            kw["return_sequences"] = kw.pop("rs")
        if "layer" in kw:
            kw["layer"] = make(kw["layer"])
        return getattr(keras.layers, cls)(**kw)

    for seed, (name, (layers, opts)) in enumerate(sorted(models.items())):
        steps = opts.get("steps", %(T)d)
        inp = keras.Input((steps, %(F)d), batch_size=opts.get("batch", 1))
        x = inp
        for spec in layers:
            x = make(spec)(x)
        model = keras.Model(inp, x)
        rng = np.random.default_rng(seed)
        # Fan-in scaled random weights and non-zero biases (zero biases are folded away).
        model.set_weights([(rng.normal(0, 0.8 / np.sqrt(w.shape[-2]), w.shape) if w.ndim >= 2
                            else rng.normal(0, 0.3, w.shape)).astype("float32") for w in model.get_weights()])
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if opts.get("quant") == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif opts.get("quant") == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        with open(os.path.join(out, name + ".tflite"), "wb") as f:
            f.write(converter.convert())
        if opts.get("weights"):
            np.savez(os.path.join(out, name + ".npz"), *model.layers[1].get_weights())
    """
) % {"T": T, "F": F}


def cached_tflite_files(request, prefix: str, generator: str, jobs: list) -> Path:
    """The .tflite files ``generator`` writes, run once per ``(models, legacy)`` job in subprocesses
    side by side (``legacy`` "1": tf-keras), cached in pytest's cache directory under a hash of the
    generator, the models and the TensorFlow version; the directory."""
    from importlib import metadata

    key = hashlib.sha256(json.dumps([generator, jobs, metadata.version("tensorflow")]).encode()).hexdigest()
    out = request.config.cache.mkdir(f"{prefix}-{key[:16]}")
    if (out / "done").exists():
        return out
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_USE_LEGACY_KERAS", None)
    procs = [subprocess.Popen([sys.executable, "-c", generator, json.dumps(models), str(out), legacy], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for models, legacy in jobs]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err.decode()[-3000:]
    (out / "done").write_text(key)
    return out


@pytest.fixture(scope="module")
def files(request):
    """Every model of KERAS3 and KERAS2 as .tflite (two subprocesses side by side), cached."""
    return cached_tflite_files(request, "edgernn-tflite", GENERATOR, [(KERAS3, "0"), (KERAS2, "1")])


def data(batch=3, steps=T, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, steps, F)).astype(np.float32)


def tolerance(name):
    # Dynamic-range quantization: the interpreter also quantizes activations to int8 on the fly
    # (asymmetric_quantize_inputs), which edgernn (float activations, dequantized weights) does not.
    return (3e-2, 3e-2) if name == "dynamic_range" else (ATOL, RTOL)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_predict_matches_interpreter(files, name):
    path = files / f"{name}.tflite"
    model = edgernn.convert(path)
    forms, sequence = EXPECTED[name]
    assert model.spec.source["format"] == "tflite"
    assert model.spec.source["tflite_forms"] == forms
    recurrent = [n.op for n in model.spec.nodes if isinstance(n.op, ir.Recurrent)]
    assert recurrent and recurrent[-1].return_sequences == sequence
    x = data()  # batch 3, whatever batch the file was converted with
    ours = model.predict(x)
    (theirs,) = tflite.run_source(path, [x])
    assert ours.shape == theirs.shape
    atol, rtol = tolerance(name)
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=rtol)


@pytest.mark.parametrize("name", sorted(n for n, (_, seq) in EXPECTED.items() if seq))
def test_stream_chunks_match_interpreter(files, name):
    """A stateful stream fed the sequence in chunks of different lengths gives predict's output."""
    path = files / f"{name}.tflite"
    model = edgernn.convert(path)
    x = data(batch=2, seed=5)
    (theirs,) = tflite.run_source(path, [x])
    stream = model.stream(batch_size=2)
    ours = np.concatenate([stream.run(x[:, :3]), stream.run(x[:, 3:4]), stream.run(x[:, 4:])], axis=1)
    atol, rtol = tolerance(name)
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=rtol)
    np.testing.assert_allclose(ours, model.predict(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm_last", "k2_lstm_last", "stack", "gru_ra0_float16", "unroll_gru_simple"])
def test_stream_steps_of_last_step_models(files, name):
    """For a many-to-one model, the stream's output after the last step is the interpreter's prediction."""
    path = files / f"{name}.tflite"
    model = edgernn.convert(path)
    x = data(batch=2, seed=6)
    (theirs,) = tflite.run_source(path, [x])
    stream = model.stream(batch_size=2)
    for t in range(T):
        y = stream.step(x[:, t])
    np.testing.assert_allclose(y, theirs, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", ["simple_relu_dyn_t", "k2_stack_lstm_dyn_t_b2"])
def test_dynamic_sequence_length(files, name):
    """A file converted with a dynamic time axis runs at any length, like the converted model."""
    path = files / f"{name}.tflite"
    model = edgernn.convert(path)
    assert model.spec.inputs[0].timesteps is None
    for steps in (3, 13):
        x = data(batch=2, steps=steps, seed=steps)
        (theirs,) = tflite.run_source(path, [x])
        np.testing.assert_allclose(model.predict(x), theirs, atol=ATOL, rtol=RTOL)


def test_weights_are_keras_weights(files):
    """The recognised layers hold the Keras layer's own kernel, recurrent kernel and bias (the IR
    layout is Keras's), whether read from a WHILE loop body or from the fused op's per-gate tensors."""
    for name in ("lstm_last", "k2_lstm_last"):
        kernel, recurrent, bias = np.load(files / f"{name}.npz").values()
        op = edgernn.convert(files / f"{name}.tflite").spec.nodes[0].op
        assert (op.cell, op.units, op.input_size) == ("lstm", 8, F)
        np.testing.assert_array_equal(op.kernel, kernel)
        np.testing.assert_array_equal(op.recurrent_kernel, recurrent)
        np.testing.assert_allclose(op.bias, bias, rtol=1e-7)


def test_gru_forms_and_activations(files):
    gru = edgernn.convert(files / "gru_seq_b2.tflite").spec.nodes[0].op
    assert (gru.cell, gru.reset_after) == ("gru", True) and gru.recurrent_bias is not None
    for name in ("gru_ra0_float16", "k2_gru_ra0_simple"):
        ra0 = edgernn.convert(files / f"{name}.tflite").spec.nodes[0].op
        assert (ra0.cell, ra0.reset_after, ra0.recurrent_bias) == ("gru", False, None)
    simple = edgernn.convert(files / "simple_relu_dyn_t.tflite").spec.nodes[0].op
    assert (simple.cell, simple.activation) == ("simple", "relu")
    head = edgernn.convert(files / "gru_seq_b2.tflite").spec.nodes
    assert [type(n.op).__name__ for n in head] == ["Recurrent", "Dense", "Dense"]
    assert [n.op.activation for n in head[1:]] == ["relu", "tanh"]
    stack = edgernn.convert(files / "stack.tflite").spec.nodes
    assert [getattr(n.op, "cell", type(n.op).__name__) for n in stack] == ["Dense", "lstm", "gru", "simple", "Dense"]
    assert [n.op.return_sequences for n in stack[1:4]] == [True, True, False]
    assert stack[2].op.recurrent_activation == "hard_sigmoid"  # Keras 3's, lowered as relu6(x + 3) / 6
    assert (stack[3].op.activation, stack[4].op.activation) == ("relu", "softmax")


def test_quantized_and_clipped_files_say_so(files):
    src = edgernn.convert(files / "dynamic_range.tflite").spec.source
    assert any("dynamic-range" in q for q in src["quantized"])
    assert edgernn.convert(files / "gru_ra0_float16.tflite").spec.source["quantized"] == ["float16 weights"]
    notes = edgernn.convert(files / "k2_lstm_last.tflite").spec.source["notes"]
    assert any("clips its cell state to ±10" in n for n in notes)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_naming_every_problem(files, name):
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(files / f"{name}.tflite")
    for fragment in REFUSED[name]:
        assert fragment in str(info.value)
    assert f"{name}.tflite" in str(info.value)


def test_ernn_round_trip(files, tmp_path):
    model = edgernn.convert(files / "stack.tflite")
    model.save(tmp_path / "m.ernn")
    loaded = edgernn.load(tmp_path / "m.ernn")
    assert loaded.spec.source["tflite_forms"] == ["WHILE loop"]
    x = data()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("content", [b"", b"garbage" * 50, b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40,
                                     b"PK\x03\x04 not a tflite at all"])
def test_garbage_files_are_invalid(tmp_path, content):
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(InvalidModelFile, match="broken.tflite"):
        edgernn.convert(path)


def test_truncated_file_is_invalid(files, tmp_path):
    blob = (files / "lstm_last.tflite").read_bytes()
    for cut in (len(blob) // 3, len(blob) - 200):
        path = tmp_path / "cut.tflite"
        path.write_bytes(blob[:cut])
        with pytest.raises((InvalidModelFile, UnsupportedModel), match="cut.tflite"):
            edgernn.convert(path)


def assert_corruptions_raise_only_edgernn_errors(paths, tmp_path, seed: int, count: int) -> None:
    """``count`` copies of each file with 1-5 random bytes changed: converting each raises
    InvalidModelFile or UnsupportedModel, or converts; nothing else."""
    rng = np.random.default_rng(seed)
    for source in paths:
        blob = source.read_bytes()
        for _ in range(count):
            mutated = bytearray(blob)
            for k in rng.integers(0, len(blob), size=rng.integers(1, 6)):
                mutated[k] = rng.integers(0, 256)
            path = tmp_path / "mutated.tflite"
            path.write_bytes(bytes(mutated))
            try:
                edgernn.convert(path, verify=False)
            except (InvalidModelFile, UnsupportedModel):
                pass


def test_corrupted_bytes_raise_only_edgernn_errors(files, tmp_path):
    """Random byte changes anywhere in real files: InvalidModelFile or UnsupportedModel, nothing else."""
    names = ("lstm_last", "k2_lstm_last", "unroll_gru_simple")
    assert_corruptions_raise_only_edgernn_errors([files / f"{n}.tflite" for n in names], tmp_path, seed=11, count=40)


def test_conversion_needs_no_interpreter_and_run_source_says_what_is_missing(files):
    """Converting reads the flatbuffer itself (a device may have no TensorFlow); running the source
    needs an interpreter, and its absence is an ImportError."""
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("tensorflow", "ai_edge_litert", "tflite_runtime", "keras"):
            sys.modules[name] = None
        import edgernn
        from edgernn.importers import tflite
        m = edgernn.convert({str(files / 'gru_seq_b2.tflite')!r}, verify=False)
        print(type(m.spec.nodes[0].op).__name__)
        try:
            tflite.run_source({str(files / 'gru_seq_b2.tflite')!r}, [None])
        except ImportError as exc:
            print("ImportError", exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Recurrent"
    assert "ImportError" in result.stdout and "ai-edge-litert" in result.stdout


def test_interpreter_state_is_reset_between_runs(files):
    """The fused LSTM keeps its state in interpreter variables; run_source resets them per invoke."""
    x = data(batch=1)
    first = tflite.run_source(files / "k2_lstm_last.tflite", [np.concatenate([x, x])])[0]
    np.testing.assert_array_equal(first[0], first[1])


def test_refusal_points_to_the_docs(files):
    """The refusal ends, once, with where the edgernn repository's docs list what converts."""
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(files / "refused.tflite")
    text = str(info.value)
    assert text.endswith("(see docs/tflite.md in the edgernn repository for what converts)"), text
    assert text.count("edgernn repository") == 1 and not any("docs/" in p for p in info.value.problems)
