"""The quantization pass and its Numba simulation: fixed-point primitives against exact arithmetic,
the activation tables' error bounds, error against the float model, the Model-like API of a
quantized model, and clear refusals of what the firmware export does not support."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numba import njit

import edgernn
from edgernn import examples, ir
from edgernn.errors import InvalidInput, UnsupportedModel
from edgernn.quantize import fixedpoint as fx
from edgernn.quantize.activations import TABLE_FUNCTIONS, f_activate_row, f_exp, f_tanh
from test_firmware import MODELS, chain, data, vocab_of

# Measured maximum |table(x) - f(x)| over every Q3.12 input (docs/firmware.md quotes these).
TABLE_BOUNDS = {"sigmoid": 7e-5, "tanh": 4e-4, "hard_sigmoid": 5e-5, "hard_sigmoid_keras2": 5e-5,
                "hard_tanh": 4e-5, "softsign": 9e-4}


@njit
def _requant_many(x, m, n):
    out = np.empty(x.shape[0], np.int64)
    for i in range(x.shape[0]):
        out[i] = fx.requant(x[i], m[i], n[i])
    return out


@njit
def _lut_all(table):
    out = np.empty(65536, np.int64)
    for i in range(65536):
        out[i] = fx.lut(i - 32768, table)
    return out


def test_requant_is_one_rounding_of_the_exact_product():
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 31), 1 << 31, 2000)
    m = rng.integers(0, 1 << 31, 2000)
    n = rng.integers(1, 63, 2000)
    got = _requant_many(x, m, n)
    for xi, mi, ni, g in zip(x.tolist(), m.tolist(), n.tolist(), got.tolist()):
        exact = (xi * mi + (1 << (ni - 1))) >> ni  # Python ints: exact floor
        assert g == max(-(1 << 31), min((1 << 31) - 1, exact))


@pytest.mark.parametrize("real", [1e-12, 3.1e-7, 2.0 ** -30, 0.0037, 0.5, 0.99999999, 1.0, 7.3, 12345.6])
def test_multiplier_is_accurate(real):
    m, n = fx.multiplier(real)
    assert 0 < m < 1 << 31 and 1 <= n <= 62
    assert abs(m * 2.0 ** -n - real) <= real * 2.0 ** -30 + 2.0 ** -63


def test_multiplier_refuses_too_large():
    with pytest.raises(ValueError):
        fx.multiplier(2.0 ** 31)


@pytest.mark.parametrize("name", sorted(TABLE_FUNCTIONS))
def test_activation_tables_error_bound(name):
    x = (np.arange(65536) - 32768) / 4096.0
    values = _lut_all(fx.table(TABLE_FUNCTIONS[name])) / 32768.0
    assert np.abs(values - TABLE_FUNCTIONS[name](x)).max() <= TABLE_BOUNDS[name]


def test_float_activations_are_accurate():
    v = np.linspace(-20, 20, 20001).astype(np.float32)
    tanh = np.array([f_tanh(t) for t in v], np.float64)
    assert np.abs(tanh - np.tanh(v.astype(np.float64))).max() < 1e-6
    v = np.linspace(-87, 88, 20001).astype(np.float32)
    exp = np.array([f_exp(t) for t in v], np.float64)
    assert np.abs(exp / np.exp(v.astype(np.float64)) - 1).max() < 5e-7
    row = np.array([1.0, 2.0, -3.0, 1000.0], np.float32)
    f_activate_row(9, row)
    assert abs(row.sum() - 1) < 1e-6 and row.argmax() == 3


# -- error against the float model -------------------------------------------------------------

@pytest.fixture(scope="module")
def example():
    model = edgernn.convert(str(examples.path()))
    trace = np.loadtxt(examples.path("basicmotions_trace.csv"), delimiter=",", skiprows=6, dtype=np.float32)
    return model, trace.reshape(4, 100, 6)


@pytest.mark.parametrize("scheme, mean_bound, max_bound, agreement",
                         [("int8", 0.01, 0.5, 0.97), ("int8-weights", 0.002, 0.1, 0.99), ("float32", 1e-6, 1e-5, 1.0)])
def test_example_model_error_is_bounded(example, scheme, mean_bound, max_bound, agreement):
    model, x = example
    qmodel = model.quantize(x, scheme)
    y, reference = qmodel.predict(x), model.predict(x)
    error = np.abs(y - reference)
    assert error.mean() < mean_bound and error.max() < max_bound
    assert np.mean(y.argmax(-1) == reference.argmax(-1)) >= agreement
    assert [r["layer"] for r in qmodel.report] == ["lstm", "activity"]
    assert all(r["max_abs_error"] >= r["mean_abs_error"] >= 0 for r in qmodel.report)


@pytest.mark.parametrize("key", sorted(MODELS))
def test_random_models_int8_error_is_bounded(key):
    features, layers = MODELS[key]
    model = chain(layers, features, seed=len(key))
    x = data(features, seed=1, vocab=vocab_of(key))
    reference = model.predict(x)
    spread = float(reference.max() - reference.min()) or 1.0
    for scheme, bound in (("int8", 0.05), ("int8-weights", 0.02), ("float32", 1e-5)):
        y = model.quantize(x, scheme).predict(x)
        assert np.abs(y - reference).mean() <= bound * spread, scheme


# -- the Model-like API ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["int8", "float32"])
def quantized(request):
    model = chain(MODELS["stacked"][1], 6, seed=4)
    return model.quantize(data(6, seed=1), request.param)


def test_step_run_and_predict_agree(quantized):
    x = data(6, seed=7, steps=20, batch=3)
    stream = quantized.stream(3)
    stepped = np.stack([stream.step(x[:, t]) for t in range(20)], axis=1)
    np.testing.assert_array_equal(stepped, quantized.predict(x))
    again = quantized.stream(3)
    np.testing.assert_array_equal(np.concatenate([again.run(x[:, :7]), again.run(x[:, 7:])], axis=1), stepped)


def test_reset_one_stream_and_state_round_trip(quantized):
    x = data(6, seed=8, steps=30, batch=3)
    stream = quantized.stream(3)
    stream.run(x[:, :15])
    snapshot = stream.get_state()
    tail = stream.run(x[:, 15:])
    stream.set_state(snapshot)
    np.testing.assert_array_equal(stream.run(x[:, 15:]), tail)
    stream.set_state(snapshot)
    stream.reset(1)
    after = stream.run(x[:, 15:])
    np.testing.assert_array_equal(after[[0, 2]], tail[[0, 2]])
    np.testing.assert_array_equal(after[1], quantized.predict(x[1:2, 15:])[0])
    bad = dict(snapshot)
    bad.pop(next(iter(bad)))
    with pytest.raises(InvalidInput, match="missing"):
        stream.set_state(bad)
    with pytest.raises(InvalidInput):
        stream.reset(3)


def test_int8_raw_interface(quantized):
    x = data(6, seed=9, steps=10, batch=2)
    stream = quantized.stream(2)
    if quantized.scheme != "int8":
        with pytest.raises(InvalidInput, match="int8"):
            stream.step_int8(np.zeros((2, 6), np.int8))
        return
    xq = quantized.quantize_input(x)
    assert xq.dtype == np.int8
    yq = stream.run_int8(xq)
    assert yq.dtype == np.int8
    np.testing.assert_array_equal(quantized.dequantize_output(yq), quantized.predict(x))
    stream.reset()
    np.testing.assert_array_equal(stream.step_int8(xq[:, 0]), yq[:, 0])
    with pytest.raises(InvalidInput, match="int8"):
        stream.run_int8(xq.astype(np.int16))
    state = stream.get_state()
    assert state["l0/h"].dtype == np.int8 and state["l0/c"].dtype == np.int16


def test_last_step_output_when_the_model_returns_one_vector():
    model = chain([("gru", 5, {}), ("dense", 3, "linear")], 4, return_sequences=False)
    x = data(4, seed=3, steps=12, batch=2)
    qmodel = model.quantize(x, "int8")
    y = qmodel.predict(x)
    assert y.shape == (2, 3)
    np.testing.assert_array_equal(y, qmodel.stream(2).run(x)[:, -1])
    assert np.abs(y - model.predict(x)).max() < 0.1


def test_quantize_input_rounding_and_saturation():
    model = chain([("lstm", 3, {}), ("dense", 2, "linear")], 2)
    qmodel = model.quantize(data(2, seed=1), "int8")
    s, zp = qmodel.spec.s_in, qmodel.spec.zp_in
    q = qmodel.quantize_input(np.array([[0.0, 1e9], [-1e9, np.nan], [s * 0.5, -s * 0.5]], np.float32))
    assert q[0, 0] == zp and q[0, 1] == 127 and q[1, 0] == -128 and q[1, 1] == zp
    assert q[2, 0] == zp + 1 and q[2, 1] == zp  # floor(v + 1/2): halves round up


# -- refusals ----------------------------------------------------------------------------------------

def _lstm_with(**options):
    rng = np.random.default_rng(0)
    w = lambda *s: ir.as_weight(rng.normal(size=s))  # noqa: E731
    out = options["projection"].shape[1] if "projection" in options else 3
    return ir.Recurrent("rnn", "lstm", 3, 2, w(2, 12), w(out, 12), w(12), return_sequences=True, **options)


@pytest.mark.parametrize("options, words", [
    ({"peephole": np.zeros((3, 3), np.float32)}, "peephole"),
    ({"projection": np.zeros((3, 2), np.float32)}, "projection"),
    ({"cell_clip": 3.0}, "cell_clip"),
    ({"activation": "relu"}, "activation 'relu'"),
    ({"recurrent_activation": "tanh"}, "recurrent_activation 'tanh'"),
])
def test_unsupported_options_are_refused_by_name(options, words):
    spec = ir.ModelSpec((ir.Input("x", 2),), (ir.Node(_lstm_with(**options), ("x",), ("y",)),), ("y",))
    with pytest.raises(UnsupportedModel, match="layer 'rnn'") as info:
        edgernn.Model(spec).quantize(np.zeros((1, 5, 2)), "int8")
    assert words in str(info.value)


def test_float_schemes_take_what_int8_refuses():
    spec = ir.ModelSpec((ir.Input("x", 2),), (ir.Node(_lstm_with(activation="relu"), ("x",), ("y",)),), ("y",))
    model = edgernn.Model(spec)
    x = np.random.default_rng(1).normal(size=(2, 8, 2)).astype(np.float32)
    assert np.abs(model.quantize(x, "float32").predict(x) - model.predict(x)).max() < 1e-5
    assert model.quantize(None, "float32").report == []


def test_unsupported_layers_and_structures():
    lstm = _lstm_with()
    masked = ir.ModelSpec((ir.Input("x", 2),), (ir.Node(ir.Dense("d", np.eye(2, dtype=np.float32)), ("x",), ("h",)),
                                                ir.Node(ir.Masking("mask"), ("h",), ("m", "k")),
                                                ir.Node(lstm, ("m",), ("y",), mask="k")), ("y",))
    with pytest.raises(UnsupportedModel, match="'mask': Masking is supported as the first layer only"):
        edgernn.Model(masked).quantize(np.zeros((1, 4, 2)))
    backward = dataclasses.replace(lstm, name="back", go_backwards=True)
    bidir = ir.ModelSpec((ir.Input("x", 2),), (ir.Node(ir.Bidirectional("bi", lstm, backward), ("x",), ("y",)),), ("y",))
    with pytest.raises(UnsupportedModel, match="Bidirectional"):
        edgernn.Model(bidir).quantize(np.zeros((1, 4, 2)))
    head = ir.ModelSpec((ir.Input("x", 2),), (ir.Node(lstm, ("x",), ("h",)),
                                              ir.Node(ir.Dense("out", np.ones((3, 2), np.float32), None, "log_softmax"),
                                                      ("h",), ("y",))), ("y",))
    with pytest.raises(UnsupportedModel, match="layer 'out': activation 'log_softmax'"):
        edgernn.Model(head).quantize(np.zeros((1, 4, 2)))
    with pytest.raises(UnsupportedModel, match="unknown scheme"):
        edgernn.Model(head).quantize(np.zeros((1, 4, 2)), "int4")


def test_calibration_data_is_checked():
    model = chain([("lstm", 3, {}), ("dense", 2, "linear")], 2)
    with pytest.raises(InvalidInput, match="calibration"):
        model.quantize(np.zeros((4, 3)))
    with pytest.raises(InvalidInput, match="NaN"):
        model.quantize(np.full((4, 2), np.nan))
    with pytest.raises(InvalidInput, match="needs calibration"):
        model.quantize(None, "int8")
    assert model.quantize(np.zeros((5, 2)), "int8").predict(np.zeros((1, 3, 2))).shape == (1, 3, 2)


def test_masking_keeps_state_on_masked_steps():
    """A Masking(0.0) first layer: masked steps leave every masked layer's state and output unchanged,
    as in the float model; int8 close to it, float32 within float rounding."""
    model = chain(MODELS["masked"][1], 3, seed=2)
    x = data(3, seed=4, steps=40, batch=3)
    x[:, 10:15] = 0.0
    reference = model.predict(x)
    assert np.abs(model.quantize(x, "float32").predict(x) - reference).max() < 1e-5
    qmodel = model.quantize(x, "int8")
    y = qmodel.predict(x)
    assert np.abs(y - reference).mean() < 0.05
    stream = qmodel.stream(3)
    stream.run(x[:, :10])
    before = stream.get_state()
    stream.run(x[:, 10:15])
    after = stream.get_state()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


def test_sizes_beyond_int32_accumulators_are_refused():
    lstm = _lstm_with()
    wide = ir.ModelSpec((ir.Input("x", 2),), (ir.Node(lstm, ("x",), ("h",)),
                                              ir.Node(ir.Dense("out", np.ones((3, 3000), np.float32), None, "softmax"),
                                                      ("h",), ("y",))), ("y",))
    with pytest.raises(UnsupportedModel, match="layer 'out': int8 softmax over more than 2047"):
        edgernn.Model(wide).quantize(np.zeros((1, 4, 2)))
    assert edgernn.Model(wide).quantize(None, "float32").spec.outputs == 3000
