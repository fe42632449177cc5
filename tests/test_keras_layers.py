"""The layers around an RNN beyond the convolutional front-end (issue #16), and the IR's tracking
of sequence lengths: against live Keras 3 (.keras and .h5) and tf-keras (Keras 2 .h5, written in a
subprocess); the store round trip and hostile headers; refusals naming the layer.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_conv_layers import _rewrite, check, data, randomize, seq
from test_keras_import import ATOL, RTOL, keras, layers

import edgernn
from edgernn import ir
from edgernn.errors import InvalidInput, InvalidModelFile
from edgernn.graph import min_steps

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

T, F = 12, 3


def refused(path, error=InvalidModelFile) -> str:
    """The whole text (message and problems) of the error loading ``path`` raises."""
    with pytest.raises(error) as info:
        edgernn.load(path)
    return str(info.value) + " ".join(info.value.problems)


# --- sequence lengths and masks across the graph (the IR tracks T) ----------------------------------


def _conv(name, size=3, c_in=F, filters=4, **options):
    kernel = np.random.default_rng(len(name)).normal(size=(size, c_in, filters))
    return ir.Conv1D(name=name, kernel=ir.as_weight(kernel), **options)


def _gru(name, c_in, units=3, return_sequences=False):
    rng = np.random.default_rng(7)
    return ir.Recurrent(name=name, cell="gru", units=units, input_size=c_in,
                        kernel=ir.as_weight(rng.normal(size=(c_in, 3 * units))),
                        recurrent_kernel=ir.as_weight(rng.normal(size=(units, 3 * units))),
                        return_sequences=return_sequences)


def test_flatten_disagreeing_with_the_convs_refused(tmp_path):
    """A Flatten whose steps are not what the convolutions make of the fixed input length (the model's
    output, so that no later layer's shape gives it away)."""
    model = seq(layers.Conv1D(4, 3, strides=2), layers.Flatten(name="flat"))
    randomize(model).save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    assert m.spec.tensor_steps(m.spec.nodes[0].outputs[0]) == 5
    m.save(tmp_path / "ok.ernn")
    _rewrite(tmp_path / "ok.ernn", tmp_path / "bad.ernn", lambda h: h["nodes"][1]["op"].__setitem__("steps", 6))
    text = refused(tmp_path / "bad.ernn")
    assert "'flat' (Flatten) takes sequences of 6 timesteps here, gets 5" in text
    # the same Flatten after a variable-length input is checked when it runs, before anything runs
    _rewrite(tmp_path / "ok.ernn", tmp_path / "free.ernn", lambda h: h["inputs"][0].__setitem__("timesteps", None))
    free = edgernn.load(tmp_path / "free.ernn")
    np.testing.assert_array_equal(free.predict(data()), m.predict(data()))
    with pytest.raises(InvalidInput, match="'flat' .*gets 6"):
        free.predict(data(steps=T + 1))


def test_mask_across_a_conv_refused(tmp_path):
    """A hostile file whose LSTM reads a Masking mask across a Conv1D (Keras drops the mask there)."""
    model = seq(layers.Masking(0.0, name="masking"), layers.LSTM(3, name="lstm"))
    randomize(model).save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    assert m.spec.nodes[1].mask == "masking:mask"
    same = _conv("conv", padding="same", filters=F)
    nodes = (m.spec.nodes[0], ir.Node(same, ("masking",), ("conv",)),
             ir.Node(m.spec.nodes[1].op, ("conv",), ("lstm",), mask="masking:mask"))
    with pytest.raises(InvalidModelFile, match="'lstm' reads mask 'masking:mask' over another time axis"):
        m.spec.replace(nodes=nodes)
    # the same through a file: a valid model with the conv, its LSTM then pointed at the mask
    ok = m.spec.replace(nodes=nodes[:2] + (ir.Node(m.spec.nodes[1].op, ("conv",), ("lstm",)),))
    edgernn.Model(ok).save(tmp_path / "ok.ernn")
    _rewrite(tmp_path / "ok.ernn", tmp_path / "bad.ernn", lambda h: h["nodes"][2].__setitem__("mask", "masking:mask"))
    assert "over another time axis" in refused(tmp_path / "bad.ernn")
    edgernn.load(tmp_path / "ok.ernn")  # the unmodified file loads


def test_mask_through_a_sequence_rnn_is_valid():
    """A mask keeps its axis through a recurrent layer with return_sequences (Keras propagates it)."""
    masking = ir.Masking(name="masking")
    first = _gru("first", F, return_sequences=True)
    spec = ir.ModelSpec((ir.Input("x", F),), (
        ir.Node(masking, ("x",), ("m", "m:mask")),
        ir.Node(first, ("m",), ("first",), mask="m:mask"),
        ir.Node(_gru("second", 3), ("first",), ("second",), mask="m:mask")), ("second",))
    assert spec.tensor_steps("first") is None


@pytest.mark.parametrize("fixed", [True, False])
def test_conv_shrinking_t_to_nothing(fixed, tmp_path):
    """A fixed input too short for the convolutions is an invalid model; a variable one is refused at
    predict with one error naming the layer and the shortest length that works (not the zero state)."""
    conv, pool = _conv("conv", 3), ir.Pooling1D(name="pool", kind="max", pool_size=3, strides=2)
    nodes = (ir.Node(conv, ("x",), ("conv",)), ir.Node(pool, ("conv",), ("pool",)),
             ir.Node(_gru("gru", 4), ("pool",), ("gru",)))
    if fixed:
        with pytest.raises(InvalidModelFile, match="'pool' \\(Pooling1D\\) makes no timestep from its input's 2"):
            ir.ModelSpec((ir.Input("x", F, timesteps=4),), nodes, ("gru",))
        ir.ModelSpec((ir.Input("x", F, timesteps=5),), nodes, ("gru",))  # 5 -> 3 -> 1
        return
    m = edgernn.Model(ir.ModelSpec((ir.Input("x", F),), nodes, ("gru",)))
    assert min_steps(m.spec) == 5
    assert m.predict(data(steps=5)).shape == (4, 3)
    for steps in (1, 2, 4):
        with pytest.raises(InvalidInput) as info:
            m.predict(data(steps=steps))
        assert "'pool' (Pooling1D)" in str(info.value) or "'conv' (Conv1D)" in str(info.value)
        assert f"input 'x' has {steps} timesteps; this model needs at least 5" in str(info.value)
    with pytest.raises(InvalidInput, match="no timesteps"):  # an empty sequence keeps its own refusal
        m.predict(data(steps=0))


def test_min_steps_matches_keras_lengths(tmp_path):
    """The shortest length min_steps finds is the shortest live Keras runs (8 here: 2, 1, 1 steps)."""
    model = keras.Sequential([keras.Input(shape=(None, F)), layers.Conv1D(4, 4, dilation_rate=2),
                              layers.AveragePooling1D(2, strides=3), layers.Conv1D(2, 2, strides=2, padding="same")])
    randomize(model).save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    shortest = min_steps(m.spec)
    # Keras refuses one timestep less too (first: once traced on a dynamic length, TensorFlow lets
    # the pooling make an empty sequence)
    with pytest.raises(Exception, match="Negative dimension"):
        model.predict(data(steps=shortest - 1), verbose=0)
    x = data(steps=shortest)
    np.testing.assert_allclose(m.predict(x), model.predict(x, verbose=0), atol=ATOL, rtol=RTOL)
    with pytest.raises(InvalidInput, match=f"needs at least {shortest}"):
        m.predict(data(steps=shortest - 1))
