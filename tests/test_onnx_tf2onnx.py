"""ONNX files made by tf2onnx from Keras models, against Keras and onnxruntime.

tf2onnx rewrites a Keras LSTM into an ONNX LSTM node wrapped in Shape/Slice/Expand/Transpose ops;
a Keras 3 GRU stays a Loop, which edgernn refuses, naming the operators, rather than guess.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf2onnx = pytest.importorskip("tf2onnx")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import edgernn  # noqa: E402
from edgernn.importers import onnx as onnx_importer  # noqa: E402

TOL = dict(atol=1e-5, rtol=1e-4)


def _export(model, path, features):
    spec = (tf.TensorSpec((None, None, features), tf.float32, name="x"),)

    @tf.function(input_signature=spec)
    def forward(x):
        return model(x)

    tf2onnx.convert.from_function(forward, input_signature=spec, opset=17, output_path=str(path))


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.4, size=w.shape).astype(np.float32) for w in model.get_weights()])


@pytest.mark.parametrize("last_sequences", [True, False])
def test_tf2onnx_lstm_stack(tmp_path, last_sequences):
    inputs = keras.Input((None, 3))
    x = keras.layers.LSTM(8, return_sequences=True)(inputs)
    x = keras.layers.LSTM(5, return_sequences=last_sequences)(x)
    # A Dense on the last step only: on a sequence tf2onnx writes it as a Tensordot (Gather of the
    # shape, a Reshape merging batch and time), which the ONNX importer does not follow yet.
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


def test_tf2onnx_loop_is_refused_by_name(tmp_path):
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.GRU(4)(inputs))
    _export(model, tmp_path / "gru.onnx", 3)
    with pytest.raises(edgernn.UnsupportedModel, match=r"operator \w+ is not supported"):
        edgernn.convert(tmp_path / "gru.onnx")
