"""Every script in examples/ runs, as a user runs it (a subprocess), and its output is checked:
the sensor loop prints what `predict` returns, the exported C says what the int8 simulation says,
the Keras examples agree with Keras. Fast options only; nothing here reads the UEA/UCR data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgernn
from edgernn import examples

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DAPHNET_ERNN, DAPHNET_TRACE = EXAMPLES / "daphnet" / "daphnet_gru.ernn", EXAMPLES / "daphnet" / "daphnet_trace.csv"
DAPHNET_LABELS = ("standing", "walking")
CNN_LSTM_ERNN = EXAMPLES / "cnn_lstm" / "basicmotions_cnn_lstm.ernn"
DAPHNET_CNN_LSTM_ERNN = EXAMPLES / "daphnet" / "daphnet_cnn_lstm.ernn"


def run(script: str, *args: str, stdin=None, env: dict | None = None) -> str:
    """Run examples/SCRIPT with ARGS; fail with its output if it exits non-zero; return stdout."""
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], stdin=stdin, capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}, timeout=600)
    assert result.returncode == 0, f"{script} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def read_trace(path) -> np.ndarray:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from sensor_loop import samples
    finally:
        sys.path.remove(str(EXAMPLES))
    with open(path) as f:
        return np.array(list(samples(f)))


def step_lines(stdout: str) -> list[list[str]]:
    """The per-sample lines of sensor_loop.py: 'n  <prediction>  <latency> us', split on spaces."""
    rows = [line.split() for line in stdout.splitlines() if re.match(r"\s*\d+ ", line) and line.endswith(" us")]
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    return [r[1:-2] for r in rows]


def test_sensor_loop_prints_the_activity_predict_gives_at_every_sample():
    trace = read_trace(examples.path("basicmotions_trace.csv"))
    expected = edgernn.convert(examples.path("basicmotions_lstm.keras"), verify=False).predict(trace[None])[0]
    out = run("sensor_loop.py", "--speed", "0")
    printed = step_lines(out)
    assert len(printed) == len(trace) == 400
    names = [row[0] for row in printed]
    probabilities = np.array([float(row[1].removeprefix("p=")) for row in printed])
    assert names == [examples.ACTIVITIES[k] for k in expected.argmax(axis=1)]
    np.testing.assert_allclose(probabilities, expected.max(axis=1), atol=0.0051)
    assert re.search(r"^400 steps: median [\d.]+ us, p99 [\d.]+ us per step$", out, re.M)


def test_sensor_loop_streams_the_cnn_lstm_example_as_predict_does():
    trace = read_trace(examples.path("basicmotions_trace.csv"))
    model = edgernn.load(CNN_LSTM_ERNN)
    assert {"Conv1D", "Recurrent"} <= {type(node.op).__name__ for node in model.spec.nodes}
    expected = model.predict(trace[None])[0]
    printed = step_lines(run("sensor_loop.py", "--ernn", str(CNN_LSTM_ERNN), "--speed", "0",
                             "--labels", ",".join(examples.ACTIVITIES)))
    assert [row[0] for row in printed] == [examples.ACTIVITIES[k] for k in expected.argmax(axis=1)]
    # The trace is one test recording of each activity, 100 rows each: the model names each one
    # by the end of its recording.
    assert [printed[k][0] for k in (99, 199, 299, 399)] == list(examples.ACTIVITIES)


@pytest.mark.parametrize("labels", [False, True])
def test_sensor_loop_on_the_daphnet_model_from_stdin(labels):
    trace = read_trace(DAPHNET_TRACE)
    expected = edgernn.load(DAPHNET_ERNN).predict(trace[None])[0]
    options = ["--labels", ",".join(DAPHNET_LABELS)] if labels else []
    with open(DAPHNET_TRACE) as f:
        printed = step_lines(run("sensor_loop.py", "--ernn", str(DAPHNET_ERNN), "--trace", "-", "--rate", "64", "--speed", "0",
                                 *options, stdin=f))
    assert len(printed) == len(trace) == 1024
    if labels:
        assert [row[0] for row in printed] == [DAPHNET_LABELS[k] for k in expected.argmax(axis=1)]
    else:  # the raw outputs, 4 significant digits
        np.testing.assert_allclose(np.array(printed, dtype=float), expected, rtol=6e-4, atol=1e-9)
    # the model follows the derived label: standing first, walking at the end (see examples/README.md)
    assert expected[:400].argmax(axis=1).mean() < 0.05 and expected[-400:].argmax(axis=1).mean() > 0.95


@pytest.mark.parametrize("model", ["basicmotions", "daphnet", "daphnet_cnn_lstm"])
def test_firmware_loop_c_equals_the_int8_simulation(model, tmp_path):
    ernn = DAPHNET_CNN_LSTM_ERNN if model == "daphnet_cnn_lstm" else DAPHNET_ERNN
    options = ["--ernn", str(ernn), "--trace", str(DAPHNET_TRACE), "--labels", ",".join(DAPHNET_LABELS)]
    options = options if model.startswith("daphnet") else []
    out = run("firmware_loop.py", "--out", str(tmp_path), *options)
    assert "int8 outputs, C vs Python simulation: identical at every step" in out
    said = re.findall(r"rows +(\d+)- *(\d+): C says (\w+)", out)
    assert said and said[0][0] == "1" and int(said[-1][1]) == (1024 if model.startswith("daphnet") else 400)
    if model == "daphnet":
        assert [name for _, _, name in said] == ["standing", "walking"]
    if model == "daphnet_cnn_lstm":  # the CNN-LSTM's int8 C wavers around the change (rows 467-535), as its float model
        assert "Conv1D" in {type(node.op).__name__ for node in edgernn.load(ernn).spec.nodes}
        assert said[0][2] == "standing" and int(said[0][1]) > 400 and said[-1][2] == "walking" and int(said[-1][0]) < 600


def test_forecast_airline_agrees_with_keras(tmp_path):
    # A synthetic stand-in for Airline.csv (trend times a yearly swing), so the test needs no data folder.
    months = np.arange(144)
    passengers = 120 * np.exp(0.01 * months) * (1 + 0.2 * np.sin(2 * np.pi * months / 12))
    (tmp_path / "Airline").mkdir()
    (tmp_path / "Airline" / "Airline.csv").write_text(
        "Date,Passengers\n" + "".join(f"{1949 + m // 12}-{m % 12 + 1:02d},{p:.0f}\n" for m, p in zip(months, passengers)))
    out = run("forecast_airline.py", "--epochs", "3", env={"EDGERNN_DATA": str(tmp_path)})
    difference = float(re.search(r"max \|difference\| (\S+) \(scaled units\)", out).group(1))
    assert difference <= 1e-4 and "forecast RMSE" in out


@pytest.mark.parametrize("script", ["one_to_many.py", "encoder_decoder.py"])
def test_predict_only_examples_agree_with_keras(script):
    out = run(script)
    assert float(re.search(r"max \|edgernn - Keras\| = (\S+),", out).group(1)) < 1e-4
