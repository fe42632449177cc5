"""Convolutional front-ends in the firmware (Conv1D, pooling, BatchNormalization, Normalization): CNN
models made in live Keras 3, quantized and exported in every scheme.

* the simulation (``Model.quantize``) answers what Keras's ``predict`` answers: float32 to float32
  rounding, int8-weights and int8 within a bound on the mean error relative to the output range;
* the exported C equals the simulation bit for bit at every step, over stateful runs separated by
  resets (the testbench: float outputs, and the raw int8 ones);
* the C emits (``ernn_emitted``) exactly where the simulation and edgernn's float stream emit, a
  step that emits no row returns the last one again, and ``ernn_reset`` brings the state -- the
  rings of past inputs too -- back to what ``ernn_init`` made.

(The ir-built CNN models of tests/test_firmware.py cover the sanitizer builds, the Cortex-M cross
builds, the bad-argument tests and the fuzzer.)
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from test_conv_layers import randomize
from test_firmware import SCHEMES, WARN, build, c_sources, expected, run_testbench
from test_keras_import import keras, layers

import edgernn
from edgernn import ir
from edgernn.export import export

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

FEATURES = 3
MEAN, STD = np.array([50.0, -3.0, 0.5]), np.array([4.0, 0.5, 2.0])  # raw sensor-like inputs (Normalization)


def stacks():
    """Keras layers of each model (after Input((None, 3))): CNN-LSTMs and variants."""
    return {
        "cnn_lstm": [layers.Conv1D(8, 3, padding="causal", activation="relu"),
                     layers.Conv1D(8, 3, padding="valid", strides=2), layers.MaxPooling1D(2),
                     layers.LSTM(8, return_sequences=True), layers.Dense(3)],
        "normalized_dilated_bn": [layers.Normalization(mean=MEAN, variance=STD ** 2),
                                  layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu"),
                                  layers.BatchNormalization(),  # after an activation: not folded
                                  layers.AveragePooling1D(3, strides=2), layers.GRU(6, return_sequences=True),
                                  layers.Dense(3, activation="softmax")],
        "depthwise_global_average": [layers.DepthwiseConv1D(3, depth_multiplier=2, activation="tanh"),
                                     layers.SeparableConv1D(6, 2, dilation_rate=2), layers.LSTM(8, return_sequences=True),
                                     layers.GlobalAveragePooling1D(), layers.Dense(2)],
        "global_max": [layers.Conv1D(6, 2, padding="causal", activation="sigmoid"),
                       layers.SimpleRNN(6, return_sequences=True), layers.GlobalMaxPooling1D(), layers.Dense(3)],
    }


def inputs(key, seed, batch, steps):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, FEATURES))
    return (x * STD + MEAN if key.startswith("normalized") else x * 1.5 + 0.3).astype(np.float32)


def model_maker(tmp_path_factory, make):
    """key -> (keras model, edgernn model, {scheme: quantized}), made once from ``make(key)`` (a Keras
    model of inputs (batch, T, FEATURES)): random weights, saved, converted, calibrated on ``inputs``."""
    made = {}

    def get(key):
        if key not in made:
            keras_model = make(key)
            randomize(keras_model, seed=len(key))
            path = tmp_path_factory.mktemp(key) / "model.keras"
            keras_model.save(path)
            model = edgernn.convert(path)
            calibration = inputs(key, 1, batch=4, steps=80)
            made[key] = keras_model, model, {s: model.quantize(calibration, s) for s in SCHEMES}
        return made[key]

    return get


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return model_maker(tmp_path_factory, lambda key: keras.Sequential([keras.Input(shape=(None, FEATURES)),
                                                                      *stacks()[key]]))


KEYS = sorted(stacks())
# the bound on mean |simulation - Keras| / (output range) per scheme: int8 rounds every tensor
BOUNDS = {"int8": 0.03, "int8-weights": 0.01}


def assert_answers_keras(got, want, scheme):
    """The simulation's ``got`` against Keras's ``want``: float32 to float32 rounding, the int8 schemes
    within their bound; not vacuously (the int8 schemes differ somewhere)."""
    assert got.shape == want.shape
    if scheme == "float32":
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    else:
        relative = np.abs(got - want).mean() / (want.max() - want.min())
        assert relative < BOUNDS[scheme], relative
        assert np.abs(got - want).max() > 0


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", KEYS)
def test_simulation_answers_what_keras_answers(models, key, scheme):
    keras_model, model, quantized = models(key)
    x = inputs(key, 2, batch=3, steps=50)  # other data than the calibration's
    want = np.asarray(keras_model.predict(x, verbose=0))
    got = quantized[scheme].predict(x)
    assert_answers_keras(got, want, scheme)
    if key == "normalized_dilated_bn":  # the Normalization first, folded into the input; BatchNormalization a layer
        assert isinstance(model.spec.nodes[0].op, ir.Standardize) and quantized[scheme].spec.in_scale.size
        assert any(isinstance(node.op, ir.Affine) for node in model.spec.nodes)


def segments(key, seed):
    """Three stateful runs (45, 90 and 30 steps) separated by resets (a row of NaN), as arrays and rows."""
    parts = [inputs(key, seed + i, batch=1, steps=n)[0] for i, n in enumerate((45, 90, 30))]
    reset = np.full((1, FEATURES), np.nan, np.float32)
    return parts, np.concatenate([parts[0], reset, parts[1], reset, parts[2]])


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", KEYS)
def test_c_bit_exact_with_simulation(models, key, scheme, tmp_path):
    assert_exported_c_equals_simulation(models(key)[2][scheme], key, tmp_path)


def assert_exported_c_equals_simulation(qmodel, key, folder):
    """``qmodel`` exported into ``folder`` with its testbench, built with gcc, equals the simulation
    bit for bit over :func:`segments` of ``key``."""
    export(qmodel, folder, name="net", testbench=True)
    parts, rows = segments(key, seed=5)
    assert_testbench_equals_simulation(build(folder, "gcc"), qmodel, parts, rows)


def assert_testbench_equals_simulation(binary, qmodel, parts, rows):
    """The testbench's float outputs over ``rows`` equal the simulation's on ``parts`` bit for bit,
    and (int8) its raw int8 outputs too, not all alike."""
    outputs = qmodel.spec.outputs
    got = np.frombuffer(run_testbench(binary, rows), "<f4").reshape(-1, outputs)
    want = expected(qmodel, parts, int8=False)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))  # every bit
    if qmodel.scheme == "int8":
        raw = np.frombuffer(run_testbench(binary, rows, int8=True), np.int8).reshape(-1, outputs)
        np.testing.assert_array_equal(raw, expected(qmodel, parts, int8=True))
        assert len(np.unique(raw)) > 3


EMITTED_MAIN = r"""
#include <stdio.h>
#include <string.h>
#include "net_model.h"
/* Steps float rows from stdin, writes each step's ernn_emitted flag as one byte; at the end, resets
 * and writes 1 if the state equals, byte for byte, the state ernn_init made, else 0. */
static int32_t state[NET_STATE_WORDS], fresh[NET_STATE_WORDS], scratch[NET_SCRATCH_WORDS];
int main(void)
{
    float x[NET_INPUT_FEATURES], y[NET_OUTPUT_FEATURES];
    int32_t emitted;
    unsigned char flag;
    if (ernn_init(&net_model, state, sizeof state) != ERNN_OK) return 1;
    memcpy(fresh, state, sizeof state);
    if (ernn_emitted(&net_model, state, sizeof state, &emitted) != ERNN_OK || emitted != 0) return 1;
    while (fread(x, sizeof x, 1, stdin) == 1) {
        if (ernn_step_float(&net_model, state, sizeof state, scratch, sizeof scratch, x, sizeof x, y, sizeof y)
            != ERNN_OK || ernn_emitted(&net_model, state, sizeof state, &emitted) != ERNN_OK) return 1;
        flag = (unsigned char)emitted;
        fwrite(&flag, 1, 1, stdout);
    }
    if (memcmp(fresh, state, sizeof state) == 0) return 1; /* the steps changed the state */
    if (ernn_reset(&net_model, state, sizeof state) != ERNN_OK) return 1;
    flag = (unsigned char)(memcmp(fresh, state, sizeof state) == 0);
    fwrite(&flag, 1, 1, stdout);
    return 0;
}
"""


@pytest.mark.parametrize("scheme", ["int8", "float32"])
@pytest.mark.parametrize("key", KEYS)
def test_c_emits_where_the_streams_emit_and_reset_clears_the_rings(models, key, scheme, tmp_path):
    _, model, quantized = models(key)
    qmodel = quantized[scheme]
    export(qmodel, tmp_path, name="net")
    (tmp_path / "main.c").write_text(EMITTED_MAIN)
    binary = tmp_path / "emitted"
    done = subprocess.run(["gcc", *WARN, "-O2", "-I", str(tmp_path), "-o", str(binary), str(tmp_path / "main.c"),
                           *c_sources(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    x = inputs(key, 7, batch=1, steps=40)
    result = subprocess.run([str(binary)], input=x.astype("<f4").tobytes(), capture_output=True)
    assert result.returncode == 0
    flags = np.frombuffer(result.stdout, np.uint8)
    assert flags[-1] == 1  # reset: every byte of the state as ernn_init made it (rings, counters, h, c, last output)
    emitted = flags[:-1].astype(bool)
    simulated = qmodel.stream(1)
    simulated.run(x)
    float_stream = model.stream(1)
    float_stream.run(x)
    np.testing.assert_array_equal(emitted, simulated.emitted_run[0])
    np.testing.assert_array_equal(emitted, float_stream.emitted_run[0])
    if "global" not in key:  # a strided window: steps without a new row, which return the last row again
        assert 0 < emitted.sum() < len(emitted)
        y = simulated.model.stream(1).run(x)[0]
        held = np.flatnonzero(~emitted[1:]) + 1
        np.testing.assert_array_equal(y[held], y[held - 1])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_layer_norm_is_still_refused_naming_the_layer(scheme):
    """What the firmware has no version of (LayerNorm here, Pad1D, merges) is refused, named, in
    every scheme, while the convolutional front-end before it is accepted."""
    from test_firmware import chain

    model = chain([("conv", 4, 3, {"padding": "causal"}), ("lstm", 4, {}), ("dense", 2, "linear")], 3)
    nodes = list(model.spec.nodes)
    nodes.insert(1, ir.Node(ir.LayerNorm("my_norm", "layer", 1e-3), (nodes[0].outputs[0],), ("my_norm",)))
    nodes[2] = ir.Node(nodes[2].op, ("my_norm",), nodes[2].outputs)
    spec = ir.ModelSpec(model.spec.inputs, tuple(nodes), model.spec.outputs, {"format": "test"})
    problems = edgernn.quantize.supported_problems(spec, scheme)
    assert len(problems) == 1 and "'my_norm'" in problems[0] and "LayerNorm" in problems[0], problems
    assert edgernn.quantize.supported_problems(model.spec, scheme) == []


def test_simulated_stream_state_round_trips_and_resets_one_stream(models, tmp_path):
    """A quantized CNN stream's state (rings, counters, the last output and emitted flags) saved and
    loaded continues bit for bit; reset(i) makes stream i start over as a fresh stream."""
    _, _, quantized = models("cnn_lstm")
    qmodel = quantized["int8"]
    x = inputs("cnn_lstm", 9, batch=2, steps=30)
    stream = qmodel.stream(2)
    stream.run(x[:, :13])
    stream.save_state(tmp_path / "s.state")
    want = stream.run(x[:, 13:])
    again = qmodel.stream(2)
    again.load_state(tmp_path / "s.state")
    np.testing.assert_array_equal(again.run(x[:, 13:]), want)
    np.testing.assert_array_equal(again.emitted_run, stream.emitted_run)
    again.reset(1)
    fresh = qmodel.stream(1).run(x[1:, :11])
    np.testing.assert_array_equal(again.run(x[:, :11])[1], fresh[0])


# -- Flatten over a fixed window: the Flatten -> Dense the firmware steps as a valid Conv1D --------
WINDOW = 24  # the model's input length


@pytest.fixture(scope="module")
def window_model(tmp_path_factory):
    """A classifier over a fixed window (Conv1D valid -> MaxPooling1D -> Flatten -> Dense softmax):
    (keras model, edgernn model, {scheme: quantized})."""
    keras_model = keras.Sequential([keras.Input(shape=(WINDOW, FEATURES)), layers.Conv1D(6, 3, activation="relu"),
                                    layers.MaxPooling1D(2), layers.Flatten(), layers.Dense(4, activation="softmax")])
    randomize(keras_model, seed=3)
    path = tmp_path_factory.mktemp("window") / "model.keras"
    keras_model.save(path)
    model = edgernn.convert(path)
    calibration = inputs("window", 1, batch=4, steps=80)  # any length: every window of it
    return keras_model, model, {s: model.quantize(calibration, s) for s in SCHEMES}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_flatten_window_emits_keras_answer_on_every_window(window_model, scheme):
    """From reset, nothing is emitted until the window fills; from then on each emitted step answers
    what Keras answers on the window of the last WINDOW inputs (nothing before the Flatten carries
    state past a window here: a valid Conv1D and a pooling), at the pooling's stride."""
    keras_model, _, quantized = window_model
    qmodel = quantized[scheme]
    assert [layer.kind for layer in qmodel.spec.layers] == ["conv", "pool", "conv", "dense"]
    x = inputs("window", 2, batch=2, steps=40)
    stream = qmodel.stream(2)
    y = stream.run(x)
    emitted = stream.emitted_run[0]
    assert not emitted[: WINDOW - 1].any() and emitted[WINDOW - 1]
    steps = np.flatnonzero(emitted)
    np.testing.assert_array_equal(steps, np.arange(WINDOW - 1, 40, 2))  # MaxPooling1D(2): every other input
    windows = np.stack([x[:, t - WINDOW + 1 : t + 1] for t in steps], axis=1).reshape(-1, WINDOW, FEATURES)
    want = np.asarray(keras_model.predict(windows, verbose=0)).reshape(2, len(steps), -1)
    assert_answers_keras(y[:, steps], want, scheme)
    np.testing.assert_array_equal(qmodel.predict(x[:, :WINDOW]), y[:, WINDOW - 1])  # predict: the window's answer


@pytest.mark.parametrize("scheme", SCHEMES)
def test_flatten_window_c_bit_exact_with_simulation(window_model, scheme, tmp_path):
    qmodel = window_model[2][scheme]
    export(qmodel, tmp_path, name="net", testbench=True)
    parts, rows = segments("window", seed=5)
    assert_testbench_equals_simulation(build(tmp_path, "gcc"), qmodel, parts, rows)


def test_flatten_no_dense_reads_is_refused_naming_it(window_model):
    """A Flatten over time that is not the window a Dense alone reads (here: the model's output) is
    refused by name; the float model's stream refuses every Flatten over time."""
    _, model, _ = window_model
    nodes = model.spec.nodes[:-1]
    spec = model.spec.replace(nodes=nodes, outputs=(nodes[-1].outputs[0],))
    problems = edgernn.quantize.supported_problems(spec, "int8")
    assert len(problems) == 1 and f"{nodes[-1].op.name!r}" in problems[0] and "Flatten over time" in problems[0], problems
    with pytest.raises(edgernn.NotStreamable, match="Flatten"):
        model.stream(1)


def test_calibration_shorter_than_the_window_is_refused_naming_the_flatten(window_model):
    _, model, _ = window_model
    flatten = next(node.op.name for node in model.spec.nodes if isinstance(node.op, ir.Flatten))
    with pytest.raises(edgernn.InvalidInput, match=f"never fill the window of layer '{flatten}'.*{WINDOW} steps"):
        model.quantize(inputs("window", 1, batch=2, steps=WINDOW - 1), "int8")
