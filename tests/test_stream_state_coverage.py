"""Every streamable front-end layer of issue #16 in one Keras 3 graph, stepped across reset(i),
get/set_state and save/load_state (the coverage matrix in docs/coverage.md points here for the
layers that the other stream tests step only from a fresh state).

The graph: Normalization -> DepthwiseConv1D, SeparableConv1D, a grouped Conv1D with a folded
BatchNormalization side by side (valid windows), merged by Subtract, Multiply, Average, Maximum,
Minimum and Concatenate -> AveragePooling1D -> Activation + BatchNormalization (an Affine) ->
LayerNormalization -> LSTM -> GlobalAveragePooling1D and GlobalMaxPooling1D concatenated -> Dense.
The property is tests/test_dag_stream.py's: where a stream emits, its output is Keras on the prefix
that ends there; before its first row, zeros. After ``reset(1)``
stream 1 starts over while the others go on; a stream restored with set_state or load_state
mid-sequence goes on exactly as the original; both on the fused step and the many-streams step.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_conv_layers import data, randomize
from test_conv_stream import step_through
from test_dag_stream import assert_restored_state_goes_on, check_stream, rows_made
from test_keras_import import ATOL, RTOL, keras, layers

import edgernn
from edgernn import runtime

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

F = 4
PATHS = ["fused", "many streams"]


def front_end_graph(x):
    x = layers.Normalization(mean=[0.5, -1.0, 2.0, 0.0], variance=[0.25, 4.0, 1.0, 2.0], name="normalization")(x)
    depthwise = layers.DepthwiseConv1D(3, depth_multiplier=2, name="depthwise")(x)
    separable = layers.SeparableConv1D(8, 3, activation="relu", name="separable")(x)
    grouped = layers.BatchNormalization(name="folded_bn")(layers.Conv1D(8, 3, groups=2, use_bias=False, name="grouped")(x))
    difference = layers.Subtract(name="subtract")([depthwise, separable])
    product = layers.Multiply(name="multiply")([depthwise, grouped])
    mean = layers.Average(name="average")([separable, grouped, depthwise])
    h = layers.Minimum(name="minimum")([mean, layers.Maximum(name="maximum")([difference, product])])
    h = layers.Concatenate(name="concatenate")([h, product])
    h = layers.AveragePooling1D(2, strides=1, name="average_pool")(h)
    h = layers.BatchNormalization(name="affine_bn")(layers.Activation("tanh", name="tanh")(h))
    h = layers.LSTM(5, return_sequences=True, name="lstm")(layers.LayerNormalization(name="layer_norm")(h))
    pooled = layers.Concatenate(name="pooled")([layers.GlobalAveragePooling1D(name="global_average")(h),
                                                layers.GlobalMaxPooling1D(name="global_max")(h)])
    return layers.Dense(3, name="head")(pooled)


@pytest.fixture(scope="module")
def front_end(tmp_path_factory):
    inputs = keras.Input(shape=(None, F))
    model = randomize(keras.Model(inputs, front_end_graph(inputs)))
    path = tmp_path_factory.mktemp("front_end") / "m.keras"
    model.save(path)
    return model, edgernn.convert(path)


def on_path(monkeypatch, path):
    if path == "many streams":
        monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)


def test_the_graph_holds_every_layer(front_end):
    _, m = front_end
    kinds = {type(n.op).__name__ for n in m.spec.nodes}
    assert kinds == {"Standardize", "Conv1D", "Merge", "Concatenate", "Pooling1D", "Activation", "Affine", "LayerNorm",
                     "Recurrent", "Dense"}
    names = {n.op.name for n in m.spec.nodes}
    assert "folded_bn" not in names and "affine_bn" in names  # folded into 'grouped'; its own op after the tanh
    assert {n.op.mode for n in m.spec.nodes if type(n.op).__name__ == "Merge"} == {
        "subtract", "multiply", "average", "maximum", "minimum"}


def test_every_prefix(front_end, monkeypatch):
    """Keras on every prefix: the fused step, the many-streams step and run in chunks."""
    check_stream(*front_end, data(batch=2, steps=14, features=F, seed=2), monkeypatch)


@pytest.mark.parametrize("path", PATHS)
def test_reset_one_stream_mid_sequence(front_end, path, monkeypatch):
    """After reset(1) stream 1 equals predict on the inputs since the reset (zeros until its windows
    fill again); streams 0 and 2 equal predict on everything since the start."""
    on_path(monkeypatch, path)
    _, m = front_end
    x = data(batch=3, steps=16, features=F, seed=3)
    split = 6
    s = m.stream(3)
    s.run(x[:, :split])
    s.reset(1)
    ys, _ = step_through(s, x[:, split:])
    for row, start in ((0, 0), (1, split), (2, 0)):
        for n in range(split + 1, x.shape[1] + 1):
            if rows_made(m.spec, n - start):
                np.testing.assert_allclose(ys[row, n - split - 1], m.predict(x[row:row + 1, start:n])[0], atol=ATOL,
                                           rtol=RTOL, err_msg=f"stream {row}, prefix {start}:{n}")
            else:
                np.testing.assert_array_equal(ys[row, n - split - 1], 0.0)
    assert not rows_made(m.spec, 1) and np.array_equal(ys[1, 0], np.zeros(3))  # stream 1's windows refill


@pytest.mark.parametrize("path", PATHS)
def test_get_set_and_save_load_state_mid_sequence(front_end, path, monkeypatch, tmp_path):
    """The windows' rings and counters, the global poolings' running mean (and count) and max, and
    the LSTM's h and c are the state: restored mid-sequence either way, the stream goes on exactly."""
    on_path(monkeypatch, path)
    _, m = front_end
    x = data(batch=2, steps=13, features=F, seed=4)
    snapshot, ys = assert_restored_state_goes_on(m, x, 5, tmp_path)
    assert {"global_average/count", "global_average/pooled", "global_max/pooled", "lstm/h", "lstm/c"} <= set(snapshot)
    np.testing.assert_allclose(ys[:, -1], m.predict(x), atol=ATOL, rtol=RTOL)
