"""Graphs that fork and merge in the firmware (Add, Subtract, Average, Multiply, Maximum, Minimum,
Concatenate over features):
models made in live Keras 3, quantized and exported in every scheme.

* the simulation answers what Keras's ``predict`` answers: float32 to float32 rounding, the int8
  schemes within a bound on the mean error relative to the output range;
* calibration records the merges' ranges, and each int8 merge its own output scale;
* the exported C equals the simulation bit for bit at every step, over stateful runs separated by
  resets, with a branch kept in a slot of the scratch until its merge reads it.

(The ir-built graphs of tests/test_firmware.py cover the sanitizer builds, the Cortex-M cross
builds, the bad-argument tests and the fuzzer.)
"""

from __future__ import annotations

import numpy as np
import pytest
from test_firmware import SCHEMES, chain
from test_firmware_conv import FEATURES, assert_answers_keras, assert_exported_c_equals_simulation, inputs, model_maker
from test_keras_import import keras, layers

import edgernn
from edgernn.export import layout

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def residual_lstm(x):
    """LSTM(16) -> LSTM(16) -> Add with the first -> Dense."""
    first = layers.LSTM(16, return_sequences=True)(x)
    second = layers.LSTM(16, return_sequences=True)(first)
    return layers.Dense(3)(layers.Add()([first, second]))


def parallel_convolutions(x):
    """Two causal Conv1D branches of the input, concatenated over features -> LSTM -> Dense."""
    a = layers.Conv1D(8, 3, padding="causal", activation="relu")(x)
    b = layers.Conv1D(6, 2, padding="causal", dilation_rate=2)(x)
    return layers.Dense(3)(layers.LSTM(8, return_sequences=True)(layers.Concatenate()([a, b])))


def subtract_average(x):
    """A GRU, a Dense of it, their difference, and the average of that with a SimpleRNN of it."""
    h = layers.GRU(6, return_sequences=True)(x)
    d = layers.Subtract()([layers.Dense(6, activation="tanh")(h), h])
    return layers.Dense(2)(layers.Average()([d, layers.SimpleRNN(6, return_sequences=True)(d)]))


def products(x):
    """A gated recurrent stack: an LSTM times a sigmoid Dense of it (a gate), the Maximum of that and a
    GRU of it, the Minimum of that and the gate."""
    h = layers.LSTM(6, return_sequences=True)(x)
    gate = layers.Dense(6, activation="sigmoid")(h)
    gated = layers.Multiply()([h, gate])
    top = layers.Maximum()([gated, layers.GRU(6, return_sequences=True)(gated)])
    return layers.Dense(2)(layers.Minimum()([top, gate]))


def three_way(x):
    """An LSTM, a GRU and a Dense of the input: their Add, their Average and the Concatenate of those
    and the Dense (merges of three tensors, stepped as pairs: edgernn/quantize/pairwise.py)."""
    a = layers.LSTM(5, return_sequences=True)(x)
    b = layers.GRU(5, return_sequences=True)(x)
    c = layers.Dense(5, activation="tanh")(x)
    joined = layers.Concatenate()([layers.Add()([a, b, c]), layers.Average()([a, b, c]), c])
    return layers.Dense(2)(joined)


GRAPHS = {"residual_lstm": residual_lstm, "parallel_convolutions": parallel_convolutions,
          "subtract_average": subtract_average, "products": products, "three_way": three_way}


def functional(key):
    x = keras.Input(shape=(None, FEATURES))
    return keras.Model(x, GRAPHS[key](x))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return model_maker(tmp_path_factory, functional)


KEYS = sorted(GRAPHS)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", KEYS)
def test_simulation_answers_what_keras_answers(models, key, scheme):
    keras_model, _, quantized = models(key)
    x = inputs(key, 2, batch=3, steps=50)  # other data than the calibration's
    assert_answers_keras(quantized[scheme].predict(x), np.asarray(keras_model.predict(x, verbose=0)), scheme)
    assert any(layer.kind == "merge" for layer in quantized[scheme].spec.layers)


@pytest.mark.parametrize("key", KEYS)
def test_calibration_covers_the_merges(models, key):
    """Each int8 merge has the scale of its own calibrated range (not an input's), and the report
    measures its error against the float model."""
    _, model, quantized = models(key)
    qmodel = quantized["int8"]
    merges = [layer for layer in qmodel.spec.layers if layer.kind == "merge"]
    report = {row["layer"]: row for row in qmodel.report}
    for layer in merges:
        low, high = report[layer.name]["float_range"]
        assert layer.s_out == pytest.approx((max(high, 0) - min(low, 0)) / 255)
        assert report[layer.name]["mean_abs_error"] < 0.02 * (high - low)
        assert len(layer.mx) == 2 and min([layer.mo] if layer.merge == "multiply" else layer.mx) > 0


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", KEYS)
def test_c_bit_exact_with_simulation(models, key, scheme, tmp_path):
    assert_exported_c_equals_simulation(models(key)[2][scheme], key, tmp_path)


def test_only_a_branch_read_later_gets_a_slot(models):
    """The residual stack keeps the first LSTM's output (read by the Add two layers on); the chain
    layers use the two buffers of a chain, and a chain model has no slot at all."""
    _, _, quantized = models("residual_lstm")
    assert layout(quantized["int8"]).slot[1:] == [0, 0, 0] and layout(quantized["int8"]).slot[0] > 0
    _, _, branches = models("parallel_convolutions")
    assert [s > 0 for s in layout(branches["float32"]).slot] == [True, False, False, False, False]


def test_a_folded_normalization_read_twice_is_refused_naming_it():
    """A Normalization first is folded into the input's quantization, which one layer reads: two
    branches of it are refused by name, in every scheme (the same graph without it is accepted)."""
    branches = [("conv", 4, 2, {"padding": "causal"}), ("from", 0), ("conv", 3, 3, {"padding": "causal"}),
                ("merge", "concat", 1, 3), ("dense", 2, "linear")]
    normalized = chain([("norm",)] + branches, 3)
    plain = chain(branches[:1] + [("from", -1)] + branches[2:3] + [("merge", "concat", 0, 2), branches[4]], 3)
    for scheme in SCHEMES:
        problems = edgernn.quantize.supported_problems(normalized.spec, scheme)
        assert problems == ["layer 'l0' (a Normalization first, folded into the input) is read by 2 layers "
                            "(l1, l3): the firmware runtime takes one"]
        assert edgernn.quantize.supported_problems(plain.spec, scheme) == []
