"""The Keras importer against live Keras (TensorFlow backend): every supported layer and option.

Each test builds a small real Keras model, gives it random weights that keep the activations out
of saturation (so a wrong gate order or formula shows), saves it as ``.keras`` and legacy ``.h5``,
converts each file with :func:`edgernn.convert` and compares ``predict`` with Keras's.
Keras 2 files come from tf-keras in a subprocess (``TF_USE_LEGACY_KERAS=1`` must be set before
TensorFlow is imported, so it cannot share this process with Keras 3).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

import edgernn  # noqa: E402
from edgernn.errors import InvalidModelFile, UnsupportedModel  # noqa: E402

# Keras/TF emit numpy-2 DeprecationWarnings by the hundred; they are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

ATOL, RTOL = 1e-5, 1e-4
T, F = 6, 3


def randomize(model, seed=0):
    """Normal random weights scaled by fan-in (std ~0.5 per unit of input), biases std 0.3:
    pre-activations of order 1, so sigmoid/tanh/hard_sigmoid work in their sloped range."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim >= 2:
            weights.append(rng.normal(0.0, 0.8 / np.sqrt(w.shape[-2]), w.shape))
        else:
            weights.append(rng.normal(0.0, 0.3, w.shape))
    model.set_weights([w.astype(np.float32) for w in weights])
    return model


def data(batch=4, steps=T, features=F, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, steps, features)).astype(np.float32)


def keras_predict(model, x):
    out = model.predict(x, verbose=0)
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)


def assert_same(ours, theirs):
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, atol=ATOL, rtol=RTOL)
    else:
        assert np.asarray(ours).shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=RTOL)


def check(model, inputs, tmp_path, formats=("keras", "h5"), seed=0):
    """Randomize, save in each format, convert, compare predictions; returns the converted models."""
    randomize(model, seed)
    inputs = inputs if isinstance(inputs, list) else [inputs]
    expected = keras_predict(model, inputs if len(inputs) > 1 else inputs[0])
    converted = []
    for fmt in formats:
        path = tmp_path / f"{model.name}.{fmt}"
        model.save(path)
        m = edgernn.convert(path)
        assert_same(m.predict(*inputs), expected)
        converted.append(m)
    return converted


def seq(*stack, steps=T, features=F, batch=None):
    shape = dict(batch_shape=(batch, steps, features)) if batch else dict(shape=(steps, features))
    return keras.Sequential([keras.Input(**shape), *stack])


RNNS = {
    "lstm": lambda units, **kw: layers.LSTM(units, **kw),
    "gru": lambda units, **kw: layers.GRU(units, reset_after=True, **kw),
    "gru_v1": lambda units, **kw: layers.GRU(units, reset_after=False, **kw),
    "simple": lambda units, **kw: layers.SimpleRNN(units, **kw),
}


# --- recurrent layers ------------------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(RNNS))
@pytest.mark.parametrize("units", [1, 7])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_recurrent_layer(cell, units, return_sequences, tmp_path):
    model = seq(RNNS[cell](units, return_sequences=return_sequences))
    check(model, data(), tmp_path)


@pytest.mark.parametrize(
    "cell, kwargs",
    [
        ("lstm", dict(recurrent_activation="hard_sigmoid", activation="relu")),
        ("lstm", dict(activation="softsign", recurrent_activation="sigmoid")),
        ("lstm", dict(activation="linear", recurrent_activation="hard_sigmoid")),
        ("gru", dict(activation="linear", recurrent_activation="hard_sigmoid")),
        ("gru_v1", dict(activation="elu", recurrent_activation="hard_sigmoid")),
        ("gru", dict(activation="swish", recurrent_activation="sigmoid")),
        ("simple", dict(activation="relu")),
        ("simple", dict(activation="linear")),
        ("simple", dict(activation="gelu")),
    ],
)
def test_activation_variants(cell, kwargs, tmp_path):
    model = seq(RNNS[cell](5, return_sequences=True, **kwargs))
    check(model, data(), tmp_path)


@pytest.mark.parametrize("cell", sorted(RNNS))
def test_no_bias(cell, tmp_path):
    model = seq(RNNS[cell](4, use_bias=False, return_sequences=True))
    check(model, data(), tmp_path)


@pytest.mark.parametrize("cell, return_sequences", [("lstm", True), ("gru", False), ("gru_v1", True), ("simple", True), ("lstm", False)])
def test_go_backwards(cell, return_sequences, tmp_path):
    # Keras keeps a backwards layer's output sequence in processing order (last step first).
    model = seq(RNNS[cell](4, go_backwards=True, return_sequences=return_sequences))
    check(model, data(), tmp_path)


def test_unroll_is_the_same_math(tmp_path):
    model = seq(layers.LSTM(4, unroll=True, return_sequences=True), layers.GRU(3, unroll=True))
    check(model, data(), tmp_path)


def test_rnn_with_builtin_cell(tmp_path):
    model = seq(
        layers.RNN(layers.LSTMCell(4), return_sequences=True),
        layers.RNN(layers.GRUCell(3, reset_after=False), return_sequences=True),
        layers.RNN(layers.SimpleRNNCell(2)),
    )
    check(model, data(), tmp_path)


def test_recurrent_dropout_is_identity_at_inference(tmp_path):
    model = seq(layers.LSTM(4, dropout=0.3, recurrent_dropout=0.3, return_sequences=True), layers.GRU(3, dropout=0.2))
    check(model, data(), tmp_path)


# --- stacks, heads, wrappers -------------------------------------------------------------------


def test_stacked_layers_of_different_widths(tmp_path):
    model = seq(
        layers.LSTM(7, return_sequences=True),
        layers.GRU(4, return_sequences=True),
        layers.SimpleRNN(5, return_sequences=True),
        layers.LSTM(2),
        layers.Dense(6, activation="relu"),
        layers.Dense(3, activation="softmax"),
    )
    check(model, data(), tmp_path)


def test_dense_head_activations(tmp_path):
    acts = ["relu", "sigmoid", "tanh", "elu", "selu", "softplus", "softsign", "gelu", "mish", "silu",
            "hard_sigmoid", "relu6", "leaky_relu", "log_sigmoid", "hard_silu", "linear"]
    model = seq(layers.GRU(6), *[layers.Dense(6, activation=a) for a in acts], layers.Dense(3, activation="log_softmax"))
    check(model, data(), tmp_path)


def test_dense_on_sequences_and_time_distributed(tmp_path):
    model = seq(
        layers.LSTM(5, return_sequences=True),
        layers.Dense(4, activation="sigmoid"),  # Dense on (batch, T, F): the last axis
        layers.TimeDistributed(layers.Dense(3, activation="tanh")),
        layers.TimeDistributed(layers.Dense(2, activation="softmax", use_bias=False)),
    )
    check(model, data(), tmp_path)


def test_identity_and_activation_layers(tmp_path):
    model = seq(
        layers.Dropout(0.5),
        layers.SpatialDropout1D(0.3),
        layers.GaussianNoise(0.4),
        layers.LSTM(5, return_sequences=True),
        layers.GaussianDropout(0.2),
        layers.AlphaDropout(0.2),
        layers.ActivityRegularization(l1=0.01),
        layers.Activation("tanh"),
        layers.ReLU(),
        layers.TimeDistributed(layers.Dropout(0.1)),
        layers.GRU(4),
        layers.Activation("softmax"),
        layers.Softmax(),
    )
    check(model, data(), tmp_path)


def test_repeat_vector_one_to_many(tmp_path):
    inp = keras.Input((4,))
    x = layers.Dense(5, activation="tanh")(inp)
    x = layers.RepeatVector(T)(x)
    x = layers.LSTM(3, return_sequences=True)(x)
    out = layers.TimeDistributed(layers.Dense(2))(x)
    model = keras.Model(inp, out, name="one_to_many")
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    (m, _) = check(model, x, tmp_path)
    assert m.spec.inputs[0].rank == 2


def test_sequence_autoencoder_repeat_vector(tmp_path):
    model = seq(layers.LSTM(4), layers.RepeatVector(T), layers.GRU(4, return_sequences=True), layers.TimeDistributed(layers.Dense(F)))
    check(model, data(), tmp_path)


# --- masking -----------------------------------------------------------------------------------


def masked_data(mask_value=0.0, batch=5, steps=7, seed=3):
    """Whole timesteps equal to mask_value at the start, middle and end, different per row."""
    x = data(batch, steps, F, seed)
    x[0, :2] = mask_value        # leading
    x[1, 3] = mask_value         # middle
    x[2, -2:] = mask_value       # trailing (the last output of a many-to-one layer is masked)
    x[3, [0, 3, 6]] = mask_value  # start, middle and end
    return x                     # row 4 unmasked


@pytest.mark.parametrize("cell", sorted(RNNS))
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("zero_output", [False, True])
def test_masking(cell, return_sequences, zero_output, tmp_path):
    model = seq(
        layers.Masking(0.0),
        RNNS[cell](4, return_sequences=return_sequences, zero_output_for_mask=zero_output),
        steps=7,
    )
    check(model, masked_data(), tmp_path)


def test_masking_passes_through_dense_dropout_activation(tmp_path):
    model = seq(
        layers.Masking(-1.0),
        layers.TimeDistributed(layers.Dense(4, activation="tanh")),
        layers.Dropout(0.2),
        layers.Activation("relu"),
        layers.Dense(3),
        layers.LSTM(3, return_sequences=True, go_backwards=True),
        layers.GRU(2, return_sequences=True),
        layers.SimpleRNN(2),  # consumes the mask
        layers.Dense(2),
        steps=7,
    )
    check(model, masked_data(-1.0), tmp_path)


def test_masking_functional(tmp_path):
    # Keras 3 writes the mask of a functional model as keras.ops nodes (not_equal, any) and
    # passes it to each RNN explicitly; Sequential models propagate it implicitly.
    inp = keras.Input((7, F))
    x = layers.Masking(0.0)(inp)
    x = layers.TimeDistributed(layers.Dense(4))(x)
    x = layers.LSTM(4, return_sequences=True)(x)
    x = layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="sum")(x)
    x = layers.GRU(3, zero_output_for_mask=True)(x)
    model = keras.Model(inp, layers.Dense(2)(x), name="masked_functional")
    check(model, masked_data(), tmp_path)


# --- bidirectional -----------------------------------------------------------------------------


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional(merge_mode, return_sequences, tmp_path):
    model = seq(layers.Bidirectional(layers.LSTM(3, return_sequences=return_sequences), merge_mode=merge_mode), layers.Dense(2))
    check(model, data(), tmp_path)


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_v1", "simple"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_masked(cell, return_sequences, tmp_path):
    # Bidirectional forces zero_output_for_mask=return_sequences on both directions.
    model = seq(layers.Masking(0.0), layers.Bidirectional(RNNS[cell](3, return_sequences=return_sequences)), steps=7)
    check(model, masked_data(), tmp_path)


def test_bidirectional_forces_zero_output_like_keras(tmp_path):
    # Keras's Bidirectional.__init__ sets zero_output_for_mask = return_sequences on both layers,
    # whatever their config says; a config claiming True without return_sequences must be
    # overridden (Keras would on load), or trailing-masked rows would give zeros.
    model = randomize(seq(layers.Masking(0.0), layers.Bidirectional(layers.LSTM(3)), steps=7))
    model.save(tmp_path / "bi.keras")

    def claim_zero_output(blob):
        config = json.loads(blob)
        bi = config["config"]["layers"][-1]["config"]
        for key in ("layer", "backward_layer"):
            bi[key]["config"]["zero_output_for_mask"] = True
        return json.dumps(config).encode()

    _rewrite_zip(tmp_path / "bi.keras", tmp_path / "edited.keras", replace={"config.json": claim_zero_output})
    x = masked_data()
    assert_same(edgernn.convert(tmp_path / "edited.keras").predict(x), keras_predict(model, x))


def test_bidirectional_explicit_backward_layer(tmp_path):
    bi = layers.Bidirectional(
        layers.GRU(3, return_sequences=True),
        backward_layer=layers.GRU(3, return_sequences=True, go_backwards=True),
        merge_mode="ave",
    )
    check(seq(bi, layers.LSTM(2)), data(), tmp_path)


# --- functional graphs -------------------------------------------------------------------------


@pytest.mark.parametrize("rnn", ["lstm", "gru", "gru_v1"])
def test_encoder_decoder(rnn, tmp_path):
    enc_in, dec_in = keras.Input((None, F), name="enc_in"), keras.Input((None, 2), name="dec_in")
    out = RNNS[rnn](5, return_state=True, name="encoder")(enc_in)
    states = out[1:]
    y = RNNS[rnn](5, return_sequences=True, name="decoder")(dec_in, initial_state=states)
    y = layers.Dense(2, activation="softmax", name="head")(y)
    model = keras.Model([enc_in, dec_in], y, name=f"seq2seq_{rnn}")
    check(model, [data(3, 7, F), data(3, 4, 2, seed=5)], tmp_path)


def test_return_state_outputs(tmp_path):
    inp = keras.Input((T, F))
    y, h, c = layers.LSTM(4, return_sequences=True, return_state=True)(inp)
    g, gh = layers.GRU(3, return_state=True)(y)
    model = keras.Model(inp, [y, h, c, g, gh], name="with_states")
    (m, _) = check(model, data(), tmp_path)
    assert isinstance(m.predict(data()), list)


def test_two_inputs_two_branches(tmp_path):
    a, b = keras.Input((T, F), name="a"), keras.Input((5, 2), name="b")
    ya = layers.LSTM(3)(a)
    yb = layers.Dense(2)(layers.GRU(4)(b))
    model = keras.Model([a, b], [ya, yb], name="branches")
    check(model, [data(), data(4, 5, 2, seed=7)], tmp_path)


def test_shared_layers(tmp_path):
    # One LSTM and one Dense called on two inputs: two inbound nodes each, one set of weights.
    a, b = keras.Input((T, F), name="a"), keras.Input((T, F), name="b")
    lstm, head = layers.LSTM(3, name="shared_lstm"), layers.Dense(2, name="shared_head")
    model = keras.Model([a, b], [head(lstm(a)), head(lstm(b))], name="shared")
    (m, _) = check(model, [data(), data(seed=9)], tmp_path)
    assert len(m.spec.nodes) == 4


def test_initial_state_from_dense(tmp_path):
    # Conditioning: a static vector -> Dense -> the GRU's initial state.
    static, sequence = keras.Input((4,), name="static"), keras.Input((T, F), name="sequence")
    h0 = layers.Dense(5, activation="tanh")(static)
    y = layers.GRU(5, return_sequences=True)(sequence, initial_state=h0)
    model = keras.Model([static, sequence], y, name="conditioned")
    check(model, [np.random.default_rng(4).normal(size=(4, 4)).astype(np.float32), data()], tmp_path)


# --- stateful ----------------------------------------------------------------------------------


def reset_states(model):
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()


def test_stateful_model_takes_any_batch_size(tmp_path):
    stateful = seq(layers.LSTM(4, stateful=True, return_sequences=True), layers.GRU(3, stateful=True), layers.Dense(2), batch=2)
    randomize(stateful)
    stateless = seq(layers.LSTM(4, return_sequences=True), layers.GRU(3), layers.Dense(2))
    stateless.set_weights(stateful.get_weights())
    x = data(5)
    for fmt in ("keras", "h5"):
        path = tmp_path / f"stateful.{fmt}"
        stateful.save(path)
        m = edgernn.convert(path)
        assert_same(m.predict(x), keras_predict(stateless, x))  # batch 5, not the fixed 2
        reset_states(stateful)
        assert_same(m.predict(x[:2]), keras_predict(stateful, x[:2]))  # from zero state, as Keras after a reset
        reset_states(stateful)


# --- in-memory models and source metadata --------------------------------------------------------


def test_convert_in_memory_model():
    model = randomize(seq(layers.GRU(4, return_sequences=True), layers.LSTM(3), layers.Dense(2)))
    m = edgernn.convert(model)
    assert_same(m.predict(data()), keras_predict(model, data()))
    assert m.spec.source["file"] is None
    assert m.spec.source["model_name"] == model.name


def test_source_records_the_saving_keras(tmp_path):
    model = seq(layers.SimpleRNN(2))
    (m_keras, m_h5) = check(model, data(), tmp_path)
    source = {k: v for k, v in m_keras.spec.source.items() if k != "verification"}  # convert's check, recorded too
    assert source == {
        "format": "keras", "file": f"{model.name}.keras", "framework": "keras", "framework_version": keras.__version__,
    }
    assert m_h5.spec.source["framework_version"] == keras.__version__
    assert m_h5.spec.source["backend"] == "tensorflow"


def test_weights_are_float32_c_contiguous(tmp_path):
    model = randomize(seq(layers.GRU(3, return_sequences=True), layers.Bidirectional(layers.LSTM(2)), layers.Dense(2)))
    model.save(tmp_path / "m.keras")
    spec = edgernn.convert(tmp_path / "m.keras").spec
    gru = spec.nodes[0].op
    assert gru.recurrent_bias is not None and gru.bias.shape == (9,)
    arrays = [gru.kernel, gru.recurrent_kernel, gru.bias, gru.recurrent_bias, spec.nodes[1].op.forward.kernel, spec.nodes[2].op.kernel]
    for a in arrays:
        assert a.dtype == np.float32 and a.flags.c_contiguous


# --- Keras 2 (tf-keras) files --------------------------------------------------------------------

KERAS2_SCRIPT = textwrap.dedent(
    """
    def randomize(m):
        ws = [rng.normal(0, 0.8 / np.sqrt(w.shape[-2]) if w.ndim >= 2 else 0.3, w.shape) for w in m.get_weights()]
        m.set_weights([w.astype(np.float32) for w in ws])

    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    xm = x.copy(); xm[0, :2] = 0; xm[1, 3] = 0; xm[2, -2:] = 0
    models = {
        "lstm_hard_sigmoid": keras.Sequential([L.LSTM(5, recurrent_activation="hard_sigmoid", return_sequences=True, input_shape=(6, 3)), L.LSTM(3, activation="hard_sigmoid")]),
        "gru_reset_before": keras.Sequential([L.GRU(4, reset_after=False, return_sequences=True, input_shape=(6, 3)), L.Dense(2, activation="softmax")]),
        "gru_reset_after": keras.Sequential([L.GRU(4, reset_after=True, recurrent_activation="hard_sigmoid", input_shape=(6, 3)), L.Dense(2, activation="swish")]),
        "simple_rnn": keras.Sequential([L.SimpleRNN(3, return_sequences=True, go_backwards=True, input_shape=(6, 3)), L.TimeDistributed(L.Dense(2, activation="hard_sigmoid"))]),
        "masked_bidirectional": keras.Sequential([L.Masking(0.0, input_shape=(6, 3)), L.Bidirectional(L.LSTM(3, return_sequences=True)), L.Dropout(0.2), L.GRU(2)]),
    }
    inp = keras.Input((6, 3))
    masked = L.Masking(0.0)(inp)
    models["masked_functional"] = keras.Model(inp, L.GRU(2)(L.LSTM(3, return_sequences=True)(L.Dense(3)(masked))))
    enc_in = keras.Input((None, 3)); dec_in = keras.Input((None, 3))
    _, h, c = L.LSTM(4, return_state=True)(enc_in)
    y = L.LSTM(4, return_sequences=True)(dec_in, initial_state=[h, c])
    models["encoder_decoder"] = keras.Model([enc_in, dec_in], L.Dense(2)(y))
    for name, m in models.items():
        randomize(m)
        inputs = [x, x[:, :4]] if name == "encoder_decoder" else (xm if "masked" in name else x)
        np.save(os.path.join(out, name + ".x.npy"), np.asarray(inputs[0] if isinstance(inputs, list) else inputs))
        if isinstance(inputs, list):
            np.save(os.path.join(out, name + ".x2.npy"), inputs[1])
        np.save(os.path.join(out, name + ".y.npy"), m.predict(inputs, verbose=0))
        m.save(os.path.join(out, name + ".h5"))
        m.save(os.path.join(out, name + ".keras"))
    # An in-memory tf-keras model converts too (edgernn saves it and reads the file).
    import edgernn
    m = models["gru_reset_before"]
    np.save(os.path.join(out, "in_memory.ours.npy"), edgernn.convert(m).predict(x))
    np.save(os.path.join(out, "in_memory.y.npy"), m.predict(x, verbose=0))
    print(keras.__version__ if hasattr(keras, "__version__") else "tf-keras")
    """
)
KERAS2_MODELS = [
    "lstm_hard_sigmoid", "gru_reset_before", "gru_reset_after", "simple_rnn", "masked_bidirectional",
    "masked_functional", "encoder_decoder",
]


# What every tf-keras script starts with: tf.keras as `keras`, its layers as `L`, the output folder
# `out` (argv[1]) and a seeded `rng`.
KERAS2_PREAMBLE = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    keras = tf.keras
    L = keras.layers
    out = sys.argv[1]
    rng = np.random.default_rng(0)
    """
)


def keras2_files(tmp_path_factory, script: str, folder: str):
    """A folder of the files ``script`` writes with tf-keras in a subprocess (its argv[1]), after
    :data:`KERAS2_PREAMBLE`."""
    pytest.importorskip("tf_keras")
    out = tmp_path_factory.mktemp(folder)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", KERAS2_PREAMBLE + script, str(out)], env=env, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        pytest.fail(f"tf-keras model generation failed:\n{run.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def keras2_dir(tmp_path_factory):
    return keras2_files(tmp_path_factory, KERAS2_SCRIPT, "keras2")


@pytest.mark.parametrize("name", KERAS2_MODELS)
@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_keras2_files(keras2_dir, name, fmt):
    m = edgernn.convert(keras2_dir / f"{name}.{fmt}")
    assert m.spec.source["framework_version"].startswith("2.")
    inputs = [np.load(keras2_dir / f"{name}.x.npy")]
    if (keras2_dir / f"{name}.x2.npy").exists():
        inputs.append(np.load(keras2_dir / f"{name}.x2.npy"))
    assert_same(m.predict(*inputs), np.load(keras2_dir / f"{name}.y.npy"))


def test_keras2_in_memory_model(keras2_dir):
    assert_same(np.load(keras2_dir / "in_memory.ours.npy"), np.load(keras2_dir / "in_memory.y.npy"))


def test_keras2_hard_sigmoid_is_keras2s(keras2_dir):
    spec = edgernn.convert(keras2_dir / "lstm_hard_sigmoid.h5").spec
    assert spec.nodes[0].op.recurrent_activation == "hard_sigmoid_keras2"
    assert spec.nodes[1].op.activation == "hard_sigmoid_keras2"


# --- refusals ----------------------------------------------------------------------------------


def test_refuses_every_unsupported_layer_at_once(tmp_path):
    inp = keras.Input((T, F))
    x = layers.Conv1DTranspose(4, 2, name="my_conv")(inp)  # Conv1D converts now; its transpose does not
    x = layers.Lambda(lambda t: t * 2.0, name="my_lambda")(x)
    x = layers.LSTM(3, return_sequences=True)(x)
    x = layers.Bidirectional(layers.LSTM(2), merge_mode=None, name="bi_none")(x)
    model = keras.Model(inp, x, name="refused")
    for fmt in ("keras", "h5"):
        model.save(tmp_path / f"refused.{fmt}")
        with pytest.raises(UnsupportedModel) as info:
            edgernn.convert(tmp_path / f"refused.{fmt}")
        text = str(info.value)
        assert "my_conv" in text and "Conv1D" in text and "my_lambda" in text and "bi_none" in text
        assert len(info.value.problems) == 3


def test_refuses_lambda_without_running_it(tmp_path):
    marker = tmp_path / "lambda_ran"

    def touch(t, marker=str(marker)):
        open(marker, "w").close()
        return t

    model = seq(layers.Lambda(touch, name="evil"), layers.LSTM(2))
    model.save(tmp_path / "lambda.keras")
    marker.unlink(missing_ok=True)  # Keras ran it while building the model
    with pytest.raises(UnsupportedModel, match="evil"):
        edgernn.convert(tmp_path / "lambda.keras")
    assert not marker.exists()


def test_refuses_options_without_ir_equivalent(tmp_path):
    model = seq(
        layers.LSTM(3, return_sequences=True, name="ok"),
        layers.LeakyReLU(negative_slope=0.3, name="leaky"),
        layers.Dense(2, activation="sparsemax", name="sparse"),
        layers.Activation("glu", name="glu"),
    )
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(tmp_path / "m.keras")
    text = str(info.value)
    assert "leaky" in text and "sparse" in text and "glu" in text and "'ok'" not in text


def test_refuses_bidirectional_states_when_read(tmp_path):
    inp = keras.Input((T, F))
    y, *states = layers.Bidirectional(layers.GRU(2, return_state=True), name="bi")(inp)
    unused = keras.Model(inp, y, name="states_unused")
    check(unused, data(), tmp_path, formats=("keras",))
    read = keras.Model(inp, [y, states[0]], name="states_read")
    read.save(tmp_path / "read.keras")
    with pytest.raises(UnsupportedModel, match="bi"):
        edgernn.convert(tmp_path / "read.keras")


def test_refuses_subclassed_and_nested_models(tmp_path):
    inner = seq(layers.LSTM(2))
    outer = keras.Sequential([keras.Input((T, F)), inner, layers.Dense(1)], name="outer")
    outer.save(tmp_path / "nested.keras")
    with pytest.raises(UnsupportedModel, match="nested"):
        edgernn.convert(tmp_path / "nested.keras")


# --- malformed files ---------------------------------------------------------------------------


def _rewrite_zip(src, dst, drop=(), replace=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            if item in drop:
                continue
            blob = zin.read(item)
            if replace and item in replace:
                blob = replace[item](blob)
            zout.writestr(item, blob)


@pytest.fixture(scope="module")
def good_keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.keras"
    randomize(seq(layers.LSTM(3), layers.Dense(2))).save(path)
    return path


def test_garbage_files(tmp_path, good_keras_file):
    cases = {}
    (tmp_path / "noise.keras").write_bytes(os.urandom(2000))
    cases["noise.keras"] = "not a Keras model file"
    (tmp_path / "noise.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(500))
    cases["noise.h5"] = ""
    (tmp_path / "truncated.keras").write_bytes(good_keras_file.read_bytes()[:700])
    cases["truncated.keras"] = ""
    _rewrite_zip(good_keras_file, tmp_path / "noconfig.keras", drop={"config.json"})
    cases["noconfig.keras"] = "config.json"
    _rewrite_zip(good_keras_file, tmp_path / "noweights.keras", drop={"model.weights.h5"})
    cases["noweights.keras"] = "model.weights.h5"
    _rewrite_zip(good_keras_file, tmp_path / "badjson.keras", replace={"config.json": lambda b: b[:-10]})
    cases["badjson.keras"] = "JSON"
    _rewrite_zip(good_keras_file, tmp_path / "badweights.keras", replace={"model.weights.h5": lambda b: b[:100]})
    cases["badweights.keras"] = "model.weights.h5"

    def wider(blob):  # config says 4 units, the weights hold 3: shapes disagree
        return blob.replace(b'"units": 3', b'"units": 4')

    _rewrite_zip(good_keras_file, tmp_path / "shapes.keras", replace={"config.json": wider})
    cases["shapes.keras"] = "shape"
    _rewrite_zip(good_keras_file, tmp_path / "units.keras", replace={"config.json": lambda b: b.replace(b'"units": 3', b'"units": "3"')})
    cases["units.keras"] = "units"

    def poison(blob):  # a NaN in the LSTM kernel
        import io

        import h5py

        buf = io.BytesIO(blob)
        with h5py.File(buf, "a") as f:
            f["layers/lstm/cell/vars/0"][0, 0] = np.nan
        return buf.getvalue()

    _rewrite_zip(good_keras_file, tmp_path / "nan.keras", replace={"model.weights.h5": poison})
    cases["nan.keras"] = "NaN"
    randomize(seq(layers.LSTM(3))).save_weights(tmp_path / "only.weights.h5")
    cases["only.weights.h5"] = "model_config"
    for name, words in cases.items():
        with pytest.raises(InvalidModelFile) as info:
            edgernn.convert(tmp_path / name)
        assert name in str(info.value) and words in str(info.value), (name, str(info.value))


def test_unknown_option_is_an_error(good_keras_file):
    with pytest.raises(TypeError):
        edgernn.convert(good_keras_file, bogus=1)


def test_weight_groups_found_without_name_attributes(tmp_path):
    """Keras < 3.10 wrote no ``name`` attribute on vars groups: the class-name paths must do."""
    import h5py

    model = randomize(seq(layers.LSTM(3, return_sequences=True), layers.LSTM(2, return_sequences=True), layers.Dense(2), layers.Dense(1)))
    model.save(tmp_path / "m.keras")

    def strip(blob):
        import io

        buf = io.BytesIO(blob)
        with h5py.File(buf, "a") as f:
            f.visititems(lambda n, o: o.attrs.__delitem__("name") if "name" in o.attrs else None)
        return buf.getvalue()

    _rewrite_zip(tmp_path / "m.keras", tmp_path / "old.keras", replace={"model.weights.h5": strip})
    assert_same(edgernn.convert(tmp_path / "old.keras").predict(data()), keras_predict(model, data()))


# --- hostile archives: zip bombs and lying headers ---------------------------------------------------


@functools.lru_cache(maxsize=1)
def _deflated_zeros(size: int) -> tuple[bytes, int]:
    """The raw deflate stream and CRC-32 of ``size`` zero bytes (a multiple of 1 MiB), built from one
    compressed 1 MiB segment repeated: a full flush resets the compressor, so every segment is the
    same bytes, and a 2 GiB bomb takes about 2 MB and a second or two to build."""
    import zlib

    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert segment == first
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(chunk, crc)
    return segment * (size >> 20) + compressor.flush(), crc


def _raw_zip(path, members):
    """Write a zip by hand from ``(name, method, crc, data, declared_size)``: what zipfile will not
    write (pre-compressed data, a declared size that is not the data's)."""
    import struct

    out, central = bytearray(), bytearray()
    for name, method, crc, blob, declared in members:
        name_bytes = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(blob), declared, len(name_bytes), 0)
        out += name_bytes + blob
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(blob), declared,
                               len(name_bytes), 0, 0, 0, 0, 0, offset)
        central += name_bytes
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out))


def _bomb_in_config(good_keras_file, path, declared=None):
    """``good_keras_file`` with its config.json replaced by 2 GiB of deflated zeros (declared honestly,
    or as ``declared`` bytes)."""
    import zlib

    size = 2 << 30
    bomb, crc = _deflated_zeros(size)
    members = [("config.json", 8, crc, bomb, size if declared is None else declared)]
    with zipfile.ZipFile(good_keras_file) as archive:
        for name in ("metadata.json", "model.weights.h5"):
            blob = archive.read(name)
            members.append((name, 0, zlib.crc32(blob), blob, len(blob)))
    _raw_zip(path, members)
    assert path.stat().st_size < 4 << 20
    return path


@pytest.mark.parametrize("declared", [None, 1000, (16 << 20) - 1], ids=["honest", "lies_small", "lies_at_limit"])
def test_zip_bomb_in_config_is_refused_quickly(good_keras_file, tmp_path, declared):
    """2 GiB of zeros in config.json, declared as such (refused before decompressing) or declared
    smaller (decompression stops at the declared size, then the CRC fails): refused within 5 s,
    with at most the 16 MiB JSON bound ever held in memory. ``convert`` reads the file in a child
    process, out of tracemalloc's sight, so the memory is measured on the same read in process."""
    import time
    import tracemalloc

    from edgernn.importers import keras as importer

    path = _bomb_in_config(good_keras_file, tmp_path / "bomb.keras", declared)
    start = time.perf_counter()
    with pytest.raises(InvalidModelFile) as info:
        edgernn.convert(path, verify=False)
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelFile):
            importer._read_container(path, path.name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "bomb.keras" in str(info.value) and "config.json" in str(info.value), str(info.value)
    assert elapsed < 5, elapsed
    assert peak < 40 << 20, peak


def test_keras_archive_bounds(good_keras_file, tmp_path, monkeypatch):
    """Every member read is bounded, and so is the number of members and the weight datasets."""
    from edgernn.importers import keras as importer

    padded = tmp_path / "good.keras"  # metadata.json padded past config.json, so it alone is over its bound
    _rewrite_zip(good_keras_file, padded, replace={"metadata.json": lambda b: b + b" " * 10_000})
    for name, attribute in (("config.json", "_MAX_JSON_BYTES"), ("metadata.json", "_MAX_JSON_BYTES"),
                            ("model.weights.h5", "_MAX_WEIGHTS_BYTES")):
        size = zipfile.ZipFile(padded).getinfo(name).file_size
        monkeypatch.setattr(importer.container, attribute, size - 1)
        if name == "model.weights.h5":
            monkeypatch.setattr(importer.container, "_MAX_JSON_BYTES", 1 << 20)
        with pytest.raises(InvalidModelFile, match=rf"good\.keras: {name} declares {size} bytes, over the {size - 1} limit"):
            edgernn.convert(padded if name == "metadata.json" else good_keras_file, verify=False)
        monkeypatch.undo()
    many = tmp_path / "many.keras"
    _rewrite_zip(good_keras_file, many)
    with zipfile.ZipFile(many, "a") as archive:
        for k in range(101):
            archive.writestr(f"junk/{k}", b"")
    with pytest.raises(InvalidModelFile, match="many.keras: the .keras archive holds 104 members, over the 100 limit"):
        edgernn.convert(many, verify=False)
    monkeypatch.setattr(importer.weights, "_MAX_ARRAY_BYTES", 40)
    with pytest.raises(InvalidModelFile, match=r"good\.keras: layers/.*/vars declares \d+ bytes, over the 40 limit"):
        edgernn.convert(good_keras_file, verify=False)
    monkeypatch.undo()
    monkeypatch.setattr(importer.weights, "_MAX_ARRAYS_BYTES", 100)
    with pytest.raises(InvalidModelFile, match=r"good\.keras: the weights add up to over the 100 limit"):
        edgernn.convert(good_keras_file, verify=False)
    monkeypatch.undo()
    edgernn.convert(good_keras_file, verify=False)  # and within the bounds it converts


def test_compressed_hdf5_dataset_declaring_terabytes(tmp_path):
    """A legacy .h5 whose weight dataset is chunked and compressed (or never written) can declare any
    shape in a tiny file: the declared size is refused before h5py allocates it."""
    import h5py

    path = tmp_path / "huge.h5"
    randomize(seq(layers.LSTM(3), layers.Dense(2, name="head"))).save(path)
    with h5py.File(path, "a") as h5:
        group = h5["model_weights/head"]
        name = [n for n in group.attrs["weight_names"] if "kernel" in str(n)][0]
        name = name.decode() if isinstance(name, bytes) else str(name)
        del group[name]
        group.create_dataset(name, shape=(1 << 20, 1 << 20), dtype="f4", chunks=(1024, 1024), compression="gzip")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(InvalidModelFile, match=r"huge\.h5: model_weights/head/.*declares 4398046511104 bytes, over the"):
        edgernn.convert(path, verify=False)


def _foreign_rebuild(message):  # what a library's exception reducer names (tblib's: its own module)
    return InvalidModelFile(message)


def test_child_errors_cross_whatever_reducer_is_registered(tmp_path):
    """A library that registers a pickle reducer for exceptions (tblib's, which TensorFlow installs
    on import where dask's distributed brought tblib) does not stop the HDF5 reader child's error,
    which the parent's allow-list admits as its class and arguments only."""
    import copyreg

    (tmp_path / "noise.keras").write_bytes(os.urandom(2000))
    copyreg.pickle(InvalidModelFile, lambda exc: (_foreign_rebuild, (str(exc),)))
    try:
        with pytest.raises(InvalidModelFile, match=r"^noise\.keras: not a Keras model file") as info:
            edgernn.convert(tmp_path / "noise.keras")
        assert type(info.value) is InvalidModelFile
    finally:
        copyreg.dispatch_table.pop(InvalidModelFile, None)
