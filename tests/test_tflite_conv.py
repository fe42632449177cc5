"""Convolutional front-ends and the layers around the RNN from TFLite, against the live interpreter.

Small Keras 3 models (and one tf-keras model) with random weights are converted with TensorFlow's
TFLiteConverter (float32, no optimizations) in subprocesses, then with edgernn; ``predict`` is
compared with the LiteRT interpreter on random inputs to atol 1e-5 + rtol 1e-4. What TensorFlow
2.21 writes for them: Conv1D as RESHAPE -> CONV_2D -> RESHAPE (a causal one after a PAD of (k-1)*d
zeros on the left; a grouped one with fewer weight channels than input channels; a dilated one
with a dynamic time axis between SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND, its bias added after),
DepthwiseConv1D as DEPTHWISE_CONV_2D, SeparableConv1D as DEPTHWISE_CONV_2D -> CONV_2D,
Max/AveragePooling1D as MAX_POOL_2D / AVERAGE_POOL_2D (over (batch, 1, T, C); tf-keras's over
(batch, T, 1, C)), global pooling as MEAN / REDUCE_MAX over time, Flatten as a RESHAPE before
FULLY_CONNECTED, a BatchNormalization after a convolution folded into its weights and one
elsewhere as MUL + ADD, merges as ADD, SUB, MUL, MAXIMUM, MINIMUM, CONCATENATION.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from test_conv_stream import expected_emitted, step_through
from test_tflite_import import (ATOL, GENERATOR_PREAMBLE, RTOL, assert_corruptions_raise_only_edgernn_errors,
                                cached_tflite_files)

import edgernn
from edgernn import ir
from edgernn.errors import UnsupportedModel
from edgernn.importers import tflite

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

T, F = 12, 3

# name -> (statements making ``y`` from ``x`` (L = keras.layers), sequence length (None: dynamic),
# the file's batch size).
# Few files, each covering several things: every TFLiteConverter call costs seconds.
MODELS = {
    "causal_gru": ("""
        y = L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")(x)
        y = L.Conv1D(5, 2, padding="causal", activation="tanh")(y)
        y = L.GRU(5, return_sequences=True)(y)
        y = L.Dense(2)(y)
        """, None, 1),
    "strides_same_valid": ("""
        y = L.ZeroPadding1D((1, 2))(x)
        y = L.Conv1D(4, 3, strides=2, activation="relu6")(y)
        y = L.Conv1D(5, 4, padding="same", strides=2, dilation_rate=1, activation="elu")(y)
        """, T, 1),
    "groups_depthwise_separable": ("""
        y = L.Conv1D(6, 3, padding="same", groups=3, activation="relu")(x)
        y = L.DepthwiseConv1D(3, depth_multiplier=2, dilation_rate=2)(y)
        y = L.SeparableConv1D(4, 3, padding="same", activation="relu")(y)
        """, T, 1),
    "bn_pool_flatten": ("""
        y = L.Conv1D(4, 3)(x)
        y = L.BatchNormalization()(y)
        y = L.MaxPooling1D(3, strides=2)(y)
        y = L.AveragePooling1D(2, padding="same")(y)
        y = L.Flatten()(y)
        y = L.Dense(3, activation="softmax")(y)
        """, T, 2),
    "bn_first_global_pools": ("""
        y = L.BatchNormalization()(x)
        y = L.Conv1D(4, 3, padding="same", activation="relu")(y)
        y = L.Concatenate()([L.GlobalAveragePooling1D()(y), L.GlobalMaxPooling1D()(y)])
        y = L.Dense(2, activation="tanh")(y)
        """, T, 1),
    "residual_concat_lstm": ("""
        c = L.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="relu")(x)
        r = L.Add()([x, L.Conv1D(3, 3, padding="causal")(c)])
        y = L.Concatenate()([r, L.Conv1D(2, 1, activation="tanh")(x)])
        y = L.LSTM(4)(y)
        y = L.Dense(2)(y)
        """, T, 1),
    "merges": ("""
        a = L.Conv1D(4, 2, padding="causal", activation="tanh")(x)
        b = L.Conv1D(4, 2, padding="causal", activation="sigmoid")(x)
        y = L.Subtract()([L.Maximum()([a, b]), L.Minimum()([a, b])])
        y = L.Multiply()([y, a])
        """, T, 1),
    "cnn_lstm": ("""
        y = L.Conv1D(4, 3, activation="relu")(x)
        y = L.MaxPooling1D(2)(y)
        y = L.LSTM(5)(y)
        y = L.Dense(2)(y)
        """, T, 1),
    "dilated_same_dynamic": ("""
        y = L.Conv1D(4, 3, padding="same", dilation_rate=2, activation="tanh")(x)
        y = L.DepthwiseConv1D(2, dilation_rate=3, activation="relu")(y)
        """, None, 1),
    "layer_norms": ("""
        y = L.LayerNormalization(epsilon=1e-2)(x)
        y = L.Conv1D(4, 3, padding="causal")(y)
        y = L.LayerNormalization()(y)
        y = L.LSTM(5, return_sequences=True)(y)
        y = L.LayerNormalization(center=False, scale=False)(y)
        y = L.Dense(2)(y)
        """, None, 1),
    "refused_norm_over_time": ("""
        y = L.Conv1D(4, 3)(x)
        y = L.LayerNormalization(axis=1)(y)
        y = L.LSTM(3)(y)
        """, T, 1),
}

# tf-keras (Keras 2, TF_USE_LEGACY_KERAS=1): pooling over (batch, T, 1, C), the fused LSTM.
KERAS2 = {
    "k2_cnn_lstm": ("""
        y = L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")(x)
        y = L.BatchNormalization()(y)
        y = L.MaxPooling1D(2)(y)
        y = L.LSTM(5, return_sequences=True)(y)
        y = L.GlobalAveragePooling1D()(y)
        y = L.Dense(2)(y)
        """, T, 1),
}

# What each convertible file becomes: the IR ops in order (Conv1D padding in brackets).
EXPECTED = {
    "causal_gru": ["Conv1D[causal]", "Conv1D[causal]", "Recurrent", "Dense"],
    "strides_same_valid": ["Pad1D", "Conv1D[valid]", "Conv1D[same]"],
    "dilated_same_dynamic": ["Conv1D[same]", "Conv1D[valid]"],
    "groups_depthwise_separable": ["Conv1D[same]", "Conv1D[valid]", "Conv1D[same]", "Conv1D[valid]"],
    "bn_pool_flatten": ["Conv1D[valid]", "Pooling1D", "Pooling1D", "Flatten", "Dense"],
    "bn_first_global_pools": ["Affine", "Conv1D[same]", "Pooling1D", "Pooling1D", "Concatenate", "Dense"],
    "residual_concat_lstm": ["Conv1D[causal]", "Conv1D[causal]", "Merge", "Conv1D[valid]", "Concatenate",
                             "Recurrent", "Dense"],
    "merges": ["Conv1D[causal]", "Conv1D[causal]", "Merge", "Merge", "Merge", "Merge"],
    "cnn_lstm": ["Conv1D[valid]", "Pooling1D", "Recurrent", "Dense"],
    "layer_norms": ["LayerNorm", "Conv1D[causal]", "LayerNorm", "Recurrent", "LayerNorm", "Dense"],
    "k2_cnn_lstm": ["Conv1D[causal]", "Affine", "Pooling1D", "Recurrent", "Pooling1D", "Dense"],
}

GENERATOR = GENERATOR_PREAMBLE + textwrap.dedent(
    """
    import textwrap
    L = keras.layers

    for seed, (name, (code, steps, batch)) in enumerate(sorted(models.items())):
        scope = {"L": L, "x": keras.Input((steps, %(F)d), batch_size=batch)}
        exec(textwrap.dedent(code), scope)
        model = keras.Model(scope["x"], scope["y"])
        rng = np.random.default_rng(seed)
        # Fan-in scaled random weights, non-zero biases (zero ones are folded away), and
        # BatchNormalization statistics far from the identity (variances positive).
        for w in model.weights:
            if "moving_variance" in getattr(w, "path", w.name):
                value = rng.uniform(0.5, 2.0, w.shape)
            elif len(w.shape) >= 2:
                value = rng.normal(0, 0.8 / np.sqrt(np.prod(w.shape[:-1])), w.shape)
            else:
                value = rng.normal(0, 0.3, w.shape)
            w.assign(value.astype("float32"))
        with open(os.path.join(out, name + ".tflite"), "wb") as f:
            f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    """
) % {"F": F}


@pytest.fixture(scope="module")
def files(request):
    return cached_tflite_files(request, "edgernn-tflite-conv", GENERATOR, [(MODELS, "0"), (KERAS2, "1")])


def data(batch=3, steps=T, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, steps, F)).astype(np.float32)


def describe(spec) -> list[str]:
    return [f"{type(n.op).__name__}[{n.op.padding}]" if isinstance(n.op, ir.Conv1D) else type(n.op).__name__
            for n in spec.nodes]


@pytest.fixture(scope="module")
def converted(files):
    return {name: edgernn.convert(files / f"{name}.tflite") for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_predict_matches_interpreter(files, converted, name):
    model = converted[name]
    assert describe(model.spec) == EXPECTED[name]
    x = data()  # batch 3, whatever batch the file was converted with
    ours = model.predict(x)
    (theirs,) = tflite.run_source(files / f"{name}.tflite", [x])
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=RTOL)


def test_layer_options_are_read(converted):
    """Strides, dilation, groups and the depthwise/separable split come out as Keras has them."""
    pad, *convs = [n.op for n in converted["strides_same_valid"].spec.nodes]
    assert (pad.left, pad.right) == (1, 2)
    assert [(c.strides, c.kernel_size, c.activation) for c in convs] == [(2, 3, "relu6"), (2, 4, "elu")]
    grouped, depthwise, separable_dw, pointwise = [n.op for n in converted["groups_depthwise_separable"].spec.nodes]
    assert (grouped.groups, grouped.kernel.shape) == (3, (3, 1, 6))
    assert (depthwise.groups, depthwise.dilation_rate, depthwise.kernel.shape) == (6, 2, (3, 1, 12))
    assert (separable_dw.groups, separable_dw.kernel.shape, separable_dw.activation) == (12, (3, 1, 12), "linear")
    assert (pointwise.kernel.shape, pointwise.activation) == ((1, 12, 4), "relu")
    causal = converted["causal_gru"].spec.nodes
    assert (causal[0].op.dilation_rate, causal[0].op.activation, causal[1].op.activation) == (2, "relu", "tanh")
    dilated = [n.op for n in converted["dilated_same_dynamic"].spec.nodes]  # SPACE_TO_BATCH_ND form
    assert [(c.dilation_rate, c.groups, c.activation) for c in dilated] == [(2, 1, "tanh"), (3, 4, "relu")]
    assert converted["residual_concat_lstm"].spec.nodes[0].op.dilation_rate == 2
    pools = [n.op for n in converted["bn_pool_flatten"].spec.nodes if isinstance(n.op, ir.Pooling1D)]
    assert [(p.kind, p.pool_size, p.strides, p.padding) for p in pools] == [("max", 3, 2, "valid"),
                                                                              ("average", 2, 2, "same")]
    merges = [n.op.mode for n in converted["merges"].spec.nodes if isinstance(n.op, ir.Merge)]
    assert sorted(merges) == ["maximum", "minimum", "multiply", "subtract"]
    residual = converted["residual_concat_lstm"].spec.nodes
    add = next(n for n in residual if isinstance(n.op, ir.Merge))
    assert add.op.mode == "add" and converted["residual_concat_lstm"].spec.inputs[0].name in add.inputs


def test_dynamic_length_causal_model_streams(files, converted):
    """A causal front-end converted from .tflite (dynamic time axis: the dilated convolution is a
    SPACE_TO_BATCH_ND, convolution, BATCH_TO_SPACE_ND) streams: each step's output is predict on
    the prefix ending there, and the whole sequence is the interpreter's output."""
    path = files / "causal_gru.tflite"
    model = converted["causal_gru"]
    assert model.spec.inputs[0].timesteps is None
    x = data(batch=2, steps=9, seed=4)
    (theirs,) = tflite.run_source(path, [x])
    np.testing.assert_allclose(model.predict(x), theirs, atol=ATOL, rtol=RTOL)
    ys, emitted = step_through(model.stream(batch_size=2), x)
    assert emitted.all() and expected_emitted(model.spec, 9).all()
    for t in range(x.shape[1]):
        np.testing.assert_allclose(ys[:, t], model.predict(x[:, :t + 1])[:, -1], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(ys, theirs, atol=ATOL, rtol=RTOL)


def test_layer_normalizations_are_read_and_stream(files, converted):
    """LayerNormalization over the features (first, after a convolution, after an LSTM; with and
    without center and scale) becomes the IR's LayerNorm with Keras's epsilon, gamma and beta, and
    streams: each step is predict on its prefix, the whole run the interpreter's output."""
    model = converted["layer_norms"]
    norms = [n.op for n in model.spec.nodes if isinstance(n.op, ir.LayerNorm)]
    assert [n.epsilon for n in norms] == pytest.approx([1e-2, 1e-3, 1e-3], rel=1e-6)
    assert norms[0].gamma is not None and norms[0].beta is not None
    assert norms[2].gamma is None and norms[2].beta is None  # center=False, scale=False
    x = data(batch=2, steps=9, seed=6)
    (theirs,) = tflite.run_source(files / "layer_norms.tflite", [x])
    ys, emitted = step_through(model.stream(batch_size=2), x)
    assert emitted.all()
    np.testing.assert_allclose(ys, theirs, atol=ATOL, rtol=RTOL)


def test_normalization_over_time_is_refused(files):
    """A LayerNormalization over the time axis is no IR LayerNorm: refused, naming the file and the
    RSQRT it could not place."""
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(files / "refused_norm_over_time.tflite")
    text = str(info.value)
    assert "refused_norm_over_time.tflite" in text and "rsqrt" in text


def test_corrupted_bytes_raise_only_edgernn_errors(files, tmp_path):
    """Random byte changes in real files with convolutions, poolings and merges: InvalidModelFile or
    UnsupportedModel, nothing else."""
    names = ("residual_concat_lstm", "bn_pool_flatten", "groups_depthwise_separable", "dilated_same_dynamic")
    assert_corruptions_raise_only_edgernn_errors([files / f"{n}.tflite" for n in names], tmp_path, seed=12, count=25)
