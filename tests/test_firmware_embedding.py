"""Embedding in the firmware: models of integer codes (``Input(dtype="int32") -> Embedding``, with and
without ``mask_zero``) made in live Keras 3, quantized and exported in every scheme.

* the simulation (``Model.quantize``) answers what Keras's ``predict`` answers on codes: float32 to
  float32 rounding, int8-weights and int8 within a bound on the mean error relative to the output range;
* the exported C equals the simulation bit for bit at every step (the code as ``ernn_step_float``'s
  input, and ``ernn_step_code``'s raw int8 outputs), over stateful runs separated by resets, code 0
  masking the recurrent layer's step with ``mask_zero``;
* a code out of ``[0, vocab)`` is refused: in C with ERNN_ERR_CODE, nothing written
  (``firmware_export/tests/test_status.c`` on these models, with every other bad argument, under
  ASan/UBSan), in Python with one InvalidInput naming the layer, the stream's state untouched.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from test_conv_layers import randomize
from test_firmware_conv import assert_answers_keras, assert_testbench_equals_simulation
from test_firmware import SCHEMES, build
from test_firmware_hostile import C_TESTS, SANITIZE, compile_c
from test_keras_import import keras, layers

import edgernn
from edgernn.errors import InvalidInput
from edgernn.export import export

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

VOCAB, DIM = 12, 6


def stacks():
    """Keras layers of each model after Input((None,), int32): Embedding(12, 6) and a recurrent head."""
    return {
        "lstm_last": [layers.Embedding(VOCAB, DIM), layers.LSTM(8), layers.Dense(3)],
        "lstm_mask_zero": [layers.Embedding(VOCAB, DIM, mask_zero=True), layers.LSTM(8, return_sequences=True),
                           layers.Dense(3)],
        "gru_mask_zero": [layers.Embedding(VOCAB, DIM, mask_zero=True), layers.GRU(8), layers.Dense(3, activation="softmax")],
    }


def codes(seed, batch, steps):
    """Codes in [0, VOCAB), one in five 0 (masked with mask_zero)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, size=(batch, steps))
    x[rng.random(x.shape) < 0.2] = 0
    return x.astype(np.int32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """key -> (keras model, edgernn model, {scheme: quantized}) made once."""
    made = {}

    def get(key):
        if key not in made:
            keras_model = keras.Sequential([keras.Input(shape=(None,), dtype="int32"), *stacks()[key]])
            randomize(keras_model, seed=len(key))
            table = keras_model.layers[0]
            table.set_weights([table.get_weights()[0] * 5.0])  # vectors of order 1
            path = tmp_path_factory.mktemp(key) / "model.keras"
            keras_model.save(path)
            model = edgernn.convert(path)
            calibration = codes(1, batch=4, steps=60)
            made[key] = keras_model, model, {s: model.quantize(calibration, s) for s in SCHEMES}
        return made[key]

    return get


KEYS = sorted(stacks())


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", KEYS)
def test_simulation_answers_what_keras_answers(models, key, scheme):
    keras_model, model, quantized = models(key)
    x = codes(2, batch=3, steps=40)  # other codes than the calibration's
    want = np.asarray(keras_model.predict(x, verbose=0))
    got = quantized[scheme].predict(x)
    assert_answers_keras(got, want, scheme)  # the bounds of the CNN models
    # the stream, step by step on codes (batch, 1), continues as predict does
    stream = quantized[scheme].stream(3)
    steps = np.stack([stream.step(x[:, t:t + 1]) for t in range(x.shape[1])], axis=1)
    np.testing.assert_array_equal(steps[:, -1] if got.ndim == 2 else steps, got)


def test_mask_zero_skips_the_recurrent_step_in_every_scheme(models):
    """Code 0 with mask_zero: the LSTM's state is kept and its output repeated, as the float stream does."""
    _, model, quantized = models("lstm_mask_zero")
    x = np.array([[3, 0, 0, 5, 0, 7]], np.int32)
    for scheme in SCHEMES:
        layer_out = quantized[scheme].layer_outputs(x)[1][0]  # the LSTM's
        np.testing.assert_array_equal(layer_out[1], layer_out[0])
        np.testing.assert_array_equal(layer_out[2], layer_out[0])
        np.testing.assert_array_equal(layer_out[4], layer_out[3])
        assert np.abs(layer_out[3] - layer_out[0]).max() > 0
    np.testing.assert_allclose(quantized["float32"].predict(x), model.predict(x), atol=1e-5, rtol=1e-4)


def segments(seed):
    """Three stateful runs (45, 90 and 30 steps) separated by resets (a NaN row), as codes and as rows."""
    parts = [codes(seed + i, batch=1, steps=n)[0] for i, n in enumerate((45, 90, 30))]
    reset = np.full((1, 1), np.nan, np.float32)
    rows = np.concatenate([parts[0][:, None], reset, parts[1][:, None], reset, parts[2][:, None]]).astype(np.float32)
    return [part[:, None] for part in parts], rows


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", KEYS)
def test_c_bit_exact_with_simulation(models, key, scheme, tmp_path):
    _, _, quantized = models(key)
    qmodel = quantized[scheme]
    assert qmodel.spec.features == 1 and qmodel.spec.vocab == VOCAB
    export(qmodel, tmp_path, name="net", testbench=True)
    binary = build(tmp_path, "gcc")
    parts, rows = segments(seed=5)
    assert_testbench_equals_simulation(binary, qmodel, parts, rows)  # float and (int8) ernn_step_code's raw outputs
    outputs = qmodel.spec.outputs
    # a bad code stops the testbench with the status, after the good rows before it
    result = subprocess.run([str(binary)], input=np.array([[2.0], [float(VOCAB)]], "<f4").tobytes(), capture_output=True)
    assert result.returncode == 1 and b"ernn error -8" in result.stderr
    assert len(result.stdout) == 4 * outputs


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_bad_argument_and_bad_code_has_its_status(models, scheme, tmp_path):
    """test_status.c on a model of codes, under ASan/UBSan: ernn_step_code's and ernn_step_float's
    bad codes are ERNN_ERR_CODE, ernn_step_int8 and ernn_quantize_input ERNN_ERR_SCHEME, nothing written."""
    _, _, quantized = models("lstm_mask_zero")
    export(quantized[scheme], tmp_path, name="net")
    binary = tmp_path / "test_status"
    compile_c("clang", tmp_path, C_TESTS / "test_status.c", binary, *SANITIZE)
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "0 failed\n", result.stdout + result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bad_code_refused_in_python_state_untouched(models, scheme):
    _, _, quantized = models("gru_mask_zero")
    qmodel = quantized[scheme]
    stream = qmodel.stream(2)
    stream.run(codes(3, batch=2, steps=5))
    before = stream.get_state()
    for bad in (np.array([[1], [VOCAB]]), np.array([[-1], [2]]), np.array([[2.5], [1]]), np.array([[np.nan], [1]])):
        with pytest.raises(InvalidInput, match="'embedding") as info:
            stream.step(bad)
        assert f"[0, {VOCAB})" in str(info.value)
        for name, value in stream.get_state().items():
            np.testing.assert_array_equal(value, before[name])
    with pytest.raises(InvalidInput, match=r"\(batch=2, 1\)"):
        stream.step(np.array([1, 2]))
    with pytest.raises(InvalidInput, match="integer codes"):
        qmodel.predict(np.ones((1, 4, 1), np.float32))
    with pytest.raises(InvalidInput, match=f"\\[0, {VOCAB}\\)"):
        qmodel.predict(np.array([[1, 2, VOCAB + 3]]))
    if scheme == "int8":
        with pytest.raises(InvalidInput, match="integer codes"):
            qmodel.quantize_input(np.ones((1, 3, 1)))
        with pytest.raises(InvalidInput, match=f"\\[0, {VOCAB}\\)"):
            stream.step_int8(np.array([[0], [VOCAB]]))
    with pytest.raises(InvalidInput, match=f"\\[0, {VOCAB}\\)"):
        qmodel.float_model.quantize(np.array([[1, 2, VOCAB]]), scheme)  # calibration codes are checked too
