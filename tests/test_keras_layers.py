"""The layers around an RNN beyond the convolutional front-end (issue #16), and the IR's tracking
of sequence lengths: against live Keras 3 (.keras and .h5) and tf-keras (Keras 2 .h5, written in a
subprocess); the store round trip and hostile headers; refusals naming the layer.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from test_conv_layers import KERAS2_RANDOMIZE, _rewrite, check, data, randomize, seq
from test_keras_import import ATOL, RTOL, keras, keras2_files, layers

import edgernn
from edgernn import ir, reference
from edgernn.errors import EdgernnError, InvalidInput, InvalidModelFile, UnsupportedModel
from edgernn.graph import execute, min_steps
from edgernn.summary import describe

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
    with pytest.raises(EdgernnError, match="'residual1' is Merge"):
        m.stream()
    with pytest.raises(EdgernnError) as info:
        m.quantize(data(features=6))
    assert "'residual1' is Merge" in str(info.value) + " ".join(info.value.problems)


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
    check_functional(keras.Model([a, b], out), [data(), data(seed=2)], tmp_path)


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
    model = keras.Model([a, b], layers.LSTM(2)(build(a, b)))
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(tmp_path / "m.keras")
    assert any("'bad'" in p and text in p for p in info.value.problems), info.value.problems


@pytest.fixture(scope="module")
def branchy(tmp_path_factory):
    a, b = keras.Input(shape=(T, F), name="a"), keras.Input(shape=(T, F), name="b")
    h = layers.Concatenate(name="cat")([layers.Conv1D(4, 3, padding="causal", name="conv")(a), b])
    h = layers.Subtract(name="sub")([layers.Dense(4, name="d1")(h), layers.Dense(4, name="d2")(h)])
    model = randomize(keras.Model([a, b], layers.GRU(3, name="gru")(h)))
    path = tmp_path_factory.mktemp("branchy") / "m.keras"
    model.save(path)
    return edgernn.convert(path), model


def test_merge_store_round_trip(branchy, tmp_path):
    m, model = branchy
    m.save(tmp_path / "m.ernn")
    loaded = edgernn.load(tmp_path / "m.ernn")
    xs = [data(), data(seed=5)]
    np.testing.assert_array_equal(loaded.predict(*xs), m.predict(*xs))
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
    """
) + textwrap.dedent(
    """
    for name, (m, xs) in models.items():
        randomize(m)
        np.save(os.path.join(out, name + ".y.npy"), m.predict(xs, verbose=0))
        for i, x in enumerate(xs):
            np.save(os.path.join(out, f"{name}.x{i}.npy"), x)
        m.save(os.path.join(out, name + ".h5"))
    """
)
KERAS2_MODELS = ["residual", "branches", "two_inputs", "over_time", "masked_merge"]


@pytest.fixture(scope="module")
def keras2_dir(tmp_path_factory):
    return keras2_files(tmp_path_factory, KERAS2_SCRIPT, "keras2layers")


@pytest.mark.parametrize("name", KERAS2_MODELS)
def test_keras2_files(keras2_dir, name):
    m = edgernn.convert(keras2_dir / f"{name}.h5")
    assert m.spec.source["framework_version"].startswith("2.")
    xs = [np.load(path) for path in sorted(keras2_dir.glob(f"{name}.x*.npy"))]
    np.testing.assert_allclose(m.predict(*xs), np.load(keras2_dir / f"{name}.y.npy"), atol=ATOL, rtol=RTOL)
