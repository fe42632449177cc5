"""Conversion verification: convert runs the source and the converted model and records the result.

Against live Keras (in this process), tf-keras and the TFLite interpreter (files made in one
subprocess, since ``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is imported). A corrupted
conversion (one weight changed) must be reported as FAIL -- by ``convert`` (VerificationFailed),
by ``verify="warn"`` (a warning) and by ``edgernn verify`` (exit status 1); a missing framework
must skip the check with a note, never crash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

import edgernn  # noqa: E402
from edgernn import ir  # noqa: E402
from edgernn.cli import main  # noqa: E402
from edgernn.errors import InvalidInput, VerificationFailed  # noqa: E402
from edgernn.importers import keras as keras_importer  # noqa: E402
from edgernn.importers import tflite as tflite_importer  # noqa: E402
from edgernn.verify import summary_line, verify  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.normal(0, 0.8 / np.sqrt(w.shape[-2]), w.shape) if w.ndim >= 2
                        else rng.normal(0, 0.3, w.shape)).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """A sequence model and a many-to-one model (any length), as .keras and .h5."""
    out = tmp_path_factory.mktemp("verify")
    seq = randomize(keras.Sequential([keras.Input((None, 3)), layers.LSTM(5, return_sequences=True),
                                      layers.Dense(2, activation="tanh")]))
    last = randomize(keras.Sequential([keras.Input((None, 3)), layers.GRU(4), layers.Dense(3, activation="softmax")]), 1)
    paths = {}
    for name, model in (("seq", seq), ("last", last)):
        for suffix in (".keras", ".h5"):
            paths[name + suffix] = out / f"{name}{suffix}"
            model.save(paths[name + suffix])
    paths["last_model"] = last
    return paths


GENERATOR = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    keras = tf.keras
    out = sys.argv[1]
    rng = np.random.default_rng(3)

    def randomize(model):
        model.set_weights([(rng.normal(0, 0.8 / np.sqrt(w.shape[-2]), w.shape) if w.ndim >= 2
                            else rng.normal(0, 0.3, w.shape)).astype("float32") for w in model.get_weights()])
        return model

    # Keras 2's hard_sigmoid (clip(0.2x + 0.5)) is not Keras 3's: run_source must load this with tf-keras.
    model = randomize(keras.Sequential([keras.Input((None, 3)),
                                        keras.layers.GRU(4, recurrent_activation="hard_sigmoid", return_sequences=True)]))
    model.save(os.path.join(out, "k2_hard_sigmoid.h5"))
    inp = keras.Input((10, 3), batch_size=1)
    x = keras.layers.LSTM(6, return_sequences=True)(inp)
    model = randomize(keras.Model(inp, keras.layers.Dense(2)(x)))
    with open(os.path.join(out, "lstm.tflite"), "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    """
)


@pytest.fixture(scope="module", autouse=True)
def legacy_generation(request):
    """Start making a tf-keras .h5 and a .tflite (the fused LSTM) in a subprocess as soon as this
    module starts, so it runs beside the Keras tests; cached in pytest's cache directory."""
    from importlib import metadata

    key = hashlib.sha256((GENERATOR + metadata.version("tensorflow")).encode()).hexdigest()[:16]
    out = request.config.cache.mkdir(f"edgernn-verify-{key}")
    process = None
    if not (out / "done").exists():
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        process = subprocess.Popen([sys.executable, "-c", GENERATOR, str(out)], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    yield out, process, key
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def legacy_files(legacy_generation):
    out, process, key = legacy_generation
    if process is not None and not (out / "done").exists():
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        (out / "done").write_text(key)
    return out


def corrupt(monkeypatch, module, function):
    """Make ``module.function`` return a spec whose first recurrent kernel has one weight changed."""
    original = getattr(module, function)

    def wrong(*args, **kwargs):
        spec = original(*args, **kwargs)
        nodes = list(spec.nodes)
        for k, node in enumerate(nodes):
            if isinstance(node.op, ir.Recurrent):
                kernel = node.op.kernel.copy()
                kernel[0, 0] += 0.5
                op = dataclasses.replace(node.op, kernel=kernel)
                nodes[k] = ir.Node(op, node.inputs, node.outputs, node.mask, node.initial_state)
                break
        return spec.replace(nodes=tuple(nodes))

    monkeypatch.setattr(module, function, wrong)


# --- Keras ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["seq.keras", "seq.h5", "last.keras", "last.h5"])
def test_keras_conversions_pass(keras_files, name):
    model = edgernn.convert(keras_files[name])
    record = model.spec.source["verification"]
    assert record["passed"] is True
    assert record["framework"] == f"keras {keras.__version__}"
    assert record["max_abs_error"] < 1e-5 and record["max_rel_error"] < 1e-5
    assert record["data"] == "random normal, seed 0, shape 4x24x3"
    predict, stream = record["checks"]
    assert predict["check"] == "predict" and predict["passed"]
    assert stream["passed"] and stream["check"].startswith("stream in chunks of 1, 3, 7, 2, 5")
    if name.startswith("last"):  # a many-to-one model: the stream checked against predictions on prefixes
        assert "prefixes of 13, 24 steps" in stream["check"]
    json.dumps(record, allow_nan=False)


def test_in_memory_model_and_given_data(keras_files):
    model = keras_files["last_model"]
    converted = edgernn.convert(model)
    assert converted.spec.source["verification"]["passed"] is True
    x = np.random.default_rng(9).normal(size=(2, 40, 3)).astype(np.float32)
    record = verify(model, converted, data=x)
    assert record["passed"] and record["data"] == "given data, shape 2x40x3"
    one = verify(model, converted, data=x[0])  # one sequence without a batch axis
    assert one["passed"] and one["data"] == "given data, shape 1x40x3"
    with pytest.raises(InvalidInput, match="must have shape"):
        verify(model, converted, data=np.zeros((2, 5, 4)))


def test_keras2_file_runs_with_tf_keras(legacy_files):
    """A Keras 2 file is run by tf-keras (Keras 3 would redefine its hard_sigmoid and disagree)."""
    pytest.importorskip("tf_keras")
    record = edgernn.convert(legacy_files / "k2_hard_sigmoid.h5").spec.source["verification"]
    assert record["passed"] is True, record
    assert record["framework"].startswith("tf-keras ")


def test_corrupted_conversion_fails(keras_files, monkeypatch):
    corrupt(monkeypatch, keras_importer, "load_keras_file")
    with pytest.raises(VerificationFailed) as info:
        edgernn.convert(keras_files["last.keras"])
    assert info.value.result["passed"] is False
    assert info.value.result["max_abs_error"] > 1e-3
    assert "verification FAIL against keras" in str(info.value)
    with pytest.warns(RuntimeWarning, match="verification FAIL"):
        model = edgernn.convert(keras_files["last.keras"], verify="warn")
    assert model.spec.source["verification"]["passed"] is False
    assert "verification" not in edgernn.convert(keras_files["last.keras"], verify=False).spec.source


def test_cli_verify_pass_and_fail(keras_files, monkeypatch, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["verify", str(keras_files["seq.keras"])])
    assert result.exit_code == 0, result.output
    assert "predict: max abs error" in result.output and "verification PASS against keras" in result.output
    x = np.random.default_rng(4).normal(size=(3, 17, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = runner.invoke(main, ["verify", str(keras_files["last.h5"]), "--data", str(tmp_path / "x.npy"),
                                  "--tolerance", "1e-4"])
    assert result.exit_code == 0, result.output
    assert "given data, shape 3x17x3" in result.output and "atol 0.0001, rtol 0.001" in result.output
    corrupt(monkeypatch, keras_importer, "load_keras_file")
    result = runner.invoke(main, ["verify", str(keras_files["seq.keras"])])
    assert result.exit_code == 1
    assert "-> FAIL" in result.output and "verification FAIL" in result.output
    result = runner.invoke(main, ["convert", str(keras_files["seq.keras"]), "-o", str(tmp_path / "bad.ernn")])
    assert result.exit_code == 1 and "error: verification FAIL" in result.output
    assert not (tmp_path / "bad.ernn").exists()
    result = runner.invoke(main, ["convert", str(keras_files["seq.keras"]), "-o", str(tmp_path / "unchecked.ernn"),
                                  "--no-verify"])
    assert result.exit_code == 0 and "verification" not in result.output


def test_cli_verify_refuses_bad_data(keras_files, tmp_path):
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    result = CliRunner().invoke(main, ["verify", str(keras_files["seq.keras"]), "--data", str(tmp_path / "x.npy")])
    assert result.exit_code == 1 and result.output.startswith("error: ")
    np.save(tmp_path / "y.npy", np.zeros((2, 5, 7), np.float32))
    result = CliRunner().invoke(main, ["verify", str(keras_files["seq.keras"]), "--data", str(tmp_path / "y.npy")])
    assert result.exit_code == 1 and "must have shape" in result.output


def test_header_holds_the_record_and_info_shows_it(keras_files, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["convert", str(keras_files["last.keras"]), "-o", str(tmp_path / "m.ernn")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("verification PASS against keras")
    with zipfile.ZipFile(tmp_path / "m.ernn") as archive:
        header = json.loads(archive.read("header.json"))
    record = header["source"]["verification"]
    assert record["passed"] is True and record["framework"] == f"keras {keras.__version__}"
    assert edgernn.load(tmp_path / "m.ernn").spec.source["verification"] == record
    info = runner.invoke(main, ["info", str(tmp_path / "m.ernn")])
    assert info.exit_code == 0
    assert "verification PASS against keras" in info.output
    assert "max abs error" in info.output
    assert "verification=" not in info.output  # not repeated in the source line


def test_info_survives_a_malformed_record(tmp_path):
    lstm = ir.Recurrent("lstm", "lstm", 2, 1, ir.as_weight(np.ones((1, 8))), ir.as_weight(np.ones((2, 8))))
    spec = ir.ModelSpec((ir.Input("x", 1),), (ir.Node(lstm, ("x",), ("h",)),), ("h",),
                        {"format": "test", "verification": {"passed": "yes", "tolerance": 3, "max_abs_error": "big"}})
    edgernn.Model(spec).save(tmp_path / "odd.ernn")
    result = CliRunner().invoke(main, ["info", str(tmp_path / "odd.ernn")])
    assert result.exit_code == 0, result.output
    assert "verification unknown" in result.output
    assert summary_line("nonsense") == "verification: unreadable record"


def test_verify_option_is_checked(keras_files):
    with pytest.raises(InvalidInput, match="verify must be"):
        edgernn.convert(keras_files["seq.keras"], verify="sometimes")


# --- without the framework ----------------------------------------------------------------------


def test_missing_framework_skips_with_a_note(keras_files, monkeypatch, tmp_path):
    def missing(*args, **kwargs):
        raise ImportError("No module named 'keras'")

    monkeypatch.setattr(keras_importer, "run_source", missing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a skip is a note in the record, not a warning
        model = edgernn.convert(keras_files["seq.keras"])
    record = model.spec.source["verification"]
    assert record == {"passed": None, "skipped": "keras is not installed (No module named 'keras')"}
    runner = CliRunner()
    result = runner.invoke(main, ["verify", str(keras_files["seq.keras"]), "--allow-skip"])  # else exit 3
    assert result.exit_code == 0
    assert result.output.strip() == "verification skipped: keras is not installed (No module named 'keras')"
    result = runner.invoke(main, ["convert", str(keras_files["seq.keras"]), "-o", str(tmp_path / "m.ernn")])
    assert result.exit_code == 0 and result.output.startswith("verification skipped: keras is not installed")
    assert "verification skipped" in runner.invoke(main, ["info", str(tmp_path / "m.ernn")]).output


def test_without_keras_or_tensorflow_in_a_fresh_process(keras_files, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("keras", "tensorflow", "tf_keras"):
            sys.modules[name] = None
        import edgernn
        from edgernn.cli import main
        model = edgernn.convert({str(keras_files['last.keras'])!r})
        print(model.spec.source["verification"]["skipped"])
        try:
            main(["verify", {str(keras_files['last.keras'])!r}, "--allow-skip"])  # else exit 3
        except SystemExit as exc:
            print("exit", exc.code)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("keras is not installed")
    assert lines[1].startswith("verification skipped: keras is not installed")
    assert lines[2] == "exit 0"


# --- TFLite, through the interpreter ------------------------------------------------------------


def test_tflite_verification_through_the_interpreter(legacy_files, monkeypatch, tmp_path):
    pytest.importorskip("ai_edge_litert")
    path = legacy_files / "lstm.tflite"
    record = edgernn.convert(path).spec.source["verification"]
    assert record["passed"] is True, record
    assert record["framework"].startswith("ai-edge-litert ")
    assert record["data"] == "random normal, seed 0, shape 4x10x3 (the source's declared time length 10)"
    assert record["checks"][1]["passed"]  # the chunked stream against the interpreter's sequence
    runner = CliRunner()
    result = runner.invoke(main, ["verify", str(path)])
    assert result.exit_code == 0 and "verification PASS against ai-edge-litert" in result.output
    np.save(tmp_path / "short.npy", np.zeros((2, 4, 3), np.float32))  # the file fixes 10 steps
    result = runner.invoke(main, ["verify", str(path), "--data", str(tmp_path / "short.npy")])
    assert result.exit_code == 1 and "verification not done" in result.output and "fixed that axis" in result.output
    corrupt(monkeypatch, tflite_importer, "load_tflite_file")
    result = runner.invoke(main, ["verify", str(path)])
    assert result.exit_code == 1 and "verification FAIL against ai-edge-litert" in result.output
    with pytest.raises(VerificationFailed):
        edgernn.convert(path)
