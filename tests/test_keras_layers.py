"""The layers around an RNN beyond the convolutional front-end (issue #16), and the IR's tracking
of sequence lengths: against live Keras 3 (.keras and .h5) and tf-keras (Keras 2 .h5, written in a
subprocess); the store round trip and hostile headers; refusals naming the layer.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from test_conv_layers import KERAS2_RANDOMIZE, _rewrite, check, data, randomize, seq
from test_keras_import import ATOL, RTOL, _rewrite_zip, keras, keras2_files, layers

import edgernn
from edgernn import ir, kernels, reference
from edgernn.errors import EdgernnError, InvalidInput, InvalidModelFile, UnsupportedModel
from edgernn.graph import execute, min_steps
from edgernn.summary import describe

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

T, F = 12, 3


def assert_refused(model, tmp_path, text):
    """Converting ``model`` raises UnsupportedModel with a problem naming layer 'bad' and ``text``."""
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(tmp_path / "m.keras")
    assert any("'bad'" in p and text in p for p in info.value.problems), info.value.problems


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


@pytest.mark.parametrize("padding, fixed", [("same", True), ("same", False), ("valid", True), ("valid", False)])
def test_mask_through_a_merge_with_a_conv_branch(padding, fixed):
    """A merge is on its inputs' time axes at once (their lengths must agree), so a Masking mask on one
    input applies to the merged sequence, as Keras carries it; a "valid" conv's shorter branch is
    refused in validation with a fixed length, at predict with a variable one."""
    masking = ir.Masking(name="masking")
    nodes = (ir.Node(masking, ("x",), ("m", "m:mask")),
             ir.Node(_conv("conv", filters=F, padding=padding), ("m",), ("conv",)),
             ir.Node(ir.Merge(name="add", mode="add"), ("m", "conv"), ("add",)),
             ir.Node(_gru("gru", F), ("add",), ("gru",), mask="m:mask"))
    inputs = (ir.Input("x", F, timesteps=T if fixed else None),)
    if padding == "valid" and fixed:
        with pytest.raises(InvalidModelFile, match=r"'add' \(Merge\) joins sequences of \[10, 12\] timesteps"):
            ir.ModelSpec(inputs, nodes, ("gru",))
        return
    m = edgernn.Model(ir.ModelSpec(inputs, nodes, ("gru",)))
    x = data()
    x[1, 5:] = 0.0
    if padding == "valid":
        with pytest.raises(InvalidInput, match="joins sequences of"):
            m.predict(x)
        return
    masked = x * np.any(x != 0, axis=-1, keepdims=True)
    merged = masked + reference.conv1d(nodes[1].op, masked)
    expected = reference.recurrent_sequence(nodes[3].op, merged, np.any(x != 0, axis=-1))[0]
    np.testing.assert_allclose(m.predict(x), expected, atol=ATOL, rtol=RTOL)

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


# --- multi-branch graphs: merges and Concatenate ----------------------------------------------------


def check_functional(model, xs, tmp_path, formats=("keras", "h5")):
    """``check`` for a functional model of one or several inputs."""
    randomize(model)
    expected = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    converted = []
    for fmt in formats:
        path = tmp_path / f"{model.name}.{fmt}"
        model.save(path)
        m = edgernn.convert(path)
        ours = m.predict(*xs)
        np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(execute(m.spec, list(xs), reference)[0], expected, atol=ATOL, rtol=RTOL)
        converted.append(m)
    return converted


def test_residual_lstm_stack(tmp_path):
    inp = keras.Input(shape=(None, 6))
    h = layers.LSTM(6, return_sequences=True, name="lstm1")(inp)
    h = layers.Add(name="residual1")([inp, h])
    h2 = layers.LSTM(6, return_sequences=True, name="lstm2")(h)
    h = layers.Add(name="residual2")([h, h2])
    out = layers.Dense(2, name="head")(layers.GRU(4)(h))
    (m, _) = check_functional(keras.Model(inp, out), [data(features=6)], tmp_path)
    assert [type(n.op).__name__ for n in m.spec.nodes].count("Merge") == 2
    assert m.spec.nodes[1].inputs == (m.spec.inputs[0].name, "lstm1")
    x = data(features=6)  # it streams (tests/test_dag_stream.py has the details): run's last row is predict's
    np.testing.assert_allclose(m.stream(x.shape[0]).run(x)[:, -1], m.predict(x), atol=ATOL, rtol=RTOL)
    qmodel = m.quantize(data(features=6))  # the firmware runs such graphs too (tests/test_firmware_merge.py)
    assert [layer.kind for layer in qmodel.spec.layers].count("merge") == 2


def test_parallel_conv_branches_concatenated(tmp_path):
    inp = keras.Input(shape=(T, F))
    a = layers.Conv1D(4, 3, padding="same", activation="relu")(inp)
    b = layers.Conv1D(3, 5, padding="same")(inp)
    c = layers.MaxPooling1D(3, strides=1, padding="same")(inp)
    h = layers.Concatenate(name="branches")([a, b, c])
    out = layers.Dense(2)(layers.LSTM(5)(h))
    (m, _) = check_functional(keras.Model(inp, out), [data()], tmp_path)
    assert m.spec.tensor_shape("branches") == (3, 4 + 3 + F) and m.spec.tensor_steps("branches") == T


@pytest.mark.parametrize("cls", [layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum,
                                 layers.Minimum, layers.Concatenate])
def test_two_inputs_merged(cls, tmp_path):
    a, b = keras.Input(shape=(None, F), name="a"), keras.Input(shape=(None, F), name="b")
    ha = layers.GRU(4, name="ga")(a)
    hb = layers.LSTM(4, name="lb")(b)
    out = layers.Dense(3)(cls(name="join")([ha, hb]))
    (m, _) = check_functional(keras.Model([a, b], out), [data(), data(seed=2)], tmp_path)
    x1, x2 = data(), data(seed=2)  # it streams, a timestep of each input per step (tests/test_dag_stream.py)
    np.testing.assert_allclose(m.stream(x1.shape[0]).run(x1, x2)[:, -1], m.predict(x1, x2), atol=ATOL, rtol=RTOL)


def test_three_sequences_merged_per_timestep(tmp_path):
    inputs = [keras.Input(shape=(None, F)) for _ in range(3)]
    h = layers.Average()([layers.Dense(4)(x) for x in inputs])
    out = layers.LSTM(3)(layers.Maximum()([h, layers.Dense(4)(inputs[0]), layers.Dense(4, activation="tanh")(h)]))
    check_functional(keras.Model(inputs, out), [data(seed=s) for s in range(3)], tmp_path)


def test_concatenate_over_time(tmp_path):
    a, b = keras.Input(shape=(5, F)), keras.Input(shape=(7, F))
    h = layers.Concatenate(axis=1, name="joined")([a, layers.Conv1D(F, 2, padding="causal")(b)])
    out = layers.GRU(3)(h)
    (m, _) = check_functional(keras.Model([a, b], out), [data(steps=5), data(steps=7, seed=3)], tmp_path)
    assert m.spec.tensor_steps("joined") == 12


def test_merge_keeps_a_shared_mask(tmp_path):
    """Masking, then a residual branch: the merge's mask is the Masking's, which the LSTM honours."""
    inp = keras.Input(shape=(T, F))
    masked = layers.Masking(0.0)(inp)
    h = layers.Add()([masked, layers.Dense(F)(masked)])
    out = layers.LSTM(3)(h)
    x = data()
    x[0, 7:] = 0.0
    x[2, 3:5] = 0.0
    (m, _) = check_functional(keras.Model(inp, out), [x], tmp_path)
    assert m.spec.nodes[-1].mask is not None


def test_merge_with_an_unmasked_input_has_no_mask_in_keras3(tmp_path):
    """Keras 3 ORs a merge's masks and drops the mask when an input has none (tf-keras ANDs them and
    keeps it: the Keras 2 file of this model is in KERAS2_SCRIPT, "half_masked")."""
    a, b = keras.Input(shape=(T, F)), keras.Input(shape=(T, F))
    h = layers.Add(name="join")([layers.Masking(0.0)(a), layers.Dense(F)(b)])
    x = data()
    x[0, 6:] = 0.0
    (m, _) = check_functional(keras.Model([a, b], layers.LSTM(3)(h)), [x, data(seed=2)], tmp_path)
    assert m.spec.nodes[-1].mask is None

@pytest.mark.parametrize("other", ["unmasked", "masked", "codes"])
def test_concatenate_of_masked_inputs_keras3(other, tmp_path):
    """Keras 3 records a Concatenate's mask as keras.ops nodes (expand_dims, zeros_like, logical_or,
    ones_like, concatenate, any): True at a step where any input's mask is, so all True when an input
    is unmasked (the GRU after it sees no mask), the one mask when every input carries it."""
    if other == "codes":
        codes = keras.Input(shape=(T,), dtype="int32")
        embedded = layers.Embedding(VOCAB, F, mask_zero=True)(codes)
        h = layers.Concatenate(name="cat")([layers.LSTM(4, return_sequences=True)(embedded), embedded])
        model = keras.Model(codes, layers.GRU(3)(h))
        x = np.random.default_rng(4).integers(1, VOCAB, size=(4, T))
        x[0, 7:] = 0
        x[2, 2:5] = 0
    else:
        inp = keras.Input(shape=(T, F))
        masked = layers.Masking(0.0)(inp)
        h = layers.Concatenate(name="cat")([layers.LSTM(4, return_sequences=True)(masked),
                                            layers.Dense(2)(masked if other == "masked" else inp)])
        model = keras.Model(inp, layers.GRU(3)(h))
        x = data()
        x[0, 7:] = 0.0
        x[2, 2:5] = 0.0
    (m, _) = check_functional(model, [x], tmp_path)
    assert (m.spec.nodes[-1].mask is None) == (other == "unmasked")


def test_merges_of_different_lengths_refused_at_predict(tmp_path):
    a, b = keras.Input(shape=(None, F)), keras.Input(shape=(None, F))
    out = layers.LSTM(2)(layers.Add(name="join")([a, b]))
    model = randomize(keras.Model([a, b], out))
    model.save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    with pytest.raises(InvalidInput, match=r"'join' \(Merge\) joins sequences of \[5, 6\] timesteps"):
        m.predict(data(steps=5), data(steps=6))


@pytest.mark.parametrize("build, text", [
    (lambda a, b: layers.Add(name="bad")([a, layers.Dense(1)(b)]), "different sizes"),
    (lambda a, b: layers.Concatenate(axis=0, name="bad")([a, b]), "axis=0"),
    (lambda a, b: layers.Add(name="bad")([layers.Masking(1.0)(a), layers.Masking(2.0)(b)]), "different masks"),
    (lambda a, b: layers.Concatenate(axis=1, name="bad")([layers.Masking(1.0)(a), b]), "masked sequences"),
])
def test_merge_refusals_named(build, text, tmp_path):
    a, b = keras.Input(shape=(T, F)), keras.Input(shape=(T, F))
    assert_refused(keras.Model([a, b], layers.LSTM(2)(build(a, b))), tmp_path, text)


@pytest.fixture(scope="module")
def branchy(tmp_path_factory):
    a, b = keras.Input(shape=(T, F), name="a"), keras.Input(shape=(T, F), name="b")
    h = layers.Concatenate(name="cat")([layers.Conv1D(4, 3, padding="causal", name="conv")(a), b])
    h = layers.Subtract(name="sub")([layers.Dense(4, name="d1")(h), layers.Dense(4, name="d2")(h)])
    return converted(tmp_path_factory, randomize(keras.Model([a, b], layers.GRU(3, name="gru")(h))))


def converted(tmp_path_factory, model):
    """``(edgernn model, keras model)`` of a model saved as .keras; the .ernn of it loaded back."""
    path = tmp_path_factory.mktemp(model.name) / "m.keras"
    model.save(path)
    return edgernn.convert(path), model


def round_trip(m, tmp_path, *xs):
    """The model saved and loaded back, which predicts as the model did."""
    m.save(tmp_path / "m.ernn")
    loaded = edgernn.load(tmp_path / "m.ernn")
    np.testing.assert_array_equal(loaded.predict(*xs), m.predict(*xs))
    return loaded


def test_merge_store_round_trip(branchy, tmp_path):
    m, model = branchy
    xs = [data(), data(seed=5)]
    loaded = round_trip(m, tmp_path, *xs)
    np.testing.assert_allclose(loaded.predict(*xs), model.predict(xs, verbose=0), atol=ATOL, rtol=RTOL)
    kinds = {n.op.name: n.op for n in loaded.spec.nodes}
    assert kinds["cat"].axis == "features" and kinds["sub"].mode == "subtract"
    assert "Subtract" in " ".join(layer["op"] for layer in describe(loaded.spec)["layers"])


def _node(header, name):
    return next(n for n in header["nodes"] if n["op"]["name"] == name)


@pytest.mark.parametrize("mutate, message", [
    (lambda h: _node(h, "sub")["op"].__setitem__("mode", "divide"), "mode must be one of"),
    (lambda h: _node(h, "cat")["op"].__setitem__("axis", -1), "axis must be str"),
    (lambda h: _node(h, "cat")["op"].__setitem__("axis", "batch"), "axis must be one of"),
    (lambda h: _node(h, "sub")["inputs"].append("d1"), "(subtract) takes two inputs, gets 3"),
    (lambda h: _node(h, "sub").__setitem__("inputs", ["d1"]), "takes two or more inputs, gets 1"),
    (lambda h: _node(h, "gru")["inputs"].append("d1"), "takes one input, gets 2"),
    (lambda h: _node(h, "sub")["inputs"].__setitem__(1, "cat"), "merges tensors of one shape"),
    (lambda h: _node(h, "cat")["inputs"].__setitem__(1, "nowhere"), "'nowhere'"),
    (lambda h: _node(h, "sub").__setitem__("mask", "a"), "not a mask"),
])
def test_hostile_merge_fields_refused(branchy, tmp_path, mutate, message):
    branchy[0].save(tmp_path / "ok.ernn")
    _rewrite(tmp_path / "ok.ernn", tmp_path / "bad.ernn", mutate)
    assert message in refused(tmp_path / "bad.ernn")


# --- normalization layers ---------------------------------------------------------------------------


@pytest.mark.parametrize("options", [dict(), dict(epsilon=0.1), dict(center=False), dict(scale=False),
                                     dict(center=False, scale=False), dict(axis=[-1], epsilon=1e-5),
                                     dict(rms_scaling=True)], ids=str)
def test_layer_normalization(options, tmp_path):
    model = seq(layers.Conv1D(5, 3, padding="same"), layers.LayerNormalization(**options),
                layers.LSTM(4, return_sequences=True), layers.LayerNormalization(**options), layers.Dense(2))
    (m, _) = check(model, data() * 3.0 + 1.0, tmp_path)
    op = m.spec.nodes[1].op
    assert type(op).__name__ == "LayerNorm" and op.kind == ("rms_scaling" if "rms_scaling" in options else "layer")


def test_layer_normalization_on_vectors_with_a_mask(tmp_path):
    x = data()
    x[1, 6:] = 0.0
    model = seq(layers.Masking(0.0), layers.LayerNormalization(), layers.GRU(3, return_sequences=True),
                layers.LayerNormalization(), layers.LSTM(2), layers.LayerNormalization())
    (m, _) = check(model, x, tmp_path)
    assert m.spec.nodes[2].mask is not None  # the mask crossed the LayerNorm


@pytest.mark.parametrize("epsilon", [1e-6, 0.5])
def test_rms_normalization(epsilon, tmp_path):
    check(seq(layers.Dense(6), layers.RMSNormalization(epsilon=epsilon), layers.GRU(3)), data(), tmp_path)


def test_rms_normalization_drops_the_mask(tmp_path):
    """Keras 3's RMSNormalization does not support masking: the mask stops there, as in Keras."""
    x = data()
    x[0, 5:] = 0.0
    (m, _) = check(seq(layers.Masking(0.0), layers.RMSNormalization(), layers.GRU(3)), x, tmp_path)
    assert m.spec.nodes[-1].mask is None


def _sensor_data(batch=4, steps=T, seed=4):
    """Raw counts: a large mean against a small spread per feature."""
    rng = np.random.default_rng(seed)
    return (np.array([1000.0, -250.0, 3.0]) + rng.normal(size=(batch, steps, F)) * [0.05, 2.0, 0.001]).astype(np.float32)


def test_adapted_normalization(tmp_path):
    """An adapted Normalization on raw sensor counts: computed as (x - mean) / std, within the
    tolerance where the folded x * (1/std) - mean/std (an Affine) is not."""
    norm = layers.Normalization(name="norm")
    norm.adapt(_sensor_data(batch=64, seed=9))
    model = seq(norm, layers.LSTM(4), layers.Dense(2))
    x = _sensor_data()
    for layer in model.layers[1:]:  # not randomize(model): it would draw the adapted mean and variance too
        layer.set_weights([np.random.default_rng(0).normal(0, 0.5, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    expected = norm(x).numpy()
    for fmt in ("keras", "h5"):
        model.save(tmp_path / f"m.{fmt}")
        m = edgernn.convert(tmp_path / f"m.{fmt}")
        op = m.spec.nodes[0].op
        assert type(op).__name__ == "Standardize"
        np.testing.assert_allclose(m.predict(x), model.predict(x, verbose=0), atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(kernels.standardize(op, x), expected, atol=ATOL, rtol=RTOL)
    folded = ir.Affine(name="a", scale=ir.as_weight(1 / op.std), offset=ir.as_weight(-op.mean / op.std))
    worst = np.max(np.abs(kernels.affine(folded, x) - expected) - RTOL * np.abs(expected))
    assert worst > ATOL, "the folded form would have been exact enough here"


@pytest.mark.parametrize("mean, variance", [(2.0, 4.0), ([1.0, -2.0, 0.5], [0.25, 9.0, 0.0])])
@pytest.mark.parametrize("invert", [False, True])
def test_normalization_given_mean_and_variance(mean, variance, invert, tmp_path):
    """Given in the config (no weights), scalar or per feature; a variance of 0 divides by 1e-7's
    floor as Keras does; invert=True is an Affine."""
    model = seq(layers.Normalization(mean=mean, variance=variance, invert=invert), layers.GRU(3))
    (m, _) = check(model, data() * 1e-6 if not invert else data(), tmp_path)
    assert type(m.spec.nodes[0].op).__name__ == ("Affine" if invert else "Standardize")


@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (0.5, -1.0), ([0.5, 2.0, -3.0], 0.25),
                                           ([0.5, 2.0, -3.0], [1.0, 0.0, -2.0])], ids=str)
def test_rescaling(scale, offset, tmp_path):
    """Rescaling(scale, offset): x * scale + offset (numbers, or Keras 3's arrays per feature), an
    Affine the mask crosses; it streams, and the firmware runs it."""
    x = data() * 100.0
    x[1, 6:] = 0.0
    model = seq(layers.Masking(0.0), layers.Rescaling(np.asarray(scale, np.float32) if isinstance(scale, list)
                                                      else scale, offset=np.asarray(offset, np.float32)
                                                      if isinstance(offset, list) else offset),
                layers.GRU(3, return_sequences=True))
    for m in check(model, x, tmp_path):
        op = m.spec.nodes[1].op
        assert type(op).__name__ == "Affine" and m.spec.nodes[2].mask is not None
        np.testing.assert_array_equal(op.scale, np.broadcast_to(np.float32(scale), (F,)))
        stream = m.stream(len(x))
        np.testing.assert_allclose(np.stack([stream.step(x[:, t]) for t in range(T)], 1), m.predict(x),
                                   atol=ATOL, rtol=RTOL)
        assert m.quantize(x, "float32").predict(x).shape == (len(x), T, 3)


@pytest.mark.parametrize("scale, message", [("2", "scale='2' is not a number or a vector of numbers"),
                                            ([1.0, 2.0], "scale has 2 values for 3 features")])
def test_rescaling_refusals_named(scale, message, tmp_path):
    model = seq(layers.Rescaling(1.0, name="rescale"), layers.GRU(3))
    model.save(tmp_path / "m.keras")

    def edit(blob):
        config = json.loads(blob)
        next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Rescaling")["config"]["scale"] = scale
        return json.dumps(config).encode()

    _rewrite_zip(tmp_path / "m.keras", tmp_path / "bad.keras", replace={"config.json": edit})
    with pytest.raises(EdgernnError) as info:
        edgernn.convert(tmp_path / "bad.keras")
    assert message in str(info.value) + " ".join(info.value.problems)


@pytest.fixture(scope="module")
def normed(tmp_path_factory):
    norm = layers.Normalization(name="norm")
    norm.adapt(data(batch=8))
    model = randomize(seq(norm, layers.LayerNormalization(name="ln"), layers.LSTM(3, name="lstm")))
    norm.adapt(data(batch=8))  # randomize also drew the adapted weights
    return converted(tmp_path_factory, model)


def test_normalization_store_round_trip(normed, tmp_path):
    m, model = normed
    loaded = round_trip(m, tmp_path, data())
    np.testing.assert_allclose(loaded.predict(data()), model.predict(data(), verbose=0), atol=ATOL, rtol=RTOL)
    ops = [layer["op"] for layer in describe(loaded.spec)["layers"]]
    assert ops[0].startswith("Standardize(3)") and ops[1].startswith("LayerNorm(3), kind=layer")
    with pytest.raises(EdgernnError) as info:  # streams (tests/test_row_stream.py), not in the firmware
        loaded.quantize(data())
    assert "'ln' is LayerNorm" in str(info.value) + " ".join(info.value.problems)  # (the Normalization runs)


@pytest.mark.parametrize("node, field, value, message", [
    (1, "kind", "batch", "kind must be one of"),
    (1, "epsilon", -1.0, "epsilon must be a finite number >= 0"),
    (1, "epsilon", "1e-3", "epsilon must be float"),
    (1, "beta", None, None),  # allowed: no beta
    (0, "std", None, "std must not be null"),
])
def test_hostile_normalization_fields(normed, tmp_path, node, field, value, message):
    normed[0].save(tmp_path / "ok.ernn")
    _rewrite(tmp_path / "ok.ernn", tmp_path / "bad.ernn", lambda h: h["nodes"][node]["op"].__setitem__(field, value))
    if message is None:
        assert edgernn.load(tmp_path / "bad.ernn").spec.nodes[node].op.beta is None
    else:
        assert message in refused(tmp_path / "bad.ernn")


def test_hostile_normalization_arrays(normed, tmp_path):
    """A zero std, and a gamma of the wrong size, written as .npy members."""
    m = normed[0]
    norm, ln = m.spec.nodes[0].op, m.spec.nodes[1].op
    with pytest.raises(InvalidModelFile, match="std must be > 0"):
        ir.Standardize(name="s", mean=norm.mean, std=ir.as_weight(norm.std * 0))
    with pytest.raises(InvalidModelFile, match="beta has shape"):
        ir.LayerNorm(name="l", kind="layer", epsilon=1e-3, gamma=ln.gamma, beta=ir.as_weight(np.ones(4)))
    with pytest.raises(InvalidModelFile, match="beta is only for kind 'layer'"):
        ir.LayerNorm(name="l", kind="rms", epsilon=1e-3, gamma=ln.gamma, beta=ln.beta)
    with pytest.raises(InvalidModelFile, match="takes 3 features, gets 4"):
        ir.ModelSpec((ir.Input("x", 4),), (ir.Node(ln, ("x",), ("y",)),), ("y",))


@pytest.mark.parametrize("layer, text", [
    (lambda: layers.LayerNormalization(axis=1, name="bad"), "is not supported (the last, feature axis only)"),
    (lambda: layers.LayerNormalization(axis=[1, 2], name="bad"), "is not supported (the last, feature axis only)"),
    (lambda: layers.Normalization(axis=1, mean=0.0, variance=1.0, name="bad"), "is not supported (the last"),
])
def test_normalization_refusals_named(layer, text, tmp_path):
    assert_refused(seq(layer(), layers.LSTM(2)), tmp_path, text)


@pytest.mark.parametrize("kind", ["layer", "rms_scaling", "rms"])
def test_layer_norm_kernel_matches_reference(kind):
    rng = np.random.default_rng(3)
    op = ir.LayerNorm(name="l", kind=kind, epsilon=1e-3, gamma=ir.as_weight(rng.normal(size=5)),
                      beta=ir.as_weight(rng.normal(size=5)) if kind == "layer" else None)
    x = rng.normal(2.0, 3.0, size=(2, 7, 5))
    ours = kernels.layer_norm(op, x)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference.layer_norm(op, x), atol=ATOL, rtol=RTOL)

# --- Embedding ------------------------------------------------------------------------------------

VOCAB = 11


def codes(batch=4, steps=T, seed=1, padded=True):
    """Integer codes; with ``padded``, rows end in (and hold) zeros, the padding code of mask_zero."""
    x = np.random.default_rng(seed).integers(1, VOCAB, size=(batch, steps))
    if padded:
        x[0, steps // 2:] = 0
        x[2, 3:5] = 0
    return x.astype(np.int32)


def check_codes(model, x, tmp_path):
    """``check`` for a model of integer inputs (its float64 reference run too)."""
    randomize(model)
    expected = model.predict(x, verbose=0)
    converted = []
    for fmt in ("keras", "h5"):
        model.save(tmp_path / f"m.{fmt}")
        m = edgernn.convert(tmp_path / f"m.{fmt}")
        np.testing.assert_allclose(m.predict(x), expected, atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(execute(m.spec, [x], reference)[0], expected, atol=ATOL, rtol=RTOL)
        converted.append(m)
    return converted


@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_embedding_lstm(mask_zero, dtype, tmp_path):
    model = keras.Sequential([keras.Input(shape=(T,), dtype=dtype), layers.Embedding(VOCAB, 5, mask_zero=mask_zero),
                              layers.LSTM(4), layers.Dense(2)])
    (m, _) = check_codes(model, codes(), tmp_path)
    assert m.spec.inputs[0].dtype == "int" and (m.spec.nodes[1].mask is not None) == mask_zero


def test_embedding_mask_zero_functional(tmp_path):
    """Keras 3 writes the mask as keras.ops.not_equal(codes, 0) for the RNN: the Embedding's mask."""
    inp = keras.Input(shape=(T,), dtype="int32")
    h = layers.Embedding(VOCAB, 4, mask_zero=True)(inp)
    h = layers.GRU(3, return_sequences=True)(h)
    out = layers.Dense(2)(layers.LSTM(3)(layers.LayerNormalization()(h)))
    (m, _) = check_codes(keras.Model(inp, out), codes(), tmp_path)
    masked = [n for n in m.spec.nodes if n.mask]
    assert len(masked) == 2 and {n.mask for n in masked} == {m.spec.nodes[0].outputs[1]}


def test_embedding_with_a_float_branch(tmp_path):
    """Codes and a float sequence, merged per timestep."""
    words, sensor = keras.Input(shape=(T,), dtype="int32"), keras.Input(shape=(T, F))
    h = layers.Concatenate()([layers.Embedding(VOCAB, 4)(words), sensor])
    model = randomize(keras.Model([words, sensor], layers.LSTM(3)(h)))
    xs = [codes(), data()]
    model.save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    np.testing.assert_allclose(m.predict(*xs), model.predict(xs, verbose=0), atol=ATOL, rtol=RTOL)
    assert [i.dtype for i in m.spec.inputs] == ["int", "float32"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    model = keras.Sequential([keras.Input(shape=(T,), dtype="int32"),
                              layers.Embedding(VOCAB, 4, mask_zero=True, name="emb"), layers.LSTM(3, name="lstm")])
    return converted(tmp_path_factory, randomize(model))


@pytest.mark.parametrize("bad, text", [
    (1.5, "got 1.5"), (-1, "got -1.0"), (VOCAB, f"in [0, {VOCAB}), got {float(VOCAB)}"), (np.nan, "got nan"),
])
def test_embedding_refuses_bad_codes(embedded, bad, text):
    x = codes().astype(np.float64)
    x[1, 2] = bad
    with pytest.raises(InvalidInput) as info:
        embedded[0].predict(x)
    assert "'emb' (Embedding) takes integer codes" in str(info.value) and text in str(info.value)
    assert "(at (1, 2))" in str(info.value)


def test_embedding_store_and_refusals(embedded, tmp_path):
    m, model = embedded
    loaded = round_trip(m, tmp_path, codes())
    np.testing.assert_allclose(loaded.predict(codes()), model.predict(codes(), verbose=0), atol=ATOL, rtol=RTOL)
    assert loaded.spec.inputs[0].dtype == "int" and loaded.spec.nodes[0].op.mask_zero is True
    assert describe(loaded.spec)["layers"][0]["op"] == f"Embedding({VOCAB}, 4), mask_zero"
    # the loaded model quantizes for the firmware as the converted one does (tests/test_firmware_embedding.py)
    assert loaded.quantize(codes()).predict(codes()).shape == loaded.predict(codes()).shape
    with pytest.raises(InvalidInput, match="shape"):  # a float sequence is not codes
        loaded.predict(data())


@pytest.mark.parametrize("mutate, message", [
    (lambda h: h["inputs"][0].__setitem__("dtype", "int8"), "input 0 is malformed"),
    (lambda h: h["inputs"][0].pop("dtype"), "integer codes (an int input) are read by Embedding nodes only"),
    (lambda h: h["nodes"][0]["op"].__setitem__("mask_zero", 1), "mask_zero must be bool"),
    (lambda h: h["nodes"][0]["outputs"].pop(), "makes 2 tensors, 1 named"),
    (lambda h: h["inputs"][0].__setitem__("rank", 3), "dtype 'int' with rank 3"),
])
def test_hostile_embedding_fields(embedded, tmp_path, mutate, message):
    embedded[0].save(tmp_path / "ok.ernn")
    _rewrite(tmp_path / "ok.ernn", tmp_path / "bad.ernn", mutate)
    assert message in refused(tmp_path / "bad.ernn")


def test_codes_read_by_another_op_refused():
    emb = ir.Embedding(name="emb", embeddings=ir.as_weight(np.ones((4, 2))))
    dense = ir.Dense(name="d", kernel=ir.as_weight(np.ones((3, 2))))
    with pytest.raises(InvalidModelFile, match="'d': integer codes"):
        ir.ModelSpec((ir.Input("w", 3, rank=2, dtype="int"),), (ir.Node(dense, ("w",), ("d",)),), ("d",))
    with pytest.raises(InvalidModelFile, match="'emb': integer codes"):
        ir.ModelSpec((ir.Input("x", 3, rank=2),), (ir.Node(emb, ("x",), ("e",)),), ("e",))


def test_variable_length_codes_convert(tmp_path):
    """Codes of any length (``Input(shape=(None,))``) convert; predict takes any length (more in
    tests/test_reshape_stream.py)."""
    model = randomize(keras.Sequential([keras.Input(shape=(None,), dtype="int32", name="words"),
                                        layers.Embedding(VOCAB, 4), layers.LSTM(2)]))
    model.save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    assert m.spec.inputs[0].dtype == "int" and m.spec.inputs[0].features == 24  # verification's length
    for steps in (1, 9):
        codes = np.random.default_rng(steps).integers(0, VOCAB, size=(3, steps))
        np.testing.assert_allclose(m.predict(codes), model.predict(codes, verbose=0), atol=ATOL, rtol=RTOL)

# --- depthwise and separable convolutions, reshaping ---------------------------------------------


@pytest.mark.parametrize("options", [dict(kernel_size=3), dict(kernel_size=2, depth_multiplier=2, padding="same"),
                                     dict(kernel_size=3, strides=2, use_bias=False, activation="relu"),
                                     dict(kernel_size=2, dilation_rate=2, depth_multiplier=3, padding="same")], ids=str)
def test_depthwise_conv1d(options, tmp_path):
    (m, _) = check(seq(layers.DepthwiseConv1D(**options, name="dw"), layers.GRU(3)), data(), tmp_path)
    assert m.spec.nodes[0].op.groups == F


@pytest.mark.parametrize("options", [dict(kernel_size=3), dict(kernel_size=2, depth_multiplier=2, padding="same"),
                                     dict(kernel_size=3, strides=2, use_bias=False, activation="tanh"),
                                     dict(kernel_size=3, dilation_rate=2, padding="same")], ids=str)
def test_separable_conv1d(options, tmp_path):
    (m, _) = check(seq(layers.SeparableConv1D(4, **options, name="sep"), layers.LSTM(3)), data(), tmp_path)
    assert [n.op.name for n in m.spec.nodes[:2]] == ["sep/depthwise", "sep"]


@pytest.mark.parametrize("cls, arg", [(layers.ZeroPadding1D, 2), (layers.ZeroPadding1D, (0, 3)),
                                      (layers.Cropping1D, (1, 2)), (layers.Cropping1D, 3), (layers.UpSampling1D, 3)],
                         ids=["pad2", "pad03", "crop12", "crop3", "up3"])
def test_time_padding_cropping_upsampling(cls, arg, tmp_path):
    (m, _) = check(seq(layers.Conv1D(4, 2), cls(arg, name="move"), layers.Conv1D(3, 3), layers.GRU(3)), data(), tmp_path)
    assert m.spec.tensor_steps("move") == cls(arg).compute_output_shape((None, T - 1, 4))[1]


def test_left_zero_padding_before_a_valid_conv1d_is_a_causal_one_that_streams(tmp_path):
    """ZeroPadding1D(((k-1)*d, 0)) read only by a valid Conv1D folds into it as causal padding
    (importers._fold), so the model streams: each step equals predict on the prefix."""
    model = seq(layers.ZeroPadding1D((4, 0), name="pad"), layers.Conv1D(5, 3, dilation_rate=2, name="conv"),
                layers.GRU(3, return_sequences=True))
    (m,) = check(model, data(), tmp_path, formats=("keras",))
    assert [type(n.op).__name__ for n in m.spec.nodes] == ["Conv1D", "Recurrent"]
    assert m.spec.nodes[0].op.padding == "causal"
    x = data(steps=6)
    s = m.stream(x.shape[0])
    steps = np.stack([s.step(x[:, t]) for t in range(6)], axis=1)
    np.testing.assert_allclose(steps, m.predict(x), atol=ATOL, rtol=RTOL)  # causal: step t sees x[:, :t + 1]


def test_cropping_everything_refused():
    with pytest.raises(InvalidModelFile, match="'crop' \\(Pad1D\\) crops all of its input's 4 timesteps"):
        ir.ModelSpec((ir.Input("x", F, timesteps=4),), (ir.Node(ir.Pad1D(name="crop", left=-2, right=-2), ("x",), ("c",)),),
                     ("c",))


@pytest.mark.parametrize("target", [(6, 6), (-1, 2), (36,), (4, -1)])
def test_reshape_of_a_sequence(target, tmp_path):
    check(seq(layers.Dense(3), layers.Reshape(target, name="shape"),
              *([layers.LSTM(2)] if len(target) == 2 else [layers.Dense(2)])), data(), tmp_path)


def test_reshape_of_a_vector_into_a_sequence(tmp_path):
    """An encoder's vector laid out as a sequence (a forecaster's Dense(T * F) -> Reshape((T, F)))."""
    (m, _) = check(seq(layers.LSTM(8), layers.Dense(12), layers.Reshape((4, 3), name="shape"),
                       layers.GRU(2, return_sequences=True)), data(), tmp_path)
    assert m.spec.tensor_shape("shape") == (3, 3) and m.spec.tensor_steps("shape") == 4


def test_permute(tmp_path):
    (m, _) = check(seq(layers.Conv1D(5, 3), layers.Permute((2, 1), name="swap"), layers.LSTM(3)), data(), tmp_path)
    assert m.spec.tensor_shape("swap") == (3, T - 2) and m.spec.tensor_steps("swap") == 5
    free = edgernn.Model(m.spec.replace(inputs=(ir.Input(m.spec.inputs[0].name, F),)))
    with pytest.raises(InvalidInput, match="'swap' \\(Permute\\) takes sequences of 10 timesteps here, gets 11"):
        free.predict(data(steps=T + 1))


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    model = seq(layers.ZeroPadding1D((1, 2), name="pad"), layers.UpSampling1D(2, name="up"),
                layers.Permute((2, 1), name="swap"), layers.Reshape((6, 9), name="shape"),
                layers.Cropping1D((1, 0), name="crop"), layers.SimpleRNN(2, name="rnn"), steps=6)
    return converted(tmp_path_factory, randomize(model))


def test_reshaping_store_round_trip(moved, tmp_path):
    m, model = moved
    x = data(steps=6)
    loaded = round_trip(m, tmp_path, x)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x, verbose=0), atol=ATOL, rtol=RTOL)
    assert [type(n.op).__name__ for n in loaded.spec.nodes] == ["Pad1D", "UpSample1D", "Permute", "Reshape", "Pad1D",
                                                                "Recurrent"]
    with pytest.raises(EdgernnError, match="'pad' is ZeroPadding1D with 2 zero timesteps on the right"):
        loaded.stream()


@pytest.mark.parametrize("node, field, value, message", [
    (0, "left", 1.5, "left must be int"),
    (1, "size", 0, "size must be a positive integer"),
    (2, "steps", 7, "'shape' lays out 6 x 9 values per row, gets rank 3 with 7 features"),
    (3, "features", 16, "lays out 6 x 16 values per row"),
    (3, "input_steps", -1, "input_steps must be an integer >= 0"),
    (4, "left", -6, "crops all of its input's 6 timesteps"),
])
def test_hostile_reshaping_fields(moved, tmp_path, node, field, value, message):
    moved[0].save(tmp_path / "ok.ernn")
    _rewrite(tmp_path / "ok.ernn", tmp_path / "bad.ernn", lambda h: h["nodes"][node]["op"].__setitem__(field, value))
    assert message in refused(tmp_path / "bad.ernn")


@pytest.mark.parametrize("layer, text", [
    (lambda: layers.Permute((1, 2), name="bad"), None),  # the identity: converts
    (lambda: layers.Reshape((2, 3, 6), name="bad"), "is not (T, C) or (C,)"),
    (lambda: layers.Permute((2, 1), name="bad"), "fixed number of timesteps"),
])
def test_reshaping_refusals_named(layer, text, tmp_path):
    model = keras.Sequential([keras.Input(shape=(None if text == "fixed number of timesteps" else T, F)), layer(),
                              layers.LSTM(2) if text is None else layers.Activation("tanh")])
    if text is None:
        check(model, data(), tmp_path)
    else:
        assert_refused(model, tmp_path, text)

# --- Keras 2 (tf-keras) files ------------------------------------------------------------------------

KERAS2_SCRIPT = KERAS2_RANDOMIZE + textwrap.dedent(
    """
    def seqs(n, steps=12, features=3):
        return [rng.normal(size=(4, steps, features)).astype(np.float32) for _ in range(n)]

    models = {}

    inp = L.Input(shape=(None, 6))
    h = L.Add()([inp, L.LSTM(6, return_sequences=True)(inp)])
    h = L.Add()([h, L.LSTM(6, return_sequences=True)(h)])
    models["residual"] = (keras.Model(inp, L.Dense(2)(L.GRU(4)(h))), seqs(1, features=6))

    inp = L.Input(shape=(12, 3))
    h = L.Concatenate()([L.Conv1D(4, 3, padding="same")(inp), L.Conv1D(3, 5, padding="same", activation="relu")(inp),
                         L.MaxPooling1D(3, strides=1, padding="same")(inp)])
    models["branches"] = (keras.Model(inp, L.Dense(2)(L.LSTM(5)(h))), seqs(1))

    a, b, c = L.Input(shape=(12, 3)), L.Input(shape=(12, 3)), L.Input(shape=(12, 3))
    ha, hb, hc = L.GRU(4)(a), L.LSTM(4)(b), L.SimpleRNN(4)(c)
    joined = L.Concatenate()([L.Subtract()([ha, hb]), L.Multiply()([ha, hb, hc]), L.Average()([ha, hc]),
                              L.Maximum()([ha, hb]), L.Minimum()([hb, hc])])
    models["two_inputs"] = (keras.Model([a, b, c], L.Dense(3)(joined)), seqs(3))

    a, b = L.Input(shape=(5, 3)), L.Input(shape=(7, 3))
    h = L.Concatenate(axis=1)([a, L.Conv1D(3, 2, padding="causal")(b)])
    models["over_time"] = (keras.Model([a, b], L.GRU(3)(h)), [seqs(1, 5)[0], seqs(1, 7)[0]])

    inp = L.Input(shape=(12, 3))
    masked = L.Masking(0.0)(inp)
    h = L.Concatenate()([L.Add()([masked, L.Dense(3)(masked)]), masked])
    x = seqs(1)
    x[0][0, 7:] = 0.0
    models["masked_merge"] = (keras.Model(inp, L.LSTM(3)(h)), x)

    a, b = L.Input(shape=(12, 3)), L.Input(shape=(12, 3))
    h = L.Add()([L.Masking(0.0)(a), L.Dense(3)(b)])
    models["half_masked"] = (keras.Model([a, b], L.LSTM(3)(h)), [x[0], seqs(1)[0]])

    models["layer_norm"] = (keras.Sequential([L.Conv1D(5, 3, padding="same", input_shape=(12, 3)),
                                              L.LayerNormalization(), L.LSTM(4, return_sequences=True),
                                              L.LayerNormalization(center=False, epsilon=1e-6),
                                              L.GRU(3), L.LayerNormalization(scale=False, epsilon=0.1)]),
                            [x * 3 + 1 for x in seqs(1)])
    norm = L.Normalization()
    raw = [(np.array([1000.0, -250.0, 3.0]) + rng.normal(size=(4, 12, 3)) * [0.05, 2.0, 0.001]).astype(np.float32)]
    norm.adapt(raw[0])
    m = keras.Sequential([L.Input(shape=(12, 3)), norm, L.LSTM(4), L.Dense(2)])
    randomize(keras.Sequential(m.layers[1:]))
    models["normalization"] = (m, raw)
    models["normalization_given"] = (keras.Sequential([L.Input(shape=(12, 3)),
                                                       L.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 0.5, 0.0]),
                                                       L.Normalization(mean=0.5, variance=2.0, invert=True),
                                                       L.Rescaling(2.0, offset=-0.5), L.GRU(3)]),
                                     [x * 1e-6 for x in seqs(1)])

    words = rng.integers(0, 11, size=(4, 12))
    words[0, 6:] = 0
    models["embedding"] = (keras.Sequential([L.Embedding(11, 5, input_length=12, mask_zero=True), L.LSTM(4)]),
                           [words.astype(np.int32)])
    inp = L.Input(shape=(12,), dtype="int32")
    h = L.LayerNormalization()(L.GRU(3, return_sequences=True)(L.Embedding(11, 4, mask_zero=True)(inp)))
    models["embedding_functional"] = (keras.Model(inp, L.SimpleRNN(2)(h)), [words.astype(np.int32)])

    models["depthwise_separable"] = (keras.Sequential([
        L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", input_shape=(12, 3)),
        L.SeparableConv1D(4, 3, dilation_rate=2, padding="causal", activation="relu"),
        L.SeparableConv1D(3, 2, strides=2, depth_multiplier=2, use_bias=False), L.GRU(3)]), seqs(1))
    models["reshaping"] = (keras.Sequential([
        L.ZeroPadding1D((1, 2), input_shape=(6, 3)), L.UpSampling1D(2), L.Permute((2, 1)), L.Reshape((6, -1)),
        L.Cropping1D((1, 0)), L.LSTM(4), L.Dense(12), L.Reshape((4, 3)), L.GRU(2)]), seqs(1, 6))
    """
) + textwrap.dedent(
    """
    for name, (m, xs) in models.items():
        if name != "normalization":  # its adapted mean and variance stay
            randomize(m)
        np.save(os.path.join(out, name + ".y.npy"), m.predict(xs, verbose=0))
        for i, x in enumerate(xs):
            np.save(os.path.join(out, f"{name}.x{i}.npy"), x)
        m.save(os.path.join(out, name + ".h5"))
    """
)
KERAS2_MODELS = ["residual", "branches", "two_inputs", "over_time", "masked_merge", "half_masked", "layer_norm", "normalization",
                 "normalization_given", "embedding", "embedding_functional", "depthwise_separable", "reshaping"]


@pytest.fixture(scope="module")
def keras2_dir(tmp_path_factory):
    return keras2_files(tmp_path_factory, KERAS2_SCRIPT, "keras2layers")


@pytest.mark.parametrize("name", KERAS2_MODELS)
def test_keras2_files(keras2_dir, name):
    m = edgernn.convert(keras2_dir / f"{name}.h5")
    assert m.spec.source["framework_version"].startswith("2.")
    xs = [np.load(path) for path in sorted(keras2_dir.glob(f"{name}.x*.npy"))]
    np.testing.assert_allclose(m.predict(*xs), np.load(keras2_dir / f"{name}.y.npy"), atol=ATOL, rtol=RTOL)


def test_too_short_beside_integer_codes():
    """The shortest length is the sequence input's, whatever input comes first."""
    emb = ir.Embedding(name="emb", embeddings=ir.as_weight(np.ones((4, 2))))
    spec = ir.ModelSpec((ir.Input("codes", 5, rank=2, dtype="int"), ir.Input("x", F)),
                        (ir.Node(emb, ("codes",), ("e",)), ir.Node(_conv("conv"), ("x",), ("c",))), ("e", "c"))
    m = edgernn.Model(spec)
    assert min_steps(spec) == 3 and m.predict(codes(steps=5) % 4, data(steps=3))[1].shape == (4, 1, 4)
    with pytest.raises(InvalidInput, match="input 'x' has 2 timesteps; this model needs at least 3"):
        m.predict(codes(steps=5) % 4, data(steps=2))
