"""The command line: click's CliRunner for each command, and one real shell pipeline."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import edgernn
from edgernn import examples, ir
from edgernn.cli import main


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """An LSTM(5) -> Dense(2) chain on 3 features, saved as .ernn."""
    rng = np.random.default_rng(7)
    w = lambda *shape: ir.as_weight(rng.normal(scale=0.4, size=shape))  # noqa: E731
    lstm = ir.Recurrent("lstm", "lstm", 5, 3, w(3, 20), w(5, 20), w(20), return_sequences=True)
    dense = ir.Dense("head", w(5, 2), w(2), "tanh")
    spec = ir.ModelSpec((ir.Input("x", 3),), (ir.Node(lstm, ("x",), ("h",)), ir.Node(dense, ("h",), ("y",))),
                        ("y",), {"format": "test"})
    path = tmp_path_factory.mktemp("cli") / "small.ernn"
    edgernn.Model(spec).save(path)
    return path


def _expected(path, x_rows, streams=1):
    """What a stream of the model gives for these rows (time-major, streams side by side)."""
    model = edgernn.load(path)
    x = x_rows.reshape(len(x_rows), streams, model.input_features).transpose(1, 0, 2)
    y = model.stream(streams).run(x)
    return y.transpose(1, 0, 2).reshape(len(x_rows), -1)


def _parse(text):
    return np.array([[float(v) for v in line.split(",")] for line in text.strip().splitlines()], np.float32)


def test_run_csv_on_stdin_matches_stream(small_model):
    rows = np.random.default_rng(1).normal(size=(12, 3)).astype(np.float32)
    text = "a,b,c\n" + "\n".join(",".join(f"{v:.9g}" for v in r) for r in rows) + "\n"
    result = CliRunner().invoke(main, ["run", str(small_model)], input=text)
    assert result.exit_code == 0, result.output
    # the CLI steps one row at a time; _expected runs a block: equal up to float32 rounding
    np.testing.assert_allclose(_parse(result.output), _expected(small_model, rows), rtol=1e-5, atol=1e-6)


def test_run_many_streams_side_by_side(small_model, tmp_path):
    rows = np.random.default_rng(2).normal(size=(9, 3 * 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", rows)
    out = tmp_path / "y.csv"
    result = CliRunner().invoke(main, ["run", str(small_model), "--streams", "4", "-i", str(tmp_path / "x.npy"),
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(_parse(out.read_text()), _expected(small_model, rows, streams=4), rtol=1e-5, atol=1e-6)


def test_run_bad_row_is_one_line_error(small_model):
    result = CliRunner().invoke(main, ["run", str(small_model)], input="1,2,3\n1,2\n")
    assert result.exit_code == 1
    assert "line 2: 2 values, the model takes 3" in result.output
    assert "Traceback" not in result.output


def test_info_text_and_json(small_model):
    result = CliRunner().invoke(main, ["info", str(small_model)])
    assert result.exit_code == 0, result.output
    assert "LSTM(5)" in result.output and "state per stream: 40 bytes" in result.output
    data = json.loads(CliRunner().invoke(main, ["info", "--json", str(small_model)]).output)
    assert data["parameters"] == 3 * 20 + 5 * 20 + 20 + 5 * 2 + 2
    assert data["state_bytes_per_stream"] == 2 * 5 * 4
    assert data["source"] == {"format": "test"}


def test_missing_and_garbage_files_are_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.ernn"
    garbage.write_bytes(b"not a model")
    for path in (tmp_path / "missing.ernn", garbage):
        result = CliRunner().invoke(main, ["info", str(path)])
        assert result.exit_code == 1
        assert result.output.startswith("error: ") and str(path) in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_convert_shipped_example_then_run(tmp_path):
    target = tmp_path / "example.ernn"
    result = CliRunner().invoke(main, ["convert", str(examples.path()), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.is_file() and "parameters" in result.output
    info = json.loads(CliRunner().invoke(main, ["info", "--json", str(target)]).output)
    assert info["source"]["format"] == "keras" and info["streamable"]


def test_real_pipeline_flushes_each_row(small_model):
    """A subprocess fed one row at a time answers each row before the next is sent."""
    process = subprocess.Popen([sys.executable, "-m", "edgernn.cli", "run", str(small_model)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rows = np.random.default_rng(3).normal(size=(5, 3)).astype(np.float32)
    expected = _expected(small_model, rows)
    try:
        for k, row in enumerate(rows):
            process.stdin.write(",".join(f"{v:.9g}" for v in row) + "\n")
            process.stdin.flush()
            answer = process.stdout.readline()  # blocks until this row's output is flushed
            np.testing.assert_allclose(_parse(answer)[0], expected[k], rtol=1e-5, atol=1e-6)
    finally:
        process.stdin.close()
        assert process.wait(timeout=60) == 0


def test_info_reports_quantization_error_per_layer(tmp_path):
    model = edgernn.convert(examples.path(), verify=False)
    model.save(tmp_path / "example.ernn")
    calibration = np.random.default_rng(4).normal(scale=3.0, size=(3, 30, 6)).astype(np.float32)
    np.save(tmp_path / "calib.npy", calibration)
    args = ["info", str(tmp_path / "example.ernn"), "--calibration", str(tmp_path / "calib.npy")]
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0, text.output
    assert "int8: error against the float model" in text.output
    layers = json.loads(CliRunner().invoke(main, args + ["--json"]).output)["quantization"]["layers"]
    assert [layer["layer"] for layer in layers] == [node.op.name for node in model.spec.nodes]
    qm = model.quantize(calibration, scheme="int8")
    assert [layer["max_abs_error"] for layer in layers] == [layer["max_abs_error"] for layer in qm.report]
    assert all(0 < layer["max_abs_error"] < 0.2 for layer in layers)


def test_verify_plot_draws_source_converted_and_int8(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "compare.png"
    result = CliRunner().invoke(main, ["verify", str(examples.path()), "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert "verification PASS" in result.output
    assert f"wrote {target}: source, converted (float32), int8" in result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
