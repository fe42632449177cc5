"""Streaming convolutional front-ends (issue #16): Conv1D (causal, valid; strides, dilation,
groups, activations), valid Max/AveragePooling1D, global pooling, BatchNormalization and CNN-LSTMs
stepped one timestep at a time, against live Keras 3 on prefixes and against edgernn's predict.

The property: where a stream emits, its output is ``predict`` on the prefix of the input that ends
there (to atol 1e-5 + rtol 1e-4); elsewhere it holds the last emitted output (zeros before the
first) and ``emitted`` is False. Emission is expected where predict's row count grows, counted from
the IR's ``output_steps`` (not from the streaming code). Also: run agrees with step, both paths
(fused and many streams), reset of one stream mid-sequence, get/set_state, save/load_state,
forecast, no allocation per step, and the refusals that name the layer.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_conv_layers import data, randomize
from test_keras_import import ATOL, RTOL, keras, layers
from test_stream import assert_paths_agree, assert_steps_allocate_nothing, conv_chain, recurrent

import edgernn
from edgernn import ir, reference, runtime, statefile
from edgernn.errors import EdgernnError, InvalidInput, InvalidStateFile
from edgernn.graph import execute

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

F32 = np.float32


def convert(*stack, features=3, seed=0, tmp_path=None):
    """A Keras model of any length (``Input(shape=(None, features))``), random weights, saved and
    converted with edgernn: ``(keras_model, edgernn_model)``."""
    model = keras.Sequential([keras.Input(shape=(None, features)), *stack])
    randomize(model, seed)
    path = tmp_path / "model.keras"
    model.save(path)
    return model, edgernn.convert(path)


def rows_of(spec, steps):
    """How many time rows ``predict`` makes from ``steps`` inputs (IR shape arithmetic only); for a
    global pooling, the rows it reduces (its output changes with each). (Also of a Pad1D's crops
    and zero rows, and an UpSample1D's repeats: tests/test_reshape_stream.py.)"""
    for node in spec.nodes:
        op = node.op
        if isinstance(op, (ir.Conv1D, ir.Pad1D)) or (isinstance(op, ir.Pooling1D) and not op.global_pool):
            steps = op.output_steps(steps)
        elif isinstance(op, ir.UpSample1D):  # (tests/test_reshape_stream.py)
            steps *= op.size
    return steps


def expected_emitted(spec, steps):
    """(steps,) bool: True where one more input makes predict's row count grow."""
    counts = np.array([rows_of(spec, n) for n in range(steps + 1)])
    return np.diff(counts) > 0


def step_through(stream, x):
    """Every step's output (batch, T, O) and emitted mask (batch, T)."""
    ys, emitted = [], []
    for t in range(x.shape[1]):
        ys.append(stream.step(x[:, t]))
        emitted.append(stream.emitted.copy())
    return np.stack(ys, axis=1), np.stack(emitted, axis=1)


def check_stream(keras_model, m, x, batch_check_keras=4, chunks=(5, 1, 7)):
    """The stream of ``m`` on ``x``, stepped and run in chunks, against predict on every prefix
    and Keras on a few; returns the stepped outputs and emitted mask."""
    batch, steps, _ = x.shape
    s = m.stream(batch)
    ys, emitted = step_through(s, x)
    expected = expected_emitted(m.spec, steps)
    assert emitted.any(), "the case must emit"
    np.testing.assert_array_equal(emitted, np.broadcast_to(expected, emitted.shape))
    # run in uneven chunks: the same rows and the same mask
    r = m.stream(batch)
    pieces, masks, t, k = [], [], 0, 0
    while t < steps:
        n = min(chunks[k % len(chunks)], steps - t)
        pieces.append(r.run(x[:, t:t + n]))
        masks.append(r.emitted_run)
        np.testing.assert_array_equal(r.emitted, masks[-1][:, -1])
        t, k = t + n, k + 1
    assert_paths_agree(np.concatenate(pieces, axis=1), ys)
    np.testing.assert_array_equal(np.concatenate(masks, axis=1), emitted)
    # edgernn predict on every prefix; zeros (what reset gives) before the first emission
    sequence = m.spec.tensor_shape(m.spec.outputs[0])[0] == 3
    first = int(np.argmax(expected))
    np.testing.assert_array_equal(ys[:, :first], 0.0)
    for n in range(first + 1, steps + 1):
        p = m.predict(x[:, :n])
        np.testing.assert_allclose(ys[:, n - 1], p[:, -1] if sequence else p, atol=ATOL, rtol=RTOL,
                                   err_msg=f"prefix of {n} steps")
    # Keras itself on a few prefixes, the last one included (a held step among them when there is one)
    held = np.flatnonzero(~expected[first:]) + first + 1
    prefixes = sorted({steps, first + 1, *([int(held[len(held) // 2])] if len(held) else [])})
    for n in prefixes[-batch_check_keras:]:
        k_out = np.asarray(keras_model(x[:, :n], training=False))
        np.testing.assert_allclose(ys[:, n - 1], k_out[:, -1] if sequence else k_out, atol=ATOL, rtol=RTOL,
                                   err_msg=f"Keras on the prefix of {n} steps")
    return ys, emitted


# --- Conv1D ------------------------------------------------------------------------------------

CONV_CASES = [
    dict(kernel_size=3, padding="causal"),
    dict(kernel_size=3, padding="causal", dilation_rate=2, activation="relu"),
    dict(kernel_size=2, padding="causal", dilation_rate=3, groups=2, activation="tanh"),
    dict(kernel_size=3, padding="valid"),
    dict(kernel_size=3, padding="valid", dilation_rate=2, activation="gelu"),
    dict(kernel_size=4, padding="valid", groups=2, activation="sigmoid"),
    dict(kernel_size=3, padding="causal", strides=2),
    dict(kernel_size=2, padding="causal", strides=3, groups=2, activation="relu"),  # (Keras: no strides with dilation)
    dict(kernel_size=3, padding="valid", strides=2, activation="elu"),
    dict(kernel_size=4, padding="valid", strides=3, groups=2),
    dict(kernel_size=1, padding="valid", strides=2, use_bias=False),
]


@pytest.mark.parametrize("options", CONV_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_conv1d_streams(options, tmp_path):
    keras_model, m = convert(layers.Conv1D(6, **options), features=4, tmp_path=tmp_path)
    check_stream(keras_model, m, data(batch=3, steps=17, features=4))


@pytest.mark.parametrize("options", [CONV_CASES[1], CONV_CASES[4], CONV_CASES[10]],
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_conv1d_many_streams(options, tmp_path, monkeypatch):
    """The many-streams step of an ungrouped Conv1D (one product across the streams, read from
    the ring; edgernn.kernels.window.conv_batch) on the geometries the CNN-LSTMs below leave out:
    a causal dilated relu (the relu applied as the product stores), a valid dilated one with
    another activation, kernel_size 1 (no tap in the ring) with strides."""
    monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)
    keras_model, m = convert(layers.Conv1D(6, **options), features=4, tmp_path=tmp_path)
    assert not m.stream(3)._fused
    check_stream(keras_model, m, data(batch=3, steps=17, features=4))


# --- pooling ---------------------------------------------------------------------------------------

POOL_CASES = [
    (layers.MaxPooling1D, dict(pool_size=2)),
    (layers.MaxPooling1D, dict(pool_size=3, strides=2)),
    (layers.MaxPooling1D, dict(pool_size=2, strides=3)),
    (layers.AveragePooling1D, dict(pool_size=2)),
    (layers.AveragePooling1D, dict(pool_size=3, strides=1)),
    (layers.AveragePooling1D, dict(pool_size=4, strides=3)),
]


@pytest.mark.parametrize("cls, options", POOL_CASES, ids=lambda c: getattr(c, "__name__", None) or str(c))
def test_pooling_streams(cls, options, tmp_path):
    keras_model, m = convert(layers.Conv1D(4, 2, padding="causal"), cls(**options), tmp_path=tmp_path)
    check_stream(keras_model, m, data(batch=3, steps=16))


@pytest.mark.parametrize("cls", [layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D])
@pytest.mark.parametrize("conv", [dict(padding="causal"), dict(padding="valid", strides=2)])
def test_global_pooling_streams(cls, conv, tmp_path):
    """A running mean / max over every row so far: each step equals predict on the prefix."""
    keras_model, m = convert(layers.Conv1D(5, 3, **conv), cls(), layers.Dense(2), tmp_path=tmp_path)
    assert m.spec.tensor_shape(m.spec.nodes[1].outputs[0]) == (2, 5)
    check_stream(keras_model, m, data(batch=2, steps=15))


@pytest.mark.parametrize("cls, options", [(layers.DepthwiseConv1D, dict(depth_multiplier=2, dilation_rate=2)),
                                          (layers.DepthwiseConv1D, dict(strides=2)),
                                          (layers.SeparableConv1D, dict(filters=4, activation="relu", dilation_rate=2))])
def test_depthwise_and_separable_convolutions_stream(cls, options, tmp_path):
    """They convert to Conv1D ops (grouped, then pointwise), which stream as any Conv1D. (Keras
    gives neither causal padding; valid streams, same is refused like Conv1D's.)"""
    keras_model, m = convert(cls(kernel_size=3, padding="valid", **options), layers.LSTM(4, return_sequences=True),
                             tmp_path=tmp_path)
    assert {type(n.op).__name__ for n in m.spec.nodes} == {"Conv1D", "Recurrent"}
    check_stream(keras_model, m, data(batch=2, steps=13))


def test_global_average_count_saturates_exactly():
    """The count is float32: it stops at 2**24, where it is still exact, and the mean then moves
    by 2**-24 of each new input instead of jumping."""
    spec = ir.ModelSpec((ir.Input("x", 2),), (ir.Node(ir.Pooling1D("g", "average", global_pool=True), ("x",),
                                                       ("y",)),), ("y",))
    s = edgernn.Model(spec).stream(1)
    state = s.get_state()
    state["g/count"][:] = 2.0**24
    state["g/pooled"][:] = 1.0
    s.set_state(state)
    y = s.step(np.array([[1.0 + 2.0**24 * 0.5, 1.0]], F32))
    assert s.get_state()["g/count"][0, 0] == 2.0**24
    np.testing.assert_allclose(y, [[1.5, 1.0]], rtol=1e-6)


# --- BatchNormalization, CNN-LSTMs ----------------------------------------------------------------


def test_batch_normalization_streams(tmp_path):
    keras_model, m = convert(layers.Conv1D(4, 3, padding="causal", activation="relu"), layers.BatchNormalization(epsilon=0.01),
                             layers.LSTM(5, return_sequences=True), layers.BatchNormalization(), tmp_path=tmp_path)
    assert [type(n.op).__name__ for n in m.spec.nodes] == ["Conv1D", "Affine", "Recurrent", "Affine"]
    check_stream(keras_model, m, data(batch=2, steps=14))


@pytest.fixture(scope="module")
def cnn_lstm(tmp_path_factory):
    """The issue's CNN-LSTM: Conv1D(32, 5, causal) -> Conv1D(32, 5, causal) -> LSTM(64) -> Dense(6)."""
    return convert(layers.Conv1D(32, 5, padding="causal", activation="relu"), layers.Conv1D(32, 5, padding="causal"),
                   layers.LSTM(64), layers.Dense(6), features=3, tmp_path=tmp_path_factory.mktemp("cnn_lstm"))


@pytest.fixture(scope="module")
def strided_cnn_lstm(tmp_path_factory):
    return convert(layers.Conv1D(16, 3, strides=2, padding="causal", activation="relu"),
                   layers.Conv1D(16, 3, dilation_rate=2, padding="valid"), layers.MaxPooling1D(2),
                   layers.LSTM(12), layers.Dense(3, activation="softmax"), features=3,
                   tmp_path=tmp_path_factory.mktemp("strided"))


@pytest.mark.parametrize("which", ["cnn_lstm", "strided_cnn_lstm"])
@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_cnn_lstm_streams(which, path, request):
    keras_model, m = request.getfixturevalue(which)
    limit = runtime.fused_step_max_batch(m.spec)
    batch = 2 if path == "fused" else limit + 3
    assert (batch <= limit) == (path == "fused")
    assert m.stream(batch)._fused == (path == "fused")
    check_stream(keras_model, m, data(batch=batch, steps=30, seed=batch), chunks=(7, 2, 11))


def test_fused_and_many_streams_paths_agree(strided_cnn_lstm, monkeypatch):
    _, m = strided_cnn_lstm
    x = data(batch=5, steps=25, seed=3)
    fused = step_through(m.stream(5), x)
    monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)
    many = m.stream(5)
    assert not many._fused
    other = step_through(many, x)
    assert_paths_agree(other[0], fused[0])
    np.testing.assert_array_equal(other[1], fused[1])


# --- per-stream phases, state ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_reset_one_stream_mid_sequence(strided_cnn_lstm, path, monkeypatch):
    """After reset(1) stream 1 starts over, at another phase than its neighbours: each stream
    emits when it alone should, and equals predict on its own prefix."""
    if path == "many streams":
        monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)
    _, m = strided_cnn_lstm
    x = data(batch=3, steps=29, seed=5)
    s = m.stream(3)
    s.run(x[:, :9])
    s.reset(1)
    ys, emitted = step_through(s, x[:, 9:])
    for row, start in ((0, 0), (1, 9), (2, 0)):
        expected = expected_emitted(m.spec, 29)[start:] if start == 0 else expected_emitted(m.spec, 20)
        np.testing.assert_array_equal(emitted[row], expected[-20:])
        for n in range(1, 21):
            total = n + 9 - start
            if rows_of(m.spec, total):
                np.testing.assert_allclose(ys[row, n - 1], m.predict(x[row:row + 1, start:9 + n])[0], atol=ATOL,
                                           rtol=RTOL)
            else:
                np.testing.assert_array_equal(ys[row, n - 1], 0.0)
    assert not np.array_equal(emitted[0], emitted[1])  # the phases differ


def test_get_and_set_state_mid_sequence(strided_cnn_lstm):
    _, m = strided_cnn_lstm
    x = data(batch=2, steps=23, seed=7)
    s = m.stream(2)
    s.run(x[:, :11])
    snapshot = s.get_state()
    names = {n for n in snapshot if n.startswith("conv1d")}
    assert any(n.endswith("/inputs") for n in names) and any(n.endswith("/counters") for n in names)
    first, first_emitted = step_through(s, x[:, 11:])
    other = m.stream(2)
    other.set_state(snapshot)
    assert not other.emitted.any()
    again, again_emitted = step_through(other, x[:, 11:])
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(again_emitted, first_emitted)
    # a counter that would index outside the ring is refused, and nothing changes
    before = other.get_state()
    for name in [n for n in snapshot if n.endswith("/counters")]:
        for bad in (99.0, 0.5, -1.0, np.nan):
            broken = {k: v.copy() for k, v in snapshot.items()}
            broken[name][0, 2] = bad
            with pytest.raises(InvalidInput, match="whole numbers"):
                other.set_state(broken, allow_nonfinite=True)
            after = other.get_state()
            assert all(np.array_equal(after[k], before[k]) for k in before)


def test_save_and_load_state(strided_cnn_lstm, tmp_path):
    _, m = strided_cnn_lstm
    x = data(batch=2, steps=20, seed=8)
    s = m.stream(2)
    s.run(x[:, :7])
    s.save_state(tmp_path / "state.zip")
    with zipfile.ZipFile(tmp_path / "state.zip") as archive:  # version 3: it holds rings and counters
        assert json.loads(archive.read("header.json"))["format_version"] == statefile.FORMAT_VERSION_WINDOWS
    expected = s.run(x[:, 7:])
    loaded = m.stream(2)
    loaded.load_state(tmp_path / "state.zip")
    np.testing.assert_array_equal(loaded.run(x[:, 7:]), expected)
    with pytest.raises(InvalidStateFile, match="2 streams"):
        m.stream(3).load_state(tmp_path / "state.zip")


def test_forecast_feeds_back_through_the_window(tmp_path):
    """Output width = input width: forecast's k-th output is predict on the history followed by
    its last output and the k forecast outputs before it (each output is the next input)."""
    keras_model, m = convert(layers.Conv1D(6, 3, padding="causal", activation="tanh"), layers.LSTM(8, return_sequences=True),
                             layers.Dense(3), features=3, tmp_path=tmp_path)
    x = data(batch=2, steps=10, seed=9)
    s = m.stream(2)
    last = s.run(x)[:, -1:]
    f = s.forecast(4)
    assert f.shape == (2, 4, 3)
    sequence = np.concatenate([x, last], axis=1)
    for k in range(4):
        np.testing.assert_allclose(f[:, k], m.predict(sequence)[:, -1], atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(f[:, k], np.asarray(keras_model(sequence))[:, -1], atol=ATOL, rtol=RTOL)
        sequence = np.concatenate([sequence, f[:, k:k + 1]], axis=1)


# --- speed rules, refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_conv_steps_allocate_nothing(cnn_lstm, strided_cnn_lstm, path):
    for _, m in (cnn_lstm, strided_cnn_lstm):
        batch = 2 if path == "fused" else runtime.fused_step_max_batch(m.spec) + 3
        s = m.stream(batch)
        assert s._fused == (path == "fused")
        x = data(batch=batch, steps=1, seed=10)[:, 0]
        assert_steps_allocate_nothing(s, x, np.empty((batch, m.output_features), F32))


@pytest.mark.parametrize("stack, name, text", [
    ([layers.Conv1D(4, 3, padding="same", name="ahead")], "ahead", "padding='same'"),
    ([layers.Conv1D(4, 3, padding="causal"), layers.MaxPooling1D(2, padding="same", name="pool")], "pool",
     "padding='same'"),
    ([layers.Conv1D(4, 3, padding="causal"), layers.Flatten(name="flat"), layers.Dense(2)], "flat", "Flatten over time"),
])
def test_what_reads_the_future_is_refused_by_name(stack, name, text, tmp_path):
    model = keras.Sequential([keras.Input(shape=(8, 3)), *stack])
    randomize(model)
    model.save(tmp_path / "m.keras")
    m = edgernn.convert(tmp_path / "m.keras")
    with pytest.raises(EdgernnError) as info:
        m.stream()
    assert f"{name!r}" in str(info.value) and text in str(info.value)
    m.predict(data(steps=8))  # predict still runs it


def test_a_streamable_conv_quantizes(cnn_lstm):
    """What streams, the firmware runs (tests/test_firmware_conv.py checks it against Keras and the C):
    the float32 scheme's simulation answers the model's predict."""
    _, m = cnn_lstm
    x = data()
    q = m.quantize(x, "float32")
    np.testing.assert_allclose(q.predict(x), m.predict(x), atol=ATOL, rtol=RTOL)


# --- from the IR: strides with dilation, a Masking ahead of the convolutions -------------------------


@pytest.mark.parametrize("path", ["fused", "many streams"])
@pytest.mark.parametrize("global_pool", [None, "max"])
def test_strided_dilated_chain_from_the_ir(path, global_pool, monkeypatch):
    """Strides with dilation (which Keras refuses) and a Masking ahead of the convolutions: each
    step against the float64 reference on the prefix ending there."""
    if path == "many streams":
        monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)
    m = conv_chain(3, strides=3, dilation=2, mask_value=0.0, global_pool=global_pool)
    x = data(batch=2, steps=60, seed=11)
    x[:, ::5] = 0.0  # masked steps: zeros into the convolution, as predict feeds them
    ys, emitted = step_through(m.stream(2), x)
    expected = expected_emitted(m.spec, 60)
    np.testing.assert_array_equal(emitted, np.broadcast_to(expected, emitted.shape))
    first = int(np.argmax(expected))
    for n in range(first + 1, 61):
        p = execute(m.spec, [x[:, :n]], reference)[0]
        np.testing.assert_allclose(ys[:, n - 1], p[:, -1] if global_pool is None else p, atol=ATOL, rtol=RTOL)


def test_summary_counts_the_windows_in_the_state(cnn_lstm):
    """Two Conv1D(32, 5, causal) rings of 4 inputs (3 and 32 features) with 3 counters each, LSTM(64) h and c."""
    from edgernn.summary import describe

    _, m = cnn_lstm
    assert describe(m.spec)["state_bytes_per_stream"] == 4 * ((4 * 3 + 3) + (4 * 32 + 3) + 2 * 64)
    s = m.stream(1)
    assert sum(v.size for k, v in s.get_state().items() if k != "output") * 4 == describe(m.spec)["state_bytes_per_stream"]


@st.composite
def window_chains(draw):
    """A random streamable chain of Conv1D (causal or valid; any kernel size, dilation, strides,
    groups, activation), valid pooling, Affine, and an optional LSTM and global pooling, from the IR."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    features = width = draw(st.integers(1, 4))
    ops = []
    for k in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("conv", "conv", "max", "average", "affine")))
        if kind == "conv":
            groups = draw(st.sampled_from([g for g in (1, 2) if width % g == 0]))
            filters = groups * draw(st.integers(1, 3))
            size = draw(st.integers(1, 4))
            ops.append(ir.Conv1D(f"conv{k}", ir.as_weight(rng.normal(0, 0.7, (size, width // groups, filters))),
                                 ir.as_weight(rng.normal(0, 0.3, filters)) if draw(st.booleans()) else None,
                                 strides=draw(st.integers(1, 3)), padding=draw(st.sampled_from(("causal", "valid"))),
                                 dilation_rate=draw(st.integers(1, 3)), groups=groups,
                                 activation=draw(st.sampled_from(("linear", "relu", "tanh", "gelu")))))
            width = filters
        elif kind == "affine":
            ops.append(ir.Affine(f"affine{k}", ir.as_weight(rng.normal(1, 0.3, width)),
                                 ir.as_weight(rng.normal(0, 0.3, width))))
        else:
            ops.append(ir.Pooling1D(f"pool{k}", kind, pool_size=draw(st.integers(1, 3)), strides=draw(st.integers(1, 3))))
    if draw(st.booleans()):
        ops.append(recurrent(rng, "lstm", "lstm", 3, width, return_sequences=True))
        width = 3
    tail = draw(st.sampled_from((None, "max", "average")))
    if tail:
        ops.append(ir.Pooling1D("global", tail, global_pool=True))
    nodes, current = [], "x"
    for k, op in enumerate(ops):
        nodes.append(ir.Node(op, (current,), (f"t{k}",)))
        current = f"t{k}"
    return edgernn.Model(ir.ModelSpec((ir.Input("x", features),), tuple(nodes), (current,)))


@given(model=window_chains(), batch=st.integers(1, 3), many=st.booleans(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_window_chains_against_the_reference(model, batch, many, seed):
    """Any mix of them: each step where predict has rows equals the float64 reference on the
    prefix; emission where the row count grows; zeros before; run equals step."""
    steps = 24
    x = np.random.default_rng(seed).normal(0, 1, (batch, steps, model.input_features)).astype(F32)
    saved = runtime.FUSED_STEP_MAX_BATCH
    runtime.FUSED_STEP_MAX_BATCH = 0 if many else None
    try:
        s = model.stream(batch)
        ys, emitted = step_through(s, x)
        run = model.stream(batch).run(x)
    finally:
        runtime.FUSED_STEP_MAX_BATCH = saved
    expected = expected_emitted(model.spec, steps)
    np.testing.assert_array_equal(emitted, np.broadcast_to(expected, emitted.shape))
    assert_paths_agree(run, ys)
    sequence = model.spec.tensor_shape(model.spec.outputs[0])[0] == 3
    for n in range(1, steps + 1):
        if not expected[:n].any():
            np.testing.assert_array_equal(ys[:, n - 1], 0.0)
            continue
        p = execute(model.spec, [x[:, :n]], reference)[0]
        np.testing.assert_allclose(ys[:, n - 1], p[:, -1] if sequence else p, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("global_pool", [None, "max"])
def test_nan_propagates_through_max_pooling_as_in_predict(global_pool):
    """A NaN input stays NaN through a max, as NumPy's max over the prefix keeps it."""
    m = conv_chain(4, strides=1, dilation=1, global_pool=global_pool)
    x = data(batch=1, steps=12, seed=12)
    x[0, 6, 1] = np.nan
    ys, _ = step_through(m.stream(1), x)
    for n in range(5, 13):
        p = m.predict(x[:, :n])
        np.testing.assert_allclose(ys[:, n - 1], p[:, -1] if global_pool is None else p, atol=ATOL, rtol=RTOL)
    assert np.isnan(ys[0, -1]).all()


def test_warmup_fills_the_windows():
    """warmup predicts on a sequence long enough for every valid window (a global max of no rows
    would raise) and steps and runs the stream."""
    m = conv_chain(6, strides=3, dilation=2, global_pool="max")
    assert m.warmup() is m
    ys, _ = step_through(m.stream(1), data(batch=1, steps=40, seed=13))
    np.testing.assert_allclose(ys[:, -1], m.predict(data(batch=1, steps=40, seed=13)), atol=ATOL, rtol=RTOL)
