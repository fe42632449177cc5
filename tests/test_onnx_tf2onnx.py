"""ONNX files made by tf2onnx from Keras models, against Keras and onnxruntime.

tf2onnx rewrites a Keras LSTM (and a Keras 2 / tf-keras GRU with reset_after=True) into an ONNX
LSTM (GRU) node wrapped in Shape/Slice/Expand/Transpose ops, and a Dense on a sequence into a
Tensordot (a Reshape merging batch and time, MatMul, Add, a Reshape splitting them back). A Keras 3
GRU or SimpleRNN, a Keras 2 SimpleRNN or GRU(reset_after=False) and a Keras 3 TimeDistributed stay
Loops, which edgernn refuses, naming the operator and the route that works.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf2onnx = pytest.importorskip("tf2onnx")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")  # Keras 2, what tf2onnx's GRU rewriter knows

import onnx  # noqa: E402

import edgernn  # noqa: E402
from edgernn import errors  # noqa: E402
from edgernn.importers import onnx as onnx_importer  # noqa: E402

TOL = dict(atol=1e-5, rtol=1e-4)


def _export(model, path, features, batch=None, steps=None):
    spec = (tf.TensorSpec((batch, steps, features), tf.float32, name="x"),)

    @tf.function(input_signature=spec)
    def forward(x):
        return model(x)

    tf2onnx.convert.from_function(forward, input_signature=spec, opset=17, output_path=str(path))


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.4, size=w.shape).astype(np.float32) for w in model.get_weights()])


def _check(model, path, steps=9):
    """The conversion (verified against onnxruntime) equals Keras and onnxruntime, predict and stream."""
    converted = edgernn.convert(path)
    record = converted.spec.source["verification"]
    assert record["passed"] and record["framework"].startswith("onnxruntime"), record
    x = np.random.default_rng(1).normal(size=(4, steps, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    got = converted.predict(x)
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(got, onnx_importer.run_source(path, [x])[0], **TOL)
    return converted, x, want


def _sequence_model(k, cell, head, stacked=False):
    inputs = k.Input((None, 3))
    x = getattr(k.layers, cell)(6, return_sequences=True)(inputs)
    if stacked:  # a Dense between two recurrent layers, then the head
        x = k.layers.Dense(5, activation="relu")(x)
        x = getattr(k.layers, cell)(4, return_sequences=True)(x)
    dense = k.layers.Dense(2, activation="softmax" if stacked else "tanh")
    x = dense(x) if head == "dense" else k.layers.TimeDistributed(dense)(x)
    model = k.Model(inputs, x)
    _randomize(model, seed=len(cell) + stacked)
    return model


@pytest.mark.parametrize("flavour, cell, head, stacked", [
    ("keras", "LSTM", "dense", False),
    ("keras", "LSTM", "dense", True),
    ("tf_keras", "LSTM", "dense", False),
    ("tf_keras", "GRU", "dense", False),
    ("tf_keras", "GRU", "dense", True),
    ("tf_keras", "LSTM", "time_distributed", False),
    ("tf_keras", "GRU", "time_distributed", True),
])
def test_tf2onnx_dense_on_a_sequence(tmp_path, flavour, cell, head, stacked):
    """Dense (tf2onnx's Tensordot) and Keras 2 TimeDistributed(Dense) (a Reshape to (-1, features),
    MatMul, Add, a Reshape to (-1, T, units)) on every step: a Dense layer per step, streamable."""
    model = _sequence_model(keras if flavour == "keras" else tf_keras, cell, head, stacked)
    _export(model, tmp_path / "m.onnx", 3)
    converted, x, want = _check(model, tmp_path / "m.onnx")
    assert [type(n.op).__name__ for n in converted.spec.nodes].count("Dense") == 1 + stacked
    s = converted.stream(4)
    chunks = np.concatenate([s.run(x[:, :4]), s.run(x[:, 4:5]), s.run(x[:, 5:])], axis=1)
    np.testing.assert_allclose(chunks, want, **TOL)
    s.reset()
    np.testing.assert_allclose(np.stack([s.step(x[:, t]) for t in range(x.shape[1])], 1), want, **TOL)


def _dense_lstm_dense(flavour, head):
    """Dense -> LSTM -> Dense (or Keras 2 TimeDistributed(Dense)), all on the sequence."""
    k = keras if flavour == "keras" else tf_keras
    inputs = k.Input((None, 3))
    x = k.layers.Dense(5, activation="tanh")(inputs)
    x = k.layers.LSTM(4, return_sequences=True)(x)
    dense = k.layers.Dense(2, activation="softmax")
    model = k.Model(inputs, dense(x) if head == "dense" else k.layers.TimeDistributed(dense)(x))
    _randomize(model, seed=5)
    return model


def _refused(path):
    """The one problem edgernn's UnsupportedModel lists for the file."""
    with pytest.raises(errors.UnsupportedModel) as info:
        edgernn.convert(path)
    assert type(info.value) is errors.UnsupportedModel and len(info.value.problems) == 1, info.value
    return info.value.problems[0]


@pytest.mark.parametrize("flavour, head, batch, steps", [
    ("keras", "dense", 2, 7), ("keras", "dense", None, 7), ("tf_keras", "time_distributed", 2, None),
    ("tf_keras", "time_distributed", None, 7), ("tf_keras", "dense", 1, None), ("tf_keras", "dense", None, 1),
])
def test_tf2onnx_fixed_shapes(tmp_path, flavour, head, batch, steps):
    """Exported with a static batch size and/or time length, tf2onnx writes the Reshape targets as
    numbers ((14, 3) for 2 x 7 steps, (-1, 7, 2)), matched to the axes by their declared sizes; a
    Dense before the recurrent layer too. Verification runs at the declared sizes."""
    model = _dense_lstm_dense(flavour, head)
    _export(model, tmp_path / "m.onnx", 3, batch, steps)
    converted = edgernn.convert(tmp_path / "m.onnx")
    record = converted.spec.source["verification"]
    assert record["passed"] and "declared" in record["data"] and record["checks"][1]["passed"], record
    assert converted.spec.inputs[0].timesteps == steps and converted.spec.source.get("batch_size") == batch
    assert [type(n.op).__name__ for n in converted.spec.nodes] == ["Dense", "Recurrent", "Dense"]
    x = np.random.default_rng(2).normal(size=(3, 9, 3)).astype(np.float32)  # the converted model takes any
    np.testing.assert_allclose(converted.predict(x), model.predict(x, verbose=0), **TOL)


TIME_1_RESHAPE = r"Tensordot/Reshape' \(Reshape\): Reshape to size 3 where the batch or time axis stands$"


@pytest.mark.parametrize("flavour, head, batch, steps, problem", [
    # a static batch and a time length of 1: the Tensordot's (batch * 1, features) folds to (batch, 3),
    # which reads as the batch axis kept and the features put where the size-1 time axis stands
    ("tf_keras", "dense", 1, 1, TIME_1_RESHAPE),
    ("tf_keras", "dense", 2, 1, TIME_1_RESHAPE),
    ("keras", "dense", 2, 1, TIME_1_RESHAPE),
    # a batch of 1 and a static time length: tf2onnx writes the LSTM's input Transpose as a Reshape
    # to (7, 1, 5), read as the batch and time axes merged (1 x 7) and a new size-1 axis
    ("tf_keras", "dense", 1, 7, r"\(LSTM\) X: expected the time axis, found the merged batch and time axis$"),
    # Keras 2 TimeDistributed, a dynamic batch and a time length of 1: its Reshape back to
    # (-1, 1, 2) keeps the batch and time merged and adds a size-1 axis
    ("tf_keras", "time_distributed", None, 1, r"^graph output .* has the batch and time axes merged into one$"),
])
def test_tf2onnx_fixed_shapes_refused(tmp_path, flavour, head, batch, steps, problem):
    """The static sizes whose folded Reshape targets edgernn cannot match to the axes: refused at
    the node (one problem), not converted wrong. (A Keras 3 LSTM with a batch of 1 is a Loop, below.)"""
    _export(_dense_lstm_dense(flavour, head), tmp_path / "m.onnx", 3, batch, steps)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "LSTM" in ops and "Loop" not in ops, ops
    assert re.search(problem, _refused(tmp_path / "m.onnx"))


@pytest.mark.parametrize("steps", [None, 1, 7])
def test_tf2onnx_keras3_lstm_batch_of_one_is_a_loop(tmp_path, steps):
    """A Keras 3 LSTM exported with a batch size of 1 comes out of tf2onnx as a Loop (with a dynamic
    batch it is an LSTM node: the tests above); edgernn refuses it naming the Loop and the routes."""
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.LSTM(4, return_sequences=True)(inputs))
    _randomize(model, seed=6)
    _export(model, tmp_path / "m.onnx", 3, batch=1, steps=steps)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "Loop" in ops and "LSTM" not in ops, ops
    problem = _refused(tmp_path / "m.onnx")
    assert problem.startswith("node '") and "lstm" in problem and "' (Loop): operator Loop is not supported" in problem
    assert "Convert the .keras/.h5 file itself with edgernn, or export from tf-keras or PyTorch" in problem


@pytest.mark.parametrize("flavour, cell", [("keras", "LSTM"), ("tf_keras", "GRU"), ("tf_keras", "LSTM")])
def test_tf2onnx_bidirectional(tmp_path, flavour, cell):
    """Bidirectional: one bidirectional node whose zero initial states are two stacked fills; its
    final states are the forward direction's last step and the backward's first, concatenated."""
    k = keras if flavour == "keras" else tf_keras
    inputs = k.Input((None, 3))
    x = k.layers.Bidirectional(getattr(k.layers, cell)(4))(inputs)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(x))
    _randomize(model, seed=3)
    _export(model, tmp_path / "m.onnx", 3)
    converted, _, _ = _check(model, tmp_path / "m.onnx")
    assert type(converted.spec.nodes[0].op).__name__ == "Bidirectional"


def test_tf2onnx_keras2_gru_last_step(tmp_path):
    inputs = tf_keras.Input((None, 3))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(tf_keras.layers.GRU(5)(inputs)))
    _randomize(model, seed=4)
    _export(model, tmp_path / "m.onnx", 3)
    converted, x, want = _check(model, tmp_path / "m.onnx")
    assert converted.spec.nodes[0].op.reset_after  # linear_before_reset=1
    np.testing.assert_allclose(converted.stream(4).run(x)[:, -1], want, **TOL)


@pytest.mark.parametrize("last_sequences", [True, False])
def test_tf2onnx_lstm_stack(tmp_path, last_sequences):
    inputs = keras.Input((None, 3))
    x = keras.layers.LSTM(8, return_sequences=True)(inputs)
    x = keras.layers.LSTM(5, return_sequences=last_sequences)(x)
    model = keras.Model(inputs, x if last_sequences else keras.layers.Dense(2, activation="softmax")(x))
    _randomize(model, seed=int(last_sequences))
    _export(model, tmp_path / "m.onnx", 3)
    converted = edgernn.convert(tmp_path / "m.onnx")
    x = np.random.default_rng(1).normal(size=(4, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(converted.predict(x), model.predict(x, verbose=0), **TOL)
    np.testing.assert_allclose(converted.predict(x), onnx_importer.run_source(tmp_path / "m.onnx", [x])[0], **TOL)
    assert converted.spec.source["verification"]["passed"]
    streamed = converted.stream(4).run(x)
    np.testing.assert_allclose(streamed if last_sequences else streamed[:, -1], model.predict(x, verbose=0), **TOL)


@pytest.mark.parametrize("flavour, layer", [
    ("keras", lambda k: k.layers.GRU(4)),
    ("keras", lambda k: k.layers.SimpleRNN(4, return_sequences=True)),
    ("keras", lambda k: k.layers.TimeDistributed(k.layers.Dense(2))),
    ("tf_keras", lambda k: k.layers.SimpleRNN(4)),
    ("tf_keras", lambda k: k.layers.GRU(4, reset_after=False)),
])
def test_tf2onnx_loops_are_refused_by_name(tmp_path, flavour, layer):
    """tf2onnx leaves these as Loop nodes: one problem per Loop, naming it and the routes that work
    (nothing about the ops that only feed the loop)."""
    k = keras if flavour == "keras" else tf_keras
    inputs = k.Input((None, 3))
    x = k.layers.LSTM(3, return_sequences=True)(inputs)
    _export(k.Model(inputs, layer(k)(x)), tmp_path / "m.onnx", 3)
    with pytest.raises(edgernn.UnsupportedModel, match=r"operator Loop is not supported") as info:
        edgernn.convert(tmp_path / "m.onnx")
    assert len(info.value.problems) == 1 and ".keras/.h5 file itself" in info.value.problems[0]
