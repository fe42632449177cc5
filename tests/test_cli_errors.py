"""What a user gets when something is wrong: one line, the right exit status, never a traceback.

Through click's CliRunner: every ``OSError`` and ``EdgernnError`` of a command is one line
``error: ...`` on stderr and exit status 1, usage errors stay click's exit status 2, and a bug (any
other exception) keeps its traceback. Then the paths a new user hit: output folders that are
missing or are files, unknown ``--option`` keys, ``edgernn verify`` with nothing verified (exit 3),
a source model given to ``info`` and an .ernn given to ``convert``, TensorFlow's start-up lines on
stderr (a real ``edgernn convert`` in a fresh process), a verification warning printed twice,
stale files in a reused firmware folder, and the edges of ``predict`` and ``step``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgernn
from edgernn import examples, ir
from edgernn.cli import main
from edgernn.errors import InvalidInput, InvalidModelFile

F = 3  # input features of the small model


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """An LSTM(5) -> Dense(2) chain on 3 features, saved as basicmotions_lstm.ernn."""
    rng = np.random.default_rng(7)
    w = lambda *shape: ir.as_weight(rng.normal(scale=0.4, size=shape))  # noqa: E731
    lstm = ir.Recurrent("lstm", "lstm", 5, F, w(F, 20), w(5, 20), w(20), return_sequences=True)
    dense = ir.Dense("head", w(5, 2), w(2), "tanh")
    spec = ir.ModelSpec((ir.Input("x", F),), (ir.Node(lstm, ("x",), ("h",)), ir.Node(dense, ("h",), ("y",))),
                        ("y",), {"format": "test"})
    path = tmp_path_factory.mktemp("errors") / "basicmotions_lstm.ernn"
    edgernn.Model(spec).save(path)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, status=1) -> str:
    """The single line ``error: ...`` of a failed command (stdout and stderr together)."""
    assert result.exit_code == status, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# --- 1. every error path through one handler ------------------------------------------------------


def test_convert_creates_missing_output_folders(tmp_path):
    target = tmp_path / "missing" / "deeper" / "x.ernn"
    result = invoke("convert", examples.path(), "--no-verify", "-o", target)
    assert result.exit_code == 0, result.output
    assert edgernn.load(target).input_features == 6


def test_convert_into_a_file_posing_as_a_folder(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    line = one_error_line(invoke("convert", examples.path(), "--no-verify", "-o", tmp_path / "afile" / "x.ernn"))
    assert f"cannot write {tmp_path / 'afile' / 'x.ernn'}: {tmp_path / 'afile'} is not a folder" in line


def test_export_into_missing_and_impossible_folders(small_model, tmp_path):
    result = invoke("export", small_model, "--quant", "float32", "-o", tmp_path / "missing" / "fw")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "missing" / "fw" / "basicmotions_lstm_model.c").is_file()
    (tmp_path / "afile").write_text("not a folder")
    line = one_error_line(invoke("export", small_model, "--quant", "float32", "-o", tmp_path / "afile" / "fw"))
    assert f"{tmp_path / 'afile'} is not a folder" in line


def test_unwritable_output_names_the_path_not_a_temporary_file(tmp_path, monkeypatch):
    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(Path(path).parent / ".x.ernn.abc123.tmp"))

    monkeypatch.setattr(edgernn.Model, "save", refuse)
    line = one_error_line(invoke("convert", examples.path(), "--no-verify", "-o", tmp_path / "x.ernn"))
    assert line == f"error: cannot write {tmp_path / 'x.ernn'}: Permission denied"


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied", "model.ernn"),
                                   IsADirectoryError(21, "Is a directory", "model.ernn"),
                                   FileNotFoundError(2, "No such file or directory", "model.ernn"),
                                   NotADirectoryError(20, "Not a directory", "model.ernn")])
def test_any_os_error_is_one_line_naming_the_path(small_model, monkeypatch, error):
    def fail(path):
        raise error

    monkeypatch.setattr(edgernn, "load", fail)
    for command in (["info", small_model], ["export", small_model, "-o", "unused"], ["warmup", small_model]):
        assert one_error_line(invoke(*command)) == f"error: model.ernn: {error.strerror}"


def test_a_bug_keeps_its_traceback(small_model, monkeypatch):
    def bug(path):
        raise RuntimeError("a bug in edgernn")

    monkeypatch.setattr(edgernn, "load", bug)
    result = invoke("info", small_model)
    assert isinstance(result.exception, RuntimeError)  # not turned into a one-line user error
    assert not result.output.startswith("error:")


def test_usage_errors_stay_exit_status_2(small_model, tmp_path):
    result = invoke("info", tmp_path)  # a folder where a file is expected: click's check
    assert result.exit_code == 2 and "is a directory" in result.output
    assert invoke("export", small_model).exit_code == 2  # -o missing


@pytest.mark.parametrize("suffix, known", [(".pt", "known: activations, batch_first, head, mode, modules, nonlinearity, order"),
                                           (".keras", "this format takes no options"),
                                           (".onnx", "this format takes no options"),
                                           (".tflite", "this format takes no options")])
def test_unknown_option_lists_the_known_keys(tmp_path, suffix, known):
    source = tmp_path / f"model{suffix}"
    source.write_bytes(b"options are checked before the file is read")
    line = one_error_line(invoke("convert", source, "--no-verify", "--option", "units=3"))
    assert "unexpected options: units" in line and known in line
    with pytest.raises(InvalidInput, match="unexpected options: units") as info:
        edgernn.convert(source, verify=False, units=3)
    assert isinstance(info.value, TypeError)  # as for a Python function's unknown keyword


# --- 2. verify: nothing verified is not a pass ---------------------------------------------------


def test_verify_with_nothing_verified_exits_3(monkeypatch):
    from edgernn.importers import keras as keras_importer

    def missing(*args, **kwargs):
        raise ImportError("No module named 'keras'")

    monkeypatch.setattr(keras_importer, "run_source", missing)
    result = invoke("verify", examples.path())
    assert result.exit_code == 3, result.output
    assert "verification skipped: keras is not installed" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: nothing was verified")
    result = invoke("verify", examples.path(), "--allow-skip")
    assert result.exit_code == 0, result.output
    assert "verification skipped: keras is not installed" in result.stdout


def test_verify_fail_stays_exit_1(monkeypatch):
    from edgernn.importers import keras as keras_importer

    monkeypatch.setattr(keras_importer, "run_source", lambda source, inputs, **options: [np.zeros((4, 4), np.float32)])
    result = invoke("verify", examples.path(), "--allow-skip")
    assert result.exit_code == 1 and "verification FAIL" in result.output


# --- 3. the wrong kind of file -------------------------------------------------------------------


def test_info_on_a_source_model_says_convert_it_first():
    line = one_error_line(invoke("info", examples.path()))
    assert "a Keras model, not an .ernn: convert it first" in line and f"edgernn convert {examples.path()}" in line
    with pytest.raises(InvalidModelFile, match="convert it first"):
        edgernn.load(examples.path())


def test_convert_on_an_ernn_points_at_load_and_info(small_model):
    line = one_error_line(invoke("convert", small_model))
    assert "already an edgernn model" in line and "edgernn info" in line
    with pytest.raises(InvalidInput, match="already an edgernn model.*edgernn.load"):
        edgernn.convert(small_model)


def test_garbage_with_an_ernn_name_is_still_a_malformed_file(tmp_path):
    (tmp_path / "x.ernn").write_bytes(b"not a model")
    with pytest.raises(InvalidModelFile) as info:
        edgernn.load(tmp_path / "x.ernn")
    assert "convert it first" not in str(info.value)


# --- 4. noise: TensorFlow's start-up lines, warnings printed twice -------------------------------


def test_verified_convert_prints_no_tensorflow_noise(tmp_path):
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    script = Path(sys.executable).with_name("edgernn")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "edgernn.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GRPC_"))}  # as a new user has it
    result = subprocess.run(command + ["convert", str(examples.path()), "-o", str(tmp_path / "x.ernn")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "verification PASS against keras" in result.stdout
    lines = result.stderr.strip().splitlines()
    noise = [line for line in lines if re.search(r"absl|oneDNN|cuda|cuInit|cpu_feature_guard|^[IWE]\d{4} ", line)]
    assert noise == [], result.stderr
    # one line says why the next seconds pass; besides it, only edgernn's own notices (the kernels'
    # compile notice, with a cold Numba cache) and warnings as one line each
    assert all(line.startswith(("edgernn: ", "warning: ")) for line in lines), result.stderr
    said = [line for line in lines if "verifying against keras" in line]
    assert len(said) == 1 and "--no-verify" in said[0], result.stderr


def test_framework_noise_is_held_back_and_every_other_line_kept(capfd):
    from edgernn.verify import _quietly

    def noisy_run_source(source, inputs):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796361711.374599   28150 port.cc:153] oneDNN custom operations are on.\n"
                    b"a line of the framework's own\n")
        return [inputs]

    assert _quietly(noisy_run_source)("source", 3) == [3]
    err = capfd.readouterr().err
    assert "oneDNN" not in err and "InitializeLog" not in err and "a line of the framework's own" in err


def test_a_verification_warning_is_printed_once(tmp_path, monkeypatch):
    """A source its framework cannot run (a .keras file named .h5): the warning once, on stderr."""
    from edgernn.importers import keras as keras_importer

    def cannot_open(*args, **kwargs):
        raise OSError("Unable to synchronously open file (file signature not found)")

    monkeypatch.setattr(keras_importer, "run_source", cannot_open)
    shutil.copy(examples.path(), tmp_path / "misnamed.h5")
    for attempt in range(2):  # the second command in one process warns as well
        result = invoke("convert", tmp_path / "misnamed.h5", "-o", tmp_path / "x.ernn")
        assert result.exit_code == 0, result.output
        assert result.output.count("verification not done") == 1, result.output
        warned = [line for line in result.stderr.splitlines() if "verification not done" in line]
        assert warned and warned[0].startswith("warning: verification not done: keras could not run")
        assert "RuntimeWarning" not in result.output and "verification not done" not in result.stdout


# --- 5. export: what it owns, what it is called --------------------------------------------------


def test_export_removes_only_the_files_an_earlier_export_wrote(small_model, tmp_path):
    folder = tmp_path / "fw"
    assert invoke("export", small_model, "--quant", "float32", "-o", folder, "--testbench").exit_code == 0
    assert (folder / "testbench.c").is_file() and (folder / "basicmotions_lstm_model.h").is_file()
    (folder / "main.c").write_text("int main(void) { return 0; }\n")  # the user's own file
    result = invoke("export", small_model, "--quant", "float32", "-o", folder, "--name", "imu")
    assert result.exit_code == 0, result.output
    assert not (folder / "testbench.c").exists()
    assert not (folder / "basicmotions_lstm_model.h").exists() and not (folder / "basicmotions_lstm_model.c").exists()
    assert (folder / "imu_model.h").is_file() and (folder / "main.c").is_file()
    assert "add_library(imu STATIC" in (folder / "CMakeLists.txt").read_text()


def test_export_never_deletes_what_its_manifest_did_not_come_from(small_model, tmp_path):
    from edgernn.export import MANIFEST, export

    qm = edgernn.load(small_model).quantize(None, scheme="float32")
    folder = tmp_path / "fw"
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    folder.mkdir()
    (folder / "notes.c").write_text("keep")
    (folder / MANIFEST).write_text("../precious.txt\n/etc/passwd\nnotes.c/..\n.hidden\n")
    export(qm, folder)
    assert outside.read_text() == "keep" and (folder / "notes.c").read_text() == "keep"
    assert (folder / "model_model.h").is_file()  # the Python API's default name stays "model"


def test_default_name_is_the_model_file_as_a_c_identifier(small_model, tmp_path):
    from edgernn.export import c_name

    assert c_name("basicmotions_lstm") == "basicmotions_lstm"
    assert c_name("imu-net v2") == "imu_net_v2"
    assert c_name("1d_cnn") == "m_1d_cnn"
    assert c_name("---") == c_name("") == c_name("ernn") == "model"
    odd = tmp_path / "2nd-try.ernn"
    shutil.copy(small_model, odd)
    result = invoke("export", odd, "--quant", "float32", "-o", tmp_path / "fw")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fw" / "m_2nd_try_model.h").is_file()
    assert "m_2nd_try_model.h/.c" in result.output


# --- 6. predict and step edges -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["int8", "float32"])
def test_quantized_predict_refuses_an_empty_sequence(small_model, scheme):
    """It used to fail inside the layers (a ValueError from a reshape). The float model's predict
    refuses T = 0 only when it returns the last step (tests/test_stream.py); for a sequence output
    it returns the empty sequence, where the quantized model refuses: not yet the same."""
    model = edgernn.load(small_model)
    quantized = model.quantize(np.random.default_rng(0).normal(size=(2, 8, F)).astype(np.float32), scheme=scheme)
    with pytest.raises(InvalidInput, match=r"got \(1, 0, 3\): an empty sequence"):
        quantized.predict(np.zeros((1, 0, F), np.float32))
    assert quantized.predict(np.zeros((0, 4, F), np.float32)).shape == (0, 4, 2)  # no rows: still fine


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_on_one_sample_suggests_a_batch_axis(small_model, dtype):
    stream = edgernn.load(small_model).stream()
    with pytest.raises(InvalidInput, match=r"got \(3,\) .*x_t\[None\]"):
        stream.step(np.zeros(F, dtype))
    assert stream.step(np.zeros(F, dtype)[None]).shape == (1, 2)
    with pytest.raises(InvalidInput) as info:  # two streams: a (3,) sample is not "one of them"
        edgernn.load(small_model).stream(2).step(np.zeros(F, dtype))
    assert "x_t[None]" not in str(info.value)
