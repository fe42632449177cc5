"""Streaming the layers that move timesteps: Cropping1D, ZeroPadding1D on the left, and Reshape that
keeps every timestep, before and after Conv1D and recurrent layers, stepped one timestep at a time
against live Keras 3 on every prefix; the reshaping layers a stream cannot make causal refused by
name; integer codes of any length (``Input(shape=(None,), dtype="int32")``).

The property is the one of tests/test_conv_stream.py: where a stream emits, its output is
``predict`` on the prefix that ends there (to atol 1e-5 + rtol 1e-4); elsewhere it holds the last
emitted output (zeros before the first). A crop of ``a`` rows at the start skips the first ``a``
inputs; one of ``b`` rows at the end emits, at input t, the row of input t - b (prefix t keeps
rows up to t - b), so it is a delay line of ``b`` rows in the state. ZeroPadding1D of ``p`` rows on
the left starts the layers after it from the state its ``p`` zero rows leave. UpSampling1D of
``size`` r steps the layers after it r times per input, on the same row: predict on a prefix of t
inputs makes their rows from t * r rows, and the stream returns the last one (emitted if any of the
r repeats made a row).
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from test_conv_layers import data, randomize
from test_conv_stream import check_stream, convert, expected_emitted, rows_of, step_through
from test_keras_import import ATOL, RTOL, keras, layers
from test_stream import assert_paths_agree, assert_steps_allocate_nothing

import edgernn
from edgernn import ir, runtime, statefile
from edgernn.errors import EdgernnError, InvalidInput, NotStreamable, UnsupportedModel
from edgernn.summary import state_bytes_per_stream

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

F32 = np.float32
STEPS = 13


def many_streams(monkeypatch):
    """Every stream of more than one row steps through the many-streams path."""
    monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 1)


def assert_each_stream_from_its_start(m, x, ys, emitted, split):
    """After ``run(x[:, :split])``, ``reset(1)`` and stepping ``x[:, split:]`` into ``ys``, ``emitted``:
    stream 0 goes on from the start of ``x``, stream 1 from ``split``; each step that emitted equals
    predict on that stream's own prefix (zeros before its first row)."""
    steps, rest = x.shape[1], x.shape[1] - split
    for row, start in ((0, 0), (1, split)):
        np.testing.assert_array_equal(emitted[row], expected_emitted(m.spec, steps - start)[-rest:])
        for n in range(1, rest + 1):
            if rows_of(m.spec, n + split - start):
                np.testing.assert_allclose(ys[row, n - 1], m.predict(x[row:row + 1, start:split + n])[0, -1], atol=ATOL,
                                           rtol=RTOL)
            else:
                np.testing.assert_array_equal(ys[row, n - 1], 0.0)


CASES = {
    "crop-conv-lstm": lambda: [layers.Cropping1D((2, 3)), layers.Conv1D(4, 3, padding="causal"),
                               layers.LSTM(5, return_sequences=True)],
    "strided-conv-crop-gru": lambda: [layers.Conv1D(4, 2, strides=2, padding="causal", activation="tanh"),
                                      layers.Cropping1D((1, 2)), layers.GRU(3), layers.Dense(2)],
    "pad-valid-conv-lstm": lambda: [layers.ZeroPadding1D((2, 0)), layers.Conv1D(4, 3, dilation_rate=2),
                                    layers.LSTM(4), layers.Dense(2)],
    "pad-lstm-crop-dense": lambda: [layers.ZeroPadding1D((3, 0)), layers.LSTM(4, return_sequences=True),
                                    layers.Cropping1D((0, 2)), layers.Dense(2)],
    "lstm-pad-conv-pool": lambda: [layers.LSTM(4, return_sequences=True), layers.ZeroPadding1D((2, 0)),
                                   layers.Conv1D(3, 3, strides=2), layers.GlobalAveragePooling1D(), layers.Dense(2)],
    "two-pads-crop": lambda: [layers.ZeroPadding1D((1, 0)), layers.SimpleRNN(3, return_sequences=True),
                              layers.ZeroPadding1D((2, 0)), layers.Cropping1D((1, 1)),
                              layers.Conv1D(3, 2, padding="causal"), layers.GRU(2, return_sequences=True)],
    "reshape-identity": lambda: [layers.Conv1D(4, 2, padding="causal"), layers.Reshape((-1, 4)), layers.LSTM(3)],
    "upsample-lstm": lambda: [layers.UpSampling1D(2), layers.LSTM(4), layers.Dense(2)],
    # stride 4 over 3 repeats: rows from the 2nd, 3rd and 1st repeat of inputs 1, 2, 4, ... (not always the last)
    "upsample-strided-conv-gru": lambda: [layers.UpSampling1D(3), layers.Conv1D(3, 2, strides=4),
                                          layers.GRU(2, return_sequences=True)],
    "conv-upsample-crop-dense": lambda: [layers.Conv1D(3, 3), layers.UpSampling1D(2), layers.Cropping1D((1, 2)),
                                         layers.Dense(2)],
    "two-upsamplings": lambda: [layers.UpSampling1D(2), layers.Conv1D(3, 2, strides=3), layers.UpSampling1D(3),
                                layers.Conv1D(2, 2, strides=4), layers.LSTM(2, return_sequences=True)],
}


@pytest.mark.parametrize("path", ["fused", "many streams"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_reshaping_layers_stream(case, path, tmp_path, monkeypatch):
    keras_model, m = convert(*CASES[case](), tmp_path=tmp_path)
    batch = 2 if path == "fused" else 3
    if path == "many streams":
        many_streams(monkeypatch)
    assert m.stream(batch)._fused == (path == "fused")
    x = data(batch=batch, steps=STEPS, seed=len(case))
    ys, _ = check_stream(keras_model, m, x)  # predict on every prefix, Keras on a few; here Keras on every one
    sequence = m.spec.tensor_shape(m.spec.outputs[0])[0] == 3
    for n in range(int(np.argmax(expected_emitted(m.spec, STEPS))) + 1, STEPS + 1):
        k = np.asarray(keras_model(x[:, :n], training=False))
        np.testing.assert_allclose(ys[:, n - 1], k[:, -1] if sequence else k, atol=ATOL, rtol=RTOL,
                                   err_msg=f"Keras on the prefix of {n} steps")


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    """A left padding before a valid Conv1D and an LSTM (its 3 zeros fill the window and make one
    row: a fresh state that is not zeros), and a crop at the end after them (a delay line)."""
    return convert(layers.ZeroPadding1D((3, 0), name="pad"), layers.Conv1D(4, 3, activation="relu", name="conv"),
                   layers.LSTM(5, return_sequences=True, name="lstm"), layers.Cropping1D((1, 2), name="crop"),
                   layers.Dense(2, name="head"),
                   tmp_path=tmp_path_factory.mktemp("padded"))


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_reset_restores_the_padded_start(padded, path, monkeypatch):
    """reset(1) mid-sequence: stream 1 starts over from the state the padding's zeros leave (not
    zeros), emits when it alone should, and equals predict on its own prefix; reset() does it
    for all."""
    if path == "many streams":
        many_streams(monkeypatch)
    _, m = padded
    x = data(batch=3, steps=20, seed=5)
    s = m.stream(3)
    fresh = s.get_state()
    assert any(np.any(v != 0) for k, v in fresh.items() if k.startswith("lstm"))  # the zeros' state
    s.run(x[:, :8])
    s.reset(1)
    assert all(np.array_equal(s.get_state()[k][1], fresh[k][1]) for k in fresh)
    ys, emitted = step_through(s, x[:, 8:])
    assert_each_stream_from_its_start(m, x, ys, emitted, 8)
    s.reset()
    assert all(np.array_equal(s.get_state()[k], fresh[k]) for k in fresh)


def test_get_set_and_save_load_state_mid_sequence(padded, tmp_path):
    """The delay line and counters of the crop are state: a snapshot mid-sequence (inside the
    delay) resumes exactly, through set_state and through a state file (version 3)."""
    _, m = padded
    x = data(batch=2, steps=16, seed=7)
    s = m.stream(2)
    s.run(x[:, :5])
    snapshot = s.get_state()
    assert snapshot["crop/inputs"].shape == (2, 2 * 5) and snapshot["crop/counters"].shape == (2, 3)
    assert np.any(snapshot["crop/inputs"] != 0)
    s.save_state(tmp_path / "state.zip")
    with zipfile.ZipFile(tmp_path / "state.zip") as archive:
        assert json.loads(archive.read("header.json"))["format_version"] == statefile.FORMAT_VERSION_WINDOWS
    expected = step_through(s, x[:, 5:])
    other = m.stream(2)
    other.set_state(snapshot)
    np.testing.assert_array_equal(step_through(other, x[:, 5:])[0], expected[0])
    loaded = m.stream(2)
    loaded.load_state(tmp_path / "state.zip")
    again = step_through(loaded, x[:, 5:])
    np.testing.assert_array_equal(again[0], expected[0])
    np.testing.assert_array_equal(again[1], expected[1])
    broken = {k: v.copy() for k, v in snapshot.items()}
    broken["crop/counters"][0, 2] = 2.0  # the ring has 2 rows: its position is 0 or 1
    with pytest.raises(InvalidInput, match="'crop/counters' must hold whole numbers"):
        other.set_state(broken)


def test_summary_counts_the_delay_line(padded):
    """The state summary reports is the stream's: per stream, every array get_state returns."""
    _, m = padded
    state = m.stream(1).get_state()
    assert state["pad/inputs"].shape == (1, 0)  # a padding alone keeps its counters only
    assert state_bytes_per_stream(m.spec) == sum(v.nbytes for k, v in state.items() if k != "output")


@pytest.mark.parametrize("path", ["fused", "many streams"])
@pytest.mark.parametrize("made", ["padded", "upsampled"])
def test_steps_allocate_nothing(made, path, request, monkeypatch):
    if path == "many streams":
        many_streams(monkeypatch)
    _, m = request.getfixturevalue(made)
    s = m.stream(2)
    assert s._fused == (path == "fused")
    assert_steps_allocate_nothing(s, data(batch=2, steps=1, seed=10)[:, 0], np.empty((2, 2), F32))


def test_verify_compares_a_padded_stream_with_the_rows_predict_makes_from_inputs(padded):
    """convert's verification steps the stream too: its emitted rows are predict's last rows (the
    first ones, which the padding's zeros alone make, are not steps of the stream)."""
    _, m = padded
    record = m.spec.source["verification"]
    stream = [c for c in record["checks"] if c["check"].startswith("stream")]
    assert record["passed"] and stream and all(c["passed"] for c in stream), record


def test_quantize_refuses_a_streamable_crop(padded):
    _, m = padded
    with pytest.raises(EdgernnError) as info:
        m.quantize(data(batch=2, steps=8))
    text = str(info.value) + " ".join(getattr(info.value, "problems", []))
    assert "'pad' is Pad1D (ZeroPadding1D, Cropping1D)" in text and "'crop'" in text


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_reshape_that_keeps_every_row_streams_as_the_identity(path, monkeypatch):
    """(From Keras such a Reshape converts to no op at all; an IR graph, of a fixed length, can hold one.)"""
    if path == "many streams":
        many_streams(monkeypatch)
    dense = ir.Dense("dense", ir.as_weight(np.arange(4.0).reshape(2, 2)), None, "tanh")
    spec = ir.ModelSpec((ir.Input("x", 2, timesteps=5),), (ir.Node(ir.Reshape("same", 5, 5, 2), ("x",), ("same",)),
                                                           ir.Node(dense, ("same",), ("dense",))), ("dense",))
    m = edgernn.Model(spec)
    x = data(batch=2, steps=5, features=2)
    s = m.stream(2)
    assert s._fused == (path == "fused")
    np.testing.assert_allclose(step_through(s, x)[0], m.predict(x), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(m.stream(2).run(x), m.predict(x), atol=ATOL, rtol=RTOL)


# --- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack, steps, text", [
    (lambda: [layers.ZeroPadding1D((1, 2), name="move"), layers.LSTM(2)], None,
     "'move' is ZeroPadding1D with 2 zero timesteps on the right"),
    (lambda: [layers.Permute((2, 1), name="move"), layers.LSTM(2)], 6, "'move' is Permute swapping time and features"),
    (lambda: [layers.Reshape((2, 9), name="move"), layers.LSTM(2)], 6,
     "'move' is Reshape of 6 timesteps into 2 timesteps of 9 features"),
    (lambda: [layers.LSTM(6), layers.Reshape((2, 3), name="move"), layers.LSTM(2)], None,
     "'move' is Reshape of a vector into 2 timesteps of 3 features"),
], ids=["right-pad", "permute", "regroup", "vector"])
def test_what_a_stream_cannot_make_is_refused_by_name(stack, steps, text, tmp_path):
    model = keras.Sequential([keras.Input(shape=(steps, 3)), *stack()])
    randomize(model)
    model.save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    with pytest.raises(NotStreamable) as info:
        m.stream()
    assert text in str(info.value)
    x = data(batch=2, steps=steps or 5)
    np.testing.assert_allclose(m.predict(x), model.predict(x, verbose=0), atol=ATOL, rtol=RTOL)  # predict runs it


# --- integer codes of any length ----------------------------------------------------------------------


@pytest.mark.parametrize("mask_zero", [False, True])
def test_codes_of_any_length_convert(mask_zero, tmp_path):
    """``Input(shape=(None,), dtype="int32")`` -> Embedding: predict on any length the layers fit,
    and streams; the int input's ``features`` are the length verification ran it at."""
    codes = keras.Input(shape=(None,), dtype="int32")
    y = layers.Embedding(20, 4, mask_zero=mask_zero)(codes)
    if not mask_zero:  # (a Conv1D refuses a masked input, as Keras drops the mask there)
        y = layers.Conv1D(3, 3)(y)
    y = layers.GRU(3)(y)
    model = keras.Model(codes, y)
    randomize(model)
    model.save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    assert m.spec.inputs[0].dtype == "int" and m.spec.inputs[0].features == 24  # the length verification used
    assert m.spec.source["verification"]["passed"]
    c = np.random.default_rng(3).integers(0 if mask_zero else 1, 20, size=(2, 11))
    c[0, 4] = 0
    for n in (3, 7, 11):
        np.testing.assert_allclose(m.predict(c[:, :n]), model.predict(c[:, :n], verbose=0), atol=ATOL, rtol=RTOL)
    ys = m.stream(2).run(c)
    for n in (3, 11):
        np.testing.assert_allclose(ys[:, n - 1], model.predict(c[:, :n], verbose=0), atol=ATOL, rtol=RTOL)
    if not mask_zero:
        with pytest.raises(InvalidInput, match="needs at least 3"):
            m.predict(c[:, :2])


def test_a_vector_of_any_length_not_read_by_an_embedding_is_refused(tmp_path):
    x = keras.Input(shape=(None,))
    model = keras.Model(x, layers.Activation("tanh", name="act")(x))
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedModel, match="integer codes of any length for an Embedding"):
        edgernn.convert(tmp_path / "m.keras")


def test_codes_of_any_length_behind_a_long_window(tmp_path):
    """A window longer than verification's 24 steps: the int input's features are the fewest it fits."""
    codes = keras.Input(shape=(None,), dtype="int32")
    model = keras.Model(codes, layers.GRU(2)(layers.Conv1D(2, 30)(layers.Embedding(20, 3)(codes))))
    randomize(model)
    model.save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    assert m.spec.inputs[0].features == 30 and m.spec.source["verification"]["passed"]


# --- a left padding or an UpSampling1D in a graph that forks and merges ---------------------------------


def _pad_after_merge(x):
    joined = layers.Add(name="join")([x, layers.Dense(3, name="dense")(x)])
    return layers.LSTM(4, name="lstm")(layers.ZeroPadding1D((2, 0), name="pad")(joined))


def _pad_in_a_branch(x):  # cropped back to the other branch's length before the merge
    padded = layers.ZeroPadding1D((2, 0), name="pad")(layers.Dense(3, name="dense")(x))
    padded = layers.LSTM(3, return_sequences=True, name="lstm")(padded)
    return layers.Add(name="join")([x, layers.Cropping1D((2, 0), name="crop")(padded)])


def _merge_after_upsampling(x):  # both branches descend from the upsampling
    up = layers.UpSampling1D(2, name="up")(x)
    joined = layers.Add(name="join")([layers.Dense(3, name="a")(up), layers.Dense(3, activation="tanh", name="b")(up)])
    return layers.LSTM(4, return_sequences=True, name="lstm")(joined)


def _upsampling_merged_with_its_input(x):  # a strided Conv1D makes T rows of the 2T again
    back = layers.Conv1D(3, 2, strides=2, name="conv")(layers.UpSampling1D(2, name="up")(x))
    return layers.GRU(2, name="gru")(layers.Add(name="join")([layers.Dense(3, name="dense")(x), back]))


def _graph(tmp_path, build):
    """A Keras model of ``build(x)`` on ``x`` of any length and 3 features, random weights, saved and
    converted: ``(keras_model, edgernn_model)``."""
    inputs = keras.Input(shape=(None, 3))
    model = keras.Model(inputs, build(inputs))
    randomize(model)
    model.save(tmp_path / "m.keras")
    return model, edgernn.convert(tmp_path / "m.keras")


@pytest.mark.parametrize("path", ["fused", "many streams"])
@pytest.mark.parametrize("build", [_pad_after_merge, _merge_after_upsampling], ids=["pad", "upsampling"])
def test_a_graph_that_merges_after_a_padding_or_upsampling_streams(build, path, tmp_path, monkeypatch):
    if path == "many streams":
        many_streams(monkeypatch)
    model, m = _graph(tmp_path, build)
    check_stream(model, m, data(batch=2, steps=7))


# (the first layer after it in the model's order that reads from before it is named: 'dense', or 'join')
@pytest.mark.parametrize("build, text", [
    (_pad_in_a_branch, "reads a tensor from before 'pad', ZeroPadding1D on the left"),
    (_upsampling_merged_with_its_input, "reads a tensor from before 'up', UpSampling1D (size 2)"),
], ids=["pad", "upsampling"])
def test_what_descends_from_a_padding_or_upsampling_merged_with_what_came_before_is_refused(build, text, tmp_path):
    model, m = _graph(tmp_path, build)
    with pytest.raises(NotStreamable) as info:
        m.stream()
    assert text in str(info.value)
    x = data(batch=2, steps=6)
    np.testing.assert_allclose(m.predict(x), model.predict(x, verbose=0), atol=ATOL, rtol=RTOL)  # predict runs it


# --- UpSampling1D -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upsampled(tmp_path_factory):
    """Each input repeated twice, a valid Conv1D of stride 3 over the repeats (it emits on the first
    or the second repeat of an input, or on none), an LSTM and a Dense after it."""
    return convert(layers.UpSampling1D(2, name="up"), layers.Conv1D(4, 2, strides=3, name="conv"),
                   layers.LSTM(3, return_sequences=True, name="lstm"), layers.Dense(2, name="head"),
                   tmp_path=tmp_path_factory.mktemp("upsampled"))


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_reset_one_stream_of_an_upsampled_model(upsampled, path, monkeypatch):
    """reset(1) mid-sequence: stream 1 starts over (its conv's phase too), emits when it alone
    should, and equals predict on its own prefix; stream 0 goes on."""
    if path == "many streams":
        many_streams(monkeypatch)
    _, m = upsampled
    x = data(batch=3, steps=17, seed=11)
    s = m.stream(3)
    assert s._fused == (path == "fused")
    s.run(x[:, :7])
    s.reset(1)
    ys, emitted = step_through(s, x[:, 7:])
    assert_each_stream_from_its_start(m, x, ys, emitted, 7)


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_upsampled_state_resumes_mid_sequence(upsampled, path, tmp_path, monkeypatch):
    """get_state/set_state and save_state/load_state mid-sequence (the conv's counters inside a
    repeat cycle) resume exactly; an UpSampling1D adds no state of its own."""
    if path == "many streams":
        many_streams(monkeypatch)
    _, m = upsampled
    x = data(batch=2, steps=12, seed=13)
    s = m.stream(2)
    s.run(x[:, :4])
    snapshot = s.get_state()
    assert sorted(snapshot) == ["conv/counters", "conv/inputs", "lstm/c", "lstm/h", "output"]
    s.save_state(tmp_path / "state.zip")
    expected = step_through(s, x[:, 4:])
    other = m.stream(2)
    other.set_state(snapshot)
    np.testing.assert_array_equal(step_through(other, x[:, 4:])[0], expected[0])
    loaded = m.stream(2)
    loaded.load_state(tmp_path / "state.zip")
    again = step_through(loaded, x[:, 4:])
    np.testing.assert_array_equal(again[0], expected[0])
    np.testing.assert_array_equal(again[1], expected[1])
    assert_paths_agree(expected[0], m.stream(2).run(x)[:, 4:])  # run on the whole sequence: the same rows


def test_upsampled_verification_and_quantize(upsampled):
    """convert's verification compares each emitted step with the last row predict makes from its
    prefix; the firmware runtime has no UpSampling1D, named."""
    _, m = upsampled
    record = m.spec.source["verification"]
    assert record["passed"] and any(c["check"].startswith("stream") and c["passed"] for c in record["checks"])
    with pytest.raises(EdgernnError) as info:
        m.quantize(data(batch=2, steps=8))
    assert "'up' is UpSample1D (UpSampling1D)" in str(info.value) + " ".join(getattr(info.value, "problems", []))
