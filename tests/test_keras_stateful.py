"""Streams against live stateful Keras: chunks of different lengths, resets between chunks,
batch sizes 1, 4 and 400 -- at atol 1e-5 + rtol 1e-4."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

import edgernn  # noqa: E402

TOL = dict(atol=1e-5, rtol=1e-4)
FEATURES = 3


def _randomize(model, seed):
    """Random, non-saturating weights: small normal kernels and biases."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.35, size=w.shape).astype(np.float32) for w in model.get_weights()])


def _stateful_model(cell, batch, last_returns_sequences):
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple": keras.layers.SimpleRNN}[cell]
    model = keras.Sequential([
        keras.Input(batch_shape=(batch, None, FEATURES)),
        layer(6, return_sequences=True, stateful=True),
        layer(4, return_sequences=last_returns_sequences, stateful=True),
        keras.layers.Dense(2, activation="tanh"),
    ])
    _randomize(model, seed=hash((cell, batch)) % 1000)
    return model


def _reset_keras(model):
    for layer in model.layers:
        if hasattr(layer, "reset_states"):
            layer.reset_states()


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
@pytest.mark.parametrize("batch", [1, 4, 400])
@pytest.mark.parametrize("last_returns_sequences", [True, False])
def test_chunked_stateful_calls_match_keras(cell, batch, last_returns_sequences, tmp_path):
    model = _stateful_model(cell, batch, last_returns_sequences)
    path = tmp_path / "stateful.h5"
    model.save(path)
    converted = edgernn.convert(path)
    stream = converted.stream(batch_size=batch)
    rng = np.random.default_rng(batch)
    # chunk lengths, and whether both sides reset before the chunk
    plan = [(5, False), (1, False), (8, False), (3, True), (1, False), (6, True), (2, False)]
    for length, reset in plan:
        if reset:
            _reset_keras(model)
            stream.reset()
        x = rng.normal(size=(batch, length, FEATURES)).astype(np.float32)
        expected = np.asarray(model(x))
        ours = stream.run(x)
        # A stream gives every step's output; Keras without return_sequences gives the last one.
        np.testing.assert_allclose(ours if last_returns_sequences else ours[:, -1], expected, **TOL)


def test_stateful_model_streams_any_batch_size(tmp_path):
    """A stateful Keras model has a fixed batch size; the converted model does not."""
    model = _stateful_model("lstm", 4, True)
    path = tmp_path / "stateful.keras"
    model.save(path)
    converted = edgernn.convert(path)
    x = np.random.default_rng(0).normal(size=(4, 9, FEATURES)).astype(np.float32)
    expected = np.asarray(model(x))
    for batch in (1, 7):
        rows = np.resize(x, (batch, 9, FEATURES))
        ours = converted.stream(batch).run(rows)
        np.testing.assert_allclose(ours, np.resize(expected, (batch,) + expected.shape[1:]), **TOL)
    np.testing.assert_allclose(converted.predict(x), expected, **TOL)


def test_step_by_step_equals_keras_one_timestep_calls():
    """One sample per call, as a sensor loop does, against Keras called on (batch, 1, F) chunks."""
    model = _stateful_model("gru", 2, False)
    converted = edgernn.convert(model)
    stream = converted.stream(batch_size=2)
    x = np.random.default_rng(5).normal(size=(2, 20, FEATURES)).astype(np.float32)
    for t in range(20):
        np.testing.assert_allclose(stream.step(x[:, t]), np.asarray(model(x[:, t : t + 1])), **TOL)
