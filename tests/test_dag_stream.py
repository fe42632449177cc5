"""Streams of graphs whose branches fork and merge again (Merge, Concatenate over features), built
in live Keras 3 with the functional API: residual recurrent stacks, parallel causal convolutions
concatenated, every merge mode, merges of merges, windowed branches with strides and valid padding,
a mask through a merge; and models of several sequence inputs, ``step(x1_t, x2_t)``.

The property, as for chains: a stream's output at a step equals Keras on the prefix that ends there
(the last row of ``predict`` on the whole sequence for a model of sequence outputs), to atol 1e-5 +
rtol 1e-4, on the fused path (batch 1-2), the many-streams path and ``run``; and where a windowed
layer emits only every few inputs, it emits exactly where Keras's output grows a row. Also: reset of
one stream, get/set_state and save/load_state mid-sequence, forecast, no allocation per step, and the
refusals that name the layer (a concatenation over time, branches that do not line up, a vector
input, inputs of different fixed lengths; the tools that feed one array per step).
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from test_conv_layers import randomize
from test_conv_stream import step_through
from test_keras_import import ATOL, RTOL, keras, layers
from test_stream import assert_paths_agree, assert_steps_allocate_nothing

import edgernn
from edgernn import ir, runtime
from edgernn.bench import bench_model
from edgernn.cli import main
from edgernn.errors import EdgernnError, InvalidInput, NotStreamable
from edgernn.graph import streamable_problem

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

F32 = np.float32
FEATURES = 3
STEPS = 14


def functional(build, seed=0, features=FEATURES):
    """A Keras functional model of any length, ``build(input) -> output``, random weights, and its
    conversion: ``(keras_model, edgernn_model)``."""
    inputs = keras.Input(shape=(None, features))
    model = keras.Model(inputs, build(inputs))
    randomize(model, seed)
    return model, edgernn.convert(model, verify=False)


def data(batch, steps=STEPS, seed=0, features=FEATURES):
    return np.random.default_rng(seed).normal(size=(batch, steps, features)).astype(F32)


def rows_made(spec, steps: int) -> int:
    """How many rows ``predict`` makes from ``steps`` inputs (IR shape arithmetic only, not the
    streaming code): of the output, or for an output per sequence, of the last sequence it reduces."""
    time, _ = spec.sequence_problems({spec.inputs[0].name: steps})
    name = spec.outputs[0]
    made_by = {node.outputs[0]: node for node in spec.nodes}
    while time[name][0] is None:  # a vector: walk back to the sequence it is made from
        name = made_by[name].inputs[0]
    return time[name][1]


def keras_on_prefixes(keras_model, m, x):
    """(batch, T, O): Keras's output for each prefix -- the last row of its output on the whole
    sequence for sequence outputs -- held where the prefix makes no new row (zeros before the
    first), and (T,) whether it makes one. Keras is not called on a prefix too short for a valid
    window (TensorFlow may crash on one)."""
    counts = [rows_made(m.spec, n) for n in range(x.shape[1] + 1)]
    grew = np.diff(counts) > 0
    expected = np.zeros(x.shape[:2] + (m.output_features,), F32)
    full = np.asarray(keras_model(x, training=False)) if len(keras_model.outputs[0].shape) == 3 else None
    for n in range(1, x.shape[1] + 1):
        if not grew[n - 1]:
            expected[:, n - 1] = expected[:, n - 2] if n > 1 else 0.0
        elif full is not None:
            expected[:, n - 1] = full[:, counts[n] - 1]
        else:
            expected[:, n - 1] = np.asarray(keras_model(x[:, :n], training=False))
    return expected, grew


def check_stream(keras_model, m, x, monkeypatch):
    """The stream on ``x`` on the fused path, the many-streams path and ``run`` (in uneven chunks),
    each against Keras on every prefix, with the steps it emits on."""
    expected, grew = keras_on_prefixes(keras_model, m, x)
    assert grew.any()
    fused = m.stream(x.shape[0])
    assert fused._fused
    ys, emitted = step_through(fused, x)
    np.testing.assert_allclose(ys, expected, atol=ATOL, rtol=RTOL, err_msg="fused step vs Keras")
    np.testing.assert_array_equal(emitted, np.broadcast_to(grew, emitted.shape))
    pieces, t = [], 0
    chunked = m.stream(x.shape[0])
    for n in (5, 1, 4, 100):
        pieces.append(chunked.run(x[:, t:t + n]))
        np.testing.assert_array_equal(chunked.emitted_run, np.broadcast_to(grew[t:t + n], chunked.emitted_run.shape))
        t += n
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), expected, atol=ATOL, rtol=RTOL, err_msg="run vs Keras")
    with monkeypatch.context() as patch:  # batches above the fused step's: products across the streams
        patch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)
        many = m.stream(x.shape[0])
        assert not many._fused
        many_ys, many_emitted = step_through(many, x)
    np.testing.assert_allclose(many_ys, expected, atol=ATOL, rtol=RTOL, err_msg="many streams vs Keras")
    assert_paths_agree(many_ys, ys)
    np.testing.assert_array_equal(many_emitted, emitted)


# --- the graphs -------------------------------------------------------------------------------------


def residual_lstm(x):
    """x -> LSTM -> LSTM -> Add(both) -> LSTM -> Dense: outputs as many as the input's features."""
    first = layers.LSTM(8, return_sequences=True)(x)
    second = layers.LSTM(8, return_sequences=True)(first)
    return layers.Dense(FEATURES)(layers.LSTM(6)(layers.Add()([first, second])))


def parallel_convolutions(x):
    """Causal Conv1Ds of kernel 2, 4 (dilated) and 3 side by side, concatenated on features, then a GRU."""
    branches = [layers.Conv1D(5, 2, padding="causal", activation="relu")(x),
                layers.Conv1D(4, 4, padding="causal", dilation_rate=2)(x),
                layers.Conv1D(3, 3, padding="causal", activation="tanh")(x)]
    return layers.Dense(2)(layers.GRU(7)(layers.Concatenate()(branches)))


def windowed_branches(x):
    """A strided valid Conv1D and a strided valid max pooling (one length for every T: both emit on
    inputs 3, 5, 7, ...) added, concatenated with a Dense of the sum, then a sequence LSTM."""
    valid = layers.Add()([layers.Conv1D(FEATURES, 3, strides=2, padding="valid")(x),
                          layers.MaxPooling1D(3, strides=2)(x)])
    return layers.LSTM(6, return_sequences=True)(layers.Concatenate()([valid, layers.Dense(3, activation="tanh")(valid)]))


def strided_branches(x):
    """A Conv1D of kernel 2 and stride 2 beside a causal Conv1D then an average pooling of 2 (both
    emit on inputs 2, 4, ...), concatenated, then a global max pooling: an output per sequence."""
    branches = [layers.Conv1D(4, 2, strides=2, padding="valid", activation="relu")(x),
                layers.AveragePooling1D(2)(layers.Conv1D(2, 2, padding="causal")(x))]
    return layers.GlobalMaxPooling1D()(layers.LSTM(5, return_sequences=True)(layers.Concatenate()(branches)))


def masked_residual(x):
    """A mask (zero timesteps) carried through an Add of an LSTM and a Dense branch into an LSTM."""
    masked = layers.Masking(0.0)(x)
    joined = layers.Add()([layers.LSTM(6, return_sequences=True)(masked), layers.Dense(6, activation="tanh")(masked)])
    return layers.Dense(2)(layers.LSTM(5)(joined))


MERGES = {"add": layers.Add, "subtract": layers.Subtract, "multiply": layers.Multiply, "average": layers.Average,
          "maximum": layers.Maximum, "minimum": layers.Minimum}


def merge_of(mode):
    def build(x):
        count = 2 if mode == "subtract" else 3
        branches = [layers.Dense(5, activation=("tanh", "linear", "relu")[k])(x) for k in range(count)]
        return layers.LSTM(4, return_sequences=True)(MERGES[mode]()(branches))
    return build


def merged_name(model) -> str:
    """The name of the one merge layer of ``model``."""
    return next(n.op.name for n in model.spec.nodes if type(n.op).__name__ == "Merge")


def merges_of_merges(x):
    """Add(Multiply(a, b), Maximum(c, Average(a, c))) -> Concatenate with x -> SimpleRNN."""
    a, b, c = (layers.Dense(4, activation=act)(x) for act in ("tanh", "sigmoid", "linear"))
    inner = layers.Add()([layers.Multiply()([a, b]), layers.Maximum()([c, layers.Average()([a, c])])])
    return layers.SimpleRNN(5, return_sequences=True)(layers.Concatenate()([inner, x]))


@pytest.fixture(scope="module")
def residual():
    return functional(residual_lstm, seed=1)


@pytest.fixture(scope="module")
def windowed():
    return functional(windowed_branches, seed=2)


GRAPHS = {"parallel convolutions": parallel_convolutions, "strided branches": strided_branches,
          "masked residual": masked_residual, "merges of merges": merges_of_merges,
          **{f"merge {mode}": merge_of(mode) for mode in MERGES}}


def test_residual_lstm_streams(residual, monkeypatch):
    check_stream(*residual, data(2, seed=3), monkeypatch)
    check_stream(*residual, data(1, seed=4), monkeypatch)


def test_windowed_branches_stream(windowed, monkeypatch):
    keras_model, m = windowed
    x = data(2, steps=17, seed=5)
    check_stream(keras_model, m, x, monkeypatch)
    assert not m.stream(2).run(x[:, :2]).any()  # before the first full window: zeros, nothing emitted


@pytest.mark.parametrize("name", GRAPHS)
def test_graph_streams(name, monkeypatch):
    keras_model, m = functional(GRAPHS[name], seed=len(name))
    x = data(2, seed=6)
    if name == "masked residual":
        x[0, 3:5] = 0.0  # masked timesteps, in one stream only
        x[1, 0] = 0.0
    check_stream(keras_model, m, x, monkeypatch)


# --- state ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fused", "many streams"])
@pytest.mark.parametrize("which", ["residual", "windowed"])
def test_reset_one_stream_mid_sequence(which, path, request, monkeypatch):
    """reset(1) starts stream 1 over (at another phase of the windows than its neighbours); the
    others go on: each equals Keras on its own prefix."""
    if path == "many streams":
        monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)
    keras_model, m = request.getfixturevalue(which)
    x = data(3, steps=15, seed=7)
    s = m.stream(3)
    s.run(x[:, :7])
    s.reset(1)
    ys, _ = step_through(s, x[:, 7:])
    whole, _ = keras_on_prefixes(keras_model, m, x)
    np.testing.assert_allclose(ys[[0, 2]], whole[[0, 2], 7:], atol=ATOL, rtol=RTOL)
    restarted, _ = keras_on_prefixes(keras_model, m, x[1:2, 7:])
    np.testing.assert_allclose(ys[1], restarted[0], atol=ATOL, rtol=RTOL)


def assert_restored_state_goes_on(m, x, split, tmp_path):
    """A stream's state after ``run(x[:, :split])``, restored into a fresh stream by set_state and by
    load_state of what save_state wrote, goes on over ``x[:, split:]`` exactly as the original (the
    same outputs; the same emitted flags after the first step). Returns (snapshot, the outputs)."""
    s = m.stream(x.shape[0])
    s.run(x[:, :split])
    snapshot = s.get_state()
    s.save_state(tmp_path / "state.zip")
    expected, expected_emitted = step_through(s, x[:, split:])
    for restore in ("set_state", "load_state"):
        other = m.stream(x.shape[0])
        if restore == "set_state":
            other.set_state(snapshot)
        else:
            other.load_state(tmp_path / "state.zip")
        ys, emitted = step_through(other, x[:, split:])
        np.testing.assert_array_equal(ys, expected, err_msg=restore)
        np.testing.assert_array_equal(emitted[:, 1:], expected_emitted[:, 1:], err_msg=restore)
    return snapshot, expected


@pytest.mark.parametrize("which", ["residual", "windowed"])
def test_get_set_and_save_load_state_mid_sequence(which, request, tmp_path):
    _, m = request.getfixturevalue(which)
    assert_restored_state_goes_on(m, data(2, steps=16, seed=8), 9, tmp_path)


def test_forecast_feeds_back_through_the_graph(residual):
    keras_model, m = residual
    x = data(2, steps=8, seed=9)
    s = m.stream(2)
    last = s.run(x)[:, -1:]
    f = s.forecast(3)
    sequence = np.concatenate([x, last], axis=1)
    for k in range(3):
        np.testing.assert_allclose(f[:, k], np.asarray(keras_model(sequence)), atol=ATOL, rtol=RTOL)
        sequence = np.concatenate([sequence, f[:, k:k + 1]], axis=1)


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_steps_allocate_nothing(residual, windowed, path, monkeypatch):
    if path == "many streams":
        monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 1)
    for _, m in (residual, windowed):
        s = m.stream(2)
        assert s._fused == (path == "fused")
        assert_steps_allocate_nothing(s, data(2, steps=1, seed=10)[:, 0], np.empty((2, m.output_features), F32))


# --- several inputs ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_inputs():
    """Two sequence inputs stepped together: an LSTM of one beside a Dense of the other,
    concatenated, added to a GRU of the second, then an LSTM: ``step(x1_t, x2_t)``, ``run(x1, x2)``."""
    first, second = keras.Input(shape=(None, 2), name="first"), keras.Input(shape=(None, 3), name="second")
    joined = layers.Concatenate()([layers.LSTM(4, return_sequences=True)(first), layers.Dense(3)(second)])
    joined = layers.Add()([layers.Dense(5, activation="tanh")(joined), layers.GRU(5, return_sequences=True)(second)])
    model = keras.Model([first, second], layers.Dense(2)(layers.LSTM(3)(joined)))
    randomize(model, 11)
    return model, edgernn.convert(model)  # verified, the stream in chunks included


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_two_inputs_stream(two_inputs, path, monkeypatch):
    keras_model, m = two_inputs
    if path == "many streams":
        monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)
    x1, x2 = data(2, seed=12, features=2), data(2, seed=13, features=3)
    expected = np.stack([np.asarray(keras_model([x1[:, :n], x2[:, :n]], training=False))
                         for n in range(1, STEPS + 1)], axis=1)
    s = m.stream(2)
    assert s._fused == (path == "fused") and s.input_features == (2, 3)
    ys = np.stack([s.step(x1[:, t], x2[:, t]) for t in range(STEPS)], axis=1)
    np.testing.assert_allclose(ys, expected, atol=ATOL, rtol=RTOL)
    r = m.stream(2)
    ran = np.concatenate([r.run(x1[:, :5], x2[:, :5]), r.run(x1[:, 5:], x2[:, 5:])], axis=1)
    np.testing.assert_allclose(ran, expected, atol=ATOL, rtol=RTOL)
    # reset of one stream, and a state round trip, as for one input
    snapshot = r.get_state()
    r.reset(0)
    np.testing.assert_allclose(r.step(x1[:, 0], x2[:, 0])[0], expected[0, 0], atol=ATOL, rtol=RTOL)
    r.set_state(snapshot)
    out = np.empty((2, 2), F32)
    assert r.step(x1[:, 0], x2[:, 0], out=out) is out
    longer = [np.concatenate([x, x[:, :1]], axis=1) for x in (x1, x2)]
    np.testing.assert_allclose(out, np.asarray(keras_model(longer, training=False)), atol=ATOL, rtol=RTOL)


def test_two_input_steps_allocate_nothing(two_inputs):
    _, m = two_inputs
    x1, x2, out = data(2, 1, 14, 2)[:, 0], data(2, 1, 15, 3)[:, 0], np.empty((2, 2), F32)

    class BothInputs:  # the helper steps one array: this steps the two
        stream = m.stream(2)

        def step(self, _, out):
            return self.stream.step(x1, x2, out=out)

    assert BothInputs.stream._fused
    assert_steps_allocate_nothing(BothInputs(), None, out)


def test_two_inputs_are_checked_before_anything_changes(two_inputs):
    _, m = two_inputs
    s = m.stream(2)
    x1, x2 = data(2, 4, 16, 2), data(2, 4, 17, 3)
    s.run(x1, x2)
    before = s.get_state()
    for call, message in [(lambda: s.step(x1[:, 0]), "one array per model input \\('first', 'second'\\), got 1"),
                          (lambda: s.step(x1[:, 0], x1[:, 0]), "input 'second' of shape \\(batch=2, features=3\\)"),
                          (lambda: s.run(x1, x2[:, :3]), "inputs of one length T"),
                          (lambda: s.run(x2, x1), "input 'first' of shape"),
                          (lambda: s.forecast(2), "this model has 2 inputs"),
                          (lambda: s.step(x1[:, 0], x2[:, 0], out=np.empty((2, 3), F32)), "out must be")]:
        with pytest.raises(InvalidInput, match=message):
            call()
        after = s.get_state()
        assert all(np.array_equal(after[k], before[k]) for k in before)


def test_inputs_of_different_fixed_lengths_are_refused():
    first, second = keras.Input(shape=(5, 2), name="short"), keras.Input(shape=(7, 2), name="long")
    model = keras.Model([first, second], layers.Add()([layers.LSTM(3)(first), layers.LSTM(3)(second)]))
    randomize(model)
    with pytest.raises(NotStreamable, match="'short': 5 steps, 'long': 7 steps"):
        edgernn.convert(model).stream(1)


def test_the_row_tools_refuse_several_inputs(two_inputs, tmp_path):
    _, m = two_inputs
    with pytest.raises(InvalidInput, match="edgernn bench feeds a model of one input; this one has 2"):
        bench_model(m, quick=True)
    m.save(tmp_path / "two.ernn")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "two.ernn")], input="1,2,3,4,5\n")
    assert result.exit_code == 1
    assert "edgernn run feeds a model of one input; this one has 2 ('first', 'second')" in result.output


# --- refusals --------------------------------------------------------------------------------------------


def test_concatenation_over_time_is_refused_by_name():
    _, m = functional(lambda x: layers.LSTM(3, return_sequences=True)(
        layers.Concatenate(axis=1, name="over_time")([x, layers.Dense(FEATURES)(x)])))
    with pytest.raises(NotStreamable, match="'over_time' is Concatenate over time"):
        m.stream(1)
    assert m.predict(data(1, steps=4)).shape == (1, 8, 3)  # predict runs it


def test_branches_that_do_not_line_up_are_refused_by_name():
    """Keras builds an Add of a valid Conv1D (T - 2 rows) and its input (T rows) when T is unknown;
    predict refuses it for every T, and a stream at construction, naming the merge."""
    inputs = keras.Input(shape=(None, FEATURES))
    outputs = layers.Add(name="misaligned")([layers.Conv1D(FEATURES, 3, padding="valid")(inputs), inputs])
    m = edgernn.convert(keras.Model(inputs, outputs), verify=False)
    with pytest.raises(NotStreamable, match="'misaligned' .*different steps"):
        m.stream(1)


def test_a_mask_across_a_causal_branch_streams(monkeypatch):
    """A Masking mask read over the sum of a causal Conv1D branch and a Dense branch: row t of
    each comes at step t, so it streams (equal to predict, also Keras's arithmetic: see the masked
    residual above). Over a valid Conv1D's rows (T - 2 of them) the IR itself refuses it."""
    rng = np.random.default_rng(18)

    def weight(*shape):
        return ir.as_weight(rng.normal(0.0, 0.5, shape))

    def spec(padding):
        conv = ir.Conv1D("conv", weight(3, 2, 2), weight(2), padding=padding)
        side = ir.Pooling1D("side", "max", 3) if padding == "valid" else ir.Dense("side", weight(2, 2), weight(2))
        lstm = ir.Recurrent("lstm", "lstm", 3, 2, kernel=weight(2, 12), recurrent_kernel=weight(3, 12), bias=weight(12),
                            return_sequences=True)
        return ir.ModelSpec((ir.Input("x", 2),), (
            ir.Node(ir.Masking("masking", 0.0), ("x",), ("m", "keep")),
            ir.Node(conv, ("m",), ("a",)), ir.Node(side, ("m",), ("b",)),
            ir.Node(ir.Merge("sum", "add"), ("a", "b"), ("j",)),
            ir.Node(lstm, ("j",), ("y",), mask="keep")), ("y",))

    m = runtime.Model(spec("causal"))
    x = data(2, steps=9, seed=19, features=2)
    x[0, 4] = 0.0
    expected = m.predict(x)
    for limit in (None, 0):
        monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", limit)
        ys, _ = step_through(m.stream(2), x)
        np.testing.assert_allclose(ys, expected, atol=ATOL, rtol=RTOL)
    with pytest.raises(EdgernnError, match="another time axis"):
        spec("valid")


def test_misaligned_strides_from_the_ir_are_refused():
    """Two strided pools of 2 and 3 of one input, merged (lengths differ for most T)."""
    spec = ir.ModelSpec(inputs=(ir.Input("x", 2),), nodes=(
        ir.Node(ir.Pooling1D("two", "max", 2, 2), ("x",), ("a",)),
        ir.Node(ir.Pooling1D("three", "max", 3, 3), ("x",), ("b",)),
        ir.Node(ir.Merge("joined", "add"), ("a", "b"), ("y",))), outputs=("y",))
    problem = streamable_problem(spec)
    assert "'joined'" in problem and "2, 4, 6" in problem and "3, 6, 9" in problem


def test_a_vector_input_is_refused():
    sequence, vector = keras.Input(shape=(None, 2)), keras.Input(shape=(3,), name="context")
    model = keras.Model([sequence, vector], layers.Concatenate()([layers.LSTM(3)(sequence), vector]))
    randomize(model)
    with pytest.raises(NotStreamable, match="'context' one vector per sequence"):
        edgernn.convert(model, verify=False).stream(1)


def test_quantize_runs_merges_of_three_as_pairs(residual):
    """The residual graph quantizes (tests/test_firmware_merge.py runs such graphs in C); a merge of
    three tensors as two merges of two, an average of three as two sums and an Affine of 1/3."""
    _, m = residual
    assert m.quantize(data(2, steps=6), "int8").spec.layers[2].kind == "merge"
    for mode in ("maximum", "average"):
        _, three = functional(merge_of(mode), seed=3)  # of three Dense branches
        layers_ = three.quantize(data(2, steps=6), "int8").spec.layers
        merged = [(layer.kind, layer.merge) for layer in layers_ if layer.kind == "merge"]
        assert merged == [("merge", "add" if mode == "average" else mode)] * 2
        last = next(layer for layer in layers_ if layer.name == merged_name(three))  # named as the merge
        assert last.kind == ("conv" if mode == "average" else "merge")
