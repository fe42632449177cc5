"""Convolutional front-ends in Keras models (predict only): Conv1D, the 1-D and global poolings,
BatchNormalization (folded into an Affine op), against live Keras 3 (.keras and .h5) and tf-keras
(Keras 2 .h5 and .keras, written in a subprocess); the store round trip and hostile headers; the
refusals (stream of what reads future inputs, quantize, options edgernn cannot run exactly).
"""

from __future__ import annotations

import json
import textwrap
import zipfile

import numpy as np
import pytest
from test_keras_import import ATOL, RTOL, keras, keras2_files, layers

import edgernn
from edgernn import ir, kernels, reference
from edgernn.errors import EdgernnError, InvalidInput, InvalidModelFile, UnsupportedModel
from edgernn.graph import execute
from edgernn.summary import describe

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

T, F = 12, 3


def randomize(model, seed=0):
    """Random weights of order 1 pre-activations; BatchNormalization's moving variances positive."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = []
        for w, v in zip(layer.get_weights(), layer.weights):
            if "variance" in v.name:
                weights.append(rng.uniform(0.2, 2.0, w.shape))
            elif w.ndim >= 2:
                weights.append(rng.normal(0.0, 0.8 / np.sqrt(np.prod(w.shape[:-1])), w.shape))
            else:
                weights.append(rng.normal(0.0, 0.3, w.shape))
        layer.set_weights([w.astype(np.float32) for w in weights])
    return model


def data(batch=4, steps=T, features=F, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, steps, features)).astype(np.float32)


def seq(*stack, steps=T, features=F):
    return keras.Sequential([keras.Input(shape=(steps, features)), *stack])


def check(model, x, tmp_path, formats=("keras", "h5")):
    """Randomize, save in each format, convert, compare predict (float32 and float64) with Keras."""
    randomize(model)
    expected = np.asarray(model.predict(x, verbose=0))
    converted = []
    for fmt in formats:
        path = tmp_path / f"{model.name}.{fmt}"
        model.save(path)
        m = edgernn.convert(path)
        ours = m.predict(x)
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(execute(m.spec, [x], reference)[0], expected, atol=ATOL, rtol=RTOL)
        converted.append(m)
    return converted


# --- Conv1D ------------------------------------------------------------------------------------

CONV_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=1),
    dict(kernel_size=3, padding="causal"),
    dict(kernel_size=4, padding="same"),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=3, strides=2),
    dict(kernel_size=4, strides=3, padding="same"),
    dict(kernel_size=3, strides=2, padding="causal"),
    dict(kernel_size=3, dilation_rate=2),
    dict(kernel_size=2, dilation_rate=3, padding="causal"),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=3, activation="relu", use_bias=False),
    dict(kernel_size=2, activation="tanh", padding="causal"),
    dict(kernel_size=3, activation="gelu", padding="same"),
]


@pytest.mark.parametrize("options", CONV_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_conv1d(options, tmp_path):
    check(seq(layers.Conv1D(5, **options)), data(), tmp_path)


def test_conv1d_groups(tmp_path):
    check(seq(layers.Conv1D(6, 3, groups=2, padding="same"), features=4), data(features=4), tmp_path)


def test_cnn_lstm(tmp_path):
    model = seq(layers.Conv1D(8, 3, padding="causal", activation="relu"), layers.MaxPooling1D(2),
                layers.LSTM(16), layers.Dense(4, activation="softmax"), steps=20)
    m_keras, _ = check(model, data(steps=20), tmp_path)
    kinds = [type(node.op).__name__ for node in m_keras.spec.nodes]
    assert kinds == ["Conv1D", "Pooling1D", "Recurrent", "Dense"]
    # the same model takes another length, as Keras's (None-length) model would
    np.testing.assert_allclose(m_keras.predict(data(steps=9)), model.predict(data(steps=9), verbose=0),
                               atol=ATOL, rtol=RTOL)


# --- pooling -------------------------------------------------------------------------------------

POOL_CASES = [
    (layers.MaxPooling1D, dict(pool_size=2)),
    (layers.MaxPooling1D, dict(pool_size=3, strides=2)),
    (layers.MaxPooling1D, dict(pool_size=5, padding="same")),
    (layers.MaxPooling1D, dict(pool_size=2, strides=3, padding="same")),
    (layers.MaxPooling1D, dict(pool_size=4, strides=1, padding="same")),
    (layers.AveragePooling1D, dict(pool_size=2)),
    (layers.AveragePooling1D, dict(pool_size=3, strides=2)),
    (layers.AveragePooling1D, dict(pool_size=5, padding="same")),
    (layers.AveragePooling1D, dict(pool_size=4, strides=3, padding="same")),
    (layers.AveragePooling1D, dict(pool_size=2, strides=1, padding="same")),
    (layers.AveragePooling1D, dict(pool_size=4, strides=2, padding="same")),
]


@pytest.mark.parametrize("cls, options", POOL_CASES, ids=lambda c: getattr(c, "__name__", None) or str(c))
def test_pooling(cls, options, tmp_path):
    check(seq(layers.Conv1D(4, 2), cls(**options)), data(), tmp_path)


@pytest.mark.parametrize("cls", [layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D])
def test_global_pooling(cls, tmp_path):
    (m, _) = check(seq(layers.Conv1D(4, 3, padding="same"), cls(), layers.Dense(2)), data(), tmp_path)
    assert m.spec.tensor_shape(m.spec.nodes[1].outputs[0]) == (2, 4)


# --- Flatten ---------------------------------------------------------------------------------------


def test_flatten_conv_pool_dense(tmp_path):
    model = seq(layers.Conv1D(4, 3, padding="same"), layers.MaxPooling1D(3, strides=2), layers.Flatten(name="flat"),
                layers.Dense(3, activation="softmax"))
    (m, _) = check(model, data(), tmp_path)
    assert m.spec.nodes[2].op.steps == 5 and m.spec.tensor_shape("flat") == (2, 20)
    m.save(tmp_path / "flat.ernn")
    np.testing.assert_array_equal(edgernn.load(tmp_path / "flat.ernn").predict(data()), m.predict(data()))
    with pytest.raises(InvalidInput, match="timesteps"):  # one clear error, not a ValueError
        m.predict(data(steps=T + 1))
    with pytest.raises(EdgernnError, match="Conv1D"):  # the first layer that cannot stream
        m.stream()


def test_stream_refused_naming_flatten(tmp_path):
    """With no convolution ahead of it, the refusal names the Flatten itself."""
    (m, _) = check(seq(layers.LSTM(4, return_sequences=True), layers.Flatten(name="flat"), layers.Dense(2)), data(),
                   tmp_path)
    with pytest.raises(EdgernnError, match="'flat' is Flatten"):
        m.stream()


def test_flatten_of_a_vector_is_the_identity(tmp_path):
    check(seq(layers.LSTM(4), layers.Flatten(), layers.Dense(2)), data(), tmp_path)


# --- BatchNormalization ---------------------------------------------------------------------------


@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False), (False, False)])
def test_batch_normalization(center, scale, tmp_path):
    """After an activation: an op of its own."""
    model = seq(layers.Conv1D(4, 3, activation="relu"), layers.BatchNormalization(center=center, scale=scale, epsilon=0.01),
                layers.LSTM(3, return_sequences=True), layers.BatchNormalization())
    (m, _) = check(model, data(), tmp_path)
    assert [type(n.op).__name__ for n in m.spec.nodes] == ["Conv1D", "Affine", "Recurrent", "Affine"]


@pytest.mark.parametrize("head", ["conv", "dense"])
def test_batch_normalization_after_a_linear_map_is_folded_into_it(head, tmp_path):
    """Conv1D or Dense without activation, then BatchNormalization (then an activation): one op."""
    linear = layers.Conv1D(4, 3, use_bias=False) if head == "conv" else layers.Dense(4)
    model = seq(layers.LSTM(5, return_sequences=True), linear, layers.BatchNormalization(epsilon=0.01),
                layers.Activation("tanh"), layers.GlobalAveragePooling1D())
    (m, _) = check(model, data(), tmp_path)
    assert [type(n.op).__name__ for n in m.spec.nodes] == ["Recurrent", type(m.spec.nodes[1].op).__name__, "Pooling1D"]
    assert m.spec.nodes[1].op.activation == "tanh" and m.spec.nodes[1].op.bias is not None


def test_batch_normalization_on_vectors(tmp_path):
    check(seq(layers.LSTM(5), layers.BatchNormalization(), layers.Dense(2)), data(), tmp_path)


# --- store, summary, stream and quantize refusals ---------------------------------------------------


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    model = seq(layers.Conv1D(4, 3, padding="causal", strides=2, dilation_rate=1, activation="relu", name="front"),
                layers.BatchNormalization(name="norm"), layers.AveragePooling1D(2, padding="same", name="pool"),
                layers.GRU(3, name="gru"), layers.Dense(2, name="head"))
    randomize(model)
    path = tmp_path_factory.mktemp("cnn") / "cnn.keras"
    model.save(path)
    return edgernn.convert(path), model


def test_save_load_round_trip(cnn, tmp_path):
    m, model = cnn
    m.save(tmp_path / "cnn.ernn")
    loaded = edgernn.load(tmp_path / "cnn.ernn")
    x = data()
    np.testing.assert_array_equal(loaded.predict(x), m.predict(x))
    np.testing.assert_allclose(loaded.predict(x), model.predict(x, verbose=0), atol=ATOL, rtol=RTOL)
    for a, b in zip(m.spec.nodes, loaded.spec.nodes):
        assert type(a.op) is type(b.op) and a.op.name == b.op.name
    op = loaded.spec.nodes[0].op
    assert (op.strides, op.padding, op.dilation_rate, op.groups) == (2, "causal", 1, 1)
    pool = loaded.spec.nodes[2].op
    assert (pool.kind, pool.pool_size, pool.strides, pool.padding, pool.global_pool) == ("average", 2, 2, "same", False)


def test_summary_describes_them(cnn):
    described = describe(cnn[0].spec)
    ops = [layer["op"] for layer in described["layers"]]
    assert ops[0].startswith("Conv1D(4, kernel_size=3)") and "padding=causal" in ops[0]
    assert ops[1].startswith("Affine(4)") and ops[2].startswith("AveragePooling1D(pool_size=2)")
    assert "front" in json.dumps(described)


def test_stream_refused_naming_same_pooling(cnn):
    """The causal Conv1D and the BatchNormalization stream; the pooling with padding="same" reads
    later inputs, and the refusal names it (tests/test_conv_stream.py streams the rest)."""
    with pytest.raises(EdgernnError) as info:
        cnn[0].stream()
    assert "'pool'" in str(info.value) and "padding='same'" in str(info.value) and "front" not in str(info.value)


def test_quantize_refused_naming_same_pooling(cnn):
    """The firmware streams Conv1D and BatchNormalization (tests/test_firmware_conv.py); a pooling
    with padding="same" does not stream, and the refusal names it."""
    with pytest.raises(EdgernnError) as info:
        cnn[0].quantize(data())
    text = str(info.value) + " ".join(getattr(info.value, "problems", []))
    assert "'pool'" in text and "padding='same'" in text and "'front'" not in text


def _rewrite(src, dst, mutate):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item)
            if item.filename == "header.json":
                header = json.loads(body)
                mutate(header)
                body = json.dumps(header).encode()
            zout.writestr(item, body)


@pytest.mark.parametrize("field, value, message", [
    ("padding", "reflect", "padding must be one of"),
    ("strides", 0, "strides must be a positive integer"),
    ("dilation_rate", True, "dilation_rate must be int"),
    ("groups", 3, "not a multiple of groups"),
    ("activation", "softmax", "activation must be element-wise"),
    ("groups", 10**9, "over the"),
])
def test_hostile_conv_fields_refused(cnn, tmp_path, field, value, message):
    cnn[0].save(tmp_path / "ok.ernn")
    _rewrite(tmp_path / "ok.ernn", tmp_path / "bad.ernn", lambda h: h["nodes"][0]["op"].__setitem__(field, value))
    with pytest.raises(InvalidModelFile) as info:
        edgernn.load(tmp_path / "bad.ernn")
    assert message in str(info.value) + " ".join(getattr(info.value, "problems", []))


@pytest.mark.parametrize("node, field, value, message", [
    (2, "kind", "median", "kind must be one of"),
    (2, "pool_size", -1, "pool_size must be a positive integer"),
    (2, "global_pool", 1, "global_pool must be bool"),
    (1, "offset", None, "offset must not be null"),
])
def test_hostile_pool_and_affine_fields_refused(cnn, tmp_path, node, field, value, message):
    cnn[0].save(tmp_path / "ok.ernn")
    _rewrite(tmp_path / "ok.ernn", tmp_path / "bad.ernn", lambda h: h["nodes"][node]["op"].__setitem__(field, value))
    with pytest.raises(InvalidModelFile) as info:
        edgernn.load(tmp_path / "bad.ernn")
    assert message in str(info.value) + " ".join(getattr(info.value, "problems", []))


# --- importer refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("layer, text", [
    (lambda: layers.Conv1D(4, 2, data_format="channels_first", name="bad"), "data_format"),
    (lambda: layers.MaxPooling1D(2, data_format="channels_first", name="bad"), "data_format"),
    (lambda: layers.GlobalAveragePooling1D(keepdims=True, name="bad"), "keepdims"),
    (lambda: layers.BatchNormalization(axis=1, name="bad"), "axis=1"),
    (lambda: layers.Flatten(data_format="channels_first", name="bad"), "data_format"),
])
def test_refused_options_named(layer, text, tmp_path):
    model = seq(layer(), layers.Dense(2))
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(tmp_path / "m.keras")
    assert any("'bad'" in p and text in p for p in info.value.problems), info.value.problems


def test_flatten_of_a_variable_length_refused(tmp_path):
    model = keras.Sequential([keras.Input(shape=(None, F)), layers.Conv1D(4, 2), layers.Flatten(name="bad")])
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(tmp_path / "m.keras")
    assert any("'bad'" in p and "fixed number of timesteps" in p for p in info.value.problems), info.value.problems


def test_conv_after_masking_refused(tmp_path):
    model = seq(layers.Masking(0.0), layers.Conv1D(4, 2, name="bad"), layers.LSTM(2))
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(tmp_path / "m.keras")
    assert any("'bad'" in p and "mask" in p for p in info.value.problems)


# --- the float32 backend against the float64 reference ----------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 7, 16])
@pytest.mark.parametrize("padding", ["valid", "causal", "same"])
@pytest.mark.parametrize("strides, dilation, groups", [(1, 1, 1), (2, 1, 3), (3, 2, 1), (1, 3, 3)])
def test_conv_kernel_matches_reference(steps, padding, strides, dilation, groups):
    rng = np.random.default_rng(steps)
    op = ir.Conv1D(name="c", kernel=ir.as_weight(rng.normal(size=(3, 2, 6))), bias=ir.as_weight(rng.normal(size=6)),
                   strides=strides, padding=padding, dilation_rate=dilation, groups=groups, activation="silu")
    x = rng.normal(size=(2, steps, 2 * groups))
    ours, oracle = kernels.conv1d(op, x), reference.conv1d(op, x)
    assert ours.dtype == np.float32 and ours.shape == oracle.shape == (2, op.output_steps(steps), 6)
    np.testing.assert_allclose(ours, oracle, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("size, strides", [(1, 1), (2, 2), (3, 1), (4, 3), (5, 2)])
def test_pool_kernel_matches_reference(kind, padding, size, strides):
    x = np.random.default_rng(size).normal(size=(2, 9, 3))
    op = ir.Pooling1D(name="p", kind=kind, pool_size=size, strides=strides, padding=padding)
    ours, oracle = kernels.pool1d(op, x), reference.pool1d(op, x)
    assert ours.dtype == np.float32 and ours.shape == oracle.shape
    np.testing.assert_allclose(ours, oracle, atol=ATOL, rtol=RTOL)


# --- Keras 2 (tf-keras) files ------------------------------------------------------------------------

# ``randomize`` of the tf-keras scripts (this file's and test_keras_layers.py's).
KERAS2_RANDOMIZE = textwrap.dedent(
    """
    def randomize(m):
        for layer in m.layers:
            ws = []
            for w, v in zip(layer.get_weights(), layer.weights):
                if "variance" in v.name:
                    ws.append(rng.uniform(0.2, 2.0, w.shape))
                else:
                    ws.append(rng.normal(0, 0.8 / np.sqrt(np.prod(w.shape[:-1])) if w.ndim >= 2 else 0.3, w.shape))
            layer.set_weights([w.astype(np.float32) for w in ws])
    """
)
KERAS2_SCRIPT = KERAS2_RANDOMIZE + textwrap.dedent(
    """
    x = rng.normal(size=(4, 12, 3)).astype(np.float32)
    models = {
        "cnn_lstm": keras.Sequential([L.Conv1D(8, 3, padding="causal", activation="relu", input_shape=(12, 3)),
                                      L.MaxPooling1D(2), L.LSTM(16), L.Dense(4, activation="softmax")]),
        "conv_variants": keras.Sequential([L.Conv1D(6, 4, padding="same", strides=2, input_shape=(12, 3)),
                                           L.Conv1D(4, 2, dilation_rate=2, groups=2, use_bias=False, activation="tanh"),
                                           L.BatchNormalization(epsilon=0.01), L.AveragePooling1D(3, strides=2, padding="same"),
                                           L.GRU(3, return_sequences=True), L.BatchNormalization(center=False),
                                           L.GlobalMaxPooling1D()]),
        "pool_variants": keras.Sequential([L.Conv1D(4, 3, input_shape=(12, 3)), L.MaxPool1D(3, strides=2, padding="same"),
                                           L.AveragePooling1D(2), L.GlobalAveragePooling1D(), L.BatchNormalization(scale=False),
                                           L.Dense(2)]),
        "flatten": keras.Sequential([L.Conv1D(4, 3, strides=2, input_shape=(12, 3)), L.Flatten(), L.Dense(2)]),
        "folded_bn": keras.Sequential([L.Conv1D(4, 3, use_bias=False, input_shape=(12, 3)), L.BatchNormalization(epsilon=0.01),
                                       L.Activation("relu"), L.LSTM(5, return_sequences=True), L.Dense(4),
                                       L.BatchNormalization(center=False), L.GlobalAveragePooling1D()]),
    }
    for name, m in models.items():
        randomize(m)
        np.save(os.path.join(out, name + ".y.npy"), m.predict(x, verbose=0))
        m.save(os.path.join(out, name + ".h5"))
        m.save(os.path.join(out, name + ".keras"))
    np.save(os.path.join(out, "x.npy"), x)
    """
)


@pytest.fixture(scope="module")
def keras2_dir(tmp_path_factory):
    return keras2_files(tmp_path_factory, KERAS2_SCRIPT, "keras2conv")


@pytest.mark.parametrize("name", ["cnn_lstm", "conv_variants", "pool_variants", "flatten", "folded_bn"])
@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_keras2_files(keras2_dir, name, fmt):
    m = edgernn.convert(keras2_dir / f"{name}.{fmt}")
    assert m.spec.source["framework_version"].startswith("2.")
    ours = m.predict(np.load(keras2_dir / "x.npy"))
    np.testing.assert_allclose(ours, np.load(keras2_dir / f"{name}.y.npy"), atol=ATOL, rtol=RTOL)
    if name == "folded_bn":  # each BatchNormalization folded into the Conv1D / Dense right before it
        assert [type(n.op).__name__ for n in m.spec.nodes] == ["Conv1D", "Recurrent", "Dense", "Pooling1D"]
        assert m.spec.nodes[0].op.activation == "relu" and m.spec.nodes[0].op.bias is not None
