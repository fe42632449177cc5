"""Streams (``Model.stream``): Keras ``stateful=True`` semantics, checked against whole-sequence runs.

Models are random chains built from the IR directly: optional Masking, 1-3 stacked recurrent layers
of different widths and cells, optional Activation and Dense head. A fused ``step``, an across-streams step of
many streams, and blocks of different shapes (``run``, ``predict``) sum the same terms in other
orders, so they must agree to float32 rounding (``assert_paths_agree``); the same path on the
same input must agree bit for bit, and state left untouched must stay equal, bit for bit.
"""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgernn
from edgernn import graph, ir, reference, runtime
from edgernn.errors import InvalidInput, NotStreamable

F32 = np.float32
CELLS = ("lstm", "gru", "gru_v1", "simple")  # gru_v1: GRU with reset_after=False
def assert_paths_agree(actual, desired, err_msg=""):
    """Two ways through the same equations: equal up to float32 rounding of differently ordered sums."""
    np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=1e-6, err_msg=err_msg)


SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- building models from the IR ---------------------------------------------------------------------------


def recurrent(rng, name, cell, units, input_size, **flags):
    """A recurrent layer with random moderate weights; ``cell`` may be ``gru_v1`` (reset_after=False)."""
    reset_after = cell != "gru_v1"
    cell = "gru" if cell == "gru_v1" else cell
    width = ir.CELL_GATES[cell] * units
    return ir.Recurrent(
        name, cell, units, input_size,
        kernel=ir.as_weight(rng.normal(0, 0.9 / np.sqrt(input_size), (input_size, width))),
        recurrent_kernel=ir.as_weight(rng.normal(0, 0.9 / np.sqrt(units), (units, width))),
        bias=ir.as_weight(rng.normal(0, 0.3, width)),
        recurrent_bias=ir.as_weight(rng.normal(0, 0.3, width)) if cell == "gru" and reset_after else None,
        reset_after=reset_after, **flags,
    )


def dense(rng, name, input_size, units, activation="linear"):
    return ir.Dense(name, ir.as_weight(rng.normal(0, 1.0 / np.sqrt(input_size), (input_size, units))),
                    ir.as_weight(rng.normal(0, 0.2, units)), activation)


def chain(seed, features, layers, *, mask_value=None, head=None, activation=None, last_return_sequences=True,
          zero_output_for_mask=False):
    """A chain model: [Masking] -> recurrent layers ``[(cell, units), ...]`` -> [Activation] -> [Dense head].

    ``head``: ``(units, activation)`` or None. Every recurrent layer reads the Masking's mask.
    """
    rng = np.random.default_rng(seed)
    nodes, current, width, mask = [], "x", features, None
    if mask_value is not None:
        nodes.append(ir.Node(ir.Masking("masking", float(mask_value)), (current,), ("masked", "mask")))
        current, mask = "masked", "mask"
    for k, (cell, units) in enumerate(layers):
        last = k == len(layers) - 1
        layer = recurrent(rng, f"rnn{k}", cell, units, width,
                          return_sequences=last_return_sequences or not last, zero_output_for_mask=zero_output_for_mask)
        nodes.append(ir.Node(layer, (current,), (f"h{k}",), mask=mask))
        current, width = f"h{k}", units
    if activation is not None:
        nodes.append(ir.Node(ir.Activation("act", activation), (current,), ("a",)))
        current = "a"
    if head is not None:
        nodes.append(ir.Node(dense(rng, "head", width, head[0], head[1]), (current,), ("y",)))
        current = "y"
    return edgernn.Model(ir.ModelSpec((ir.Input("x", features),), tuple(nodes), (current,)))


def conv_chain(seed, features=3, *, strides=2, dilation=2, mask_value=None, global_pool="average"):
    """A streamable convolutional chain from the IR (Keras refuses strides with dilation; the IR
    does not): [Masking] -> causal dilated Conv1D (relu) -> Affine -> valid strided grouped,
    dilated Conv1D (tanh) -> valid MaxPooling -> GRU (return_sequences) -> global pooling or
    none -> Dense."""
    rng = np.random.default_rng(seed)

    def conv(name, k, c, f, **options):
        groups = options.get("groups", 1)
        return ir.Conv1D(name, ir.as_weight(rng.normal(0, 0.9 / np.sqrt(k * c / groups), (k, c // groups, f))),
                         ir.as_weight(rng.normal(0, 0.3, f)), **options)

    ops = [conv("causal", 3, features, 4, padding="causal", dilation_rate=dilation, activation="relu"),
           ir.Affine("norm", ir.as_weight(rng.uniform(0.5, 1.5, 4)), ir.as_weight(rng.normal(0, 0.2, 4))),
           conv("valid", 2, 4, 6, padding="valid", strides=strides, dilation_rate=dilation, groups=2,
                activation="tanh"),
           ir.Pooling1D("pool", "max", pool_size=3, strides=strides),
           recurrent(rng, "gru", "gru", 5, 6, return_sequences=True)]
    if global_pool:
        ops.append(ir.Pooling1D("global", global_pool, global_pool=True))
    ops.append(dense(rng, "head", 5, 3))
    nodes, current = [], "x"
    if mask_value is not None:
        nodes.append(ir.Node(ir.Masking("masking", float(mask_value)), ("x",), ("masked", "mask")))
        current = "masked"
    for k, op in enumerate(ops):
        nodes.append(ir.Node(op, (current,), (f"t{k}",)))
        current = f"t{k}"
    return edgernn.Model(ir.ModelSpec((ir.Input("x", features),), tuple(nodes), (current,)))


@st.composite
def chain_models(draw, last_return_sequences=None):
    """``(model, mask_value or None, last_return_sequences)`` for a random chain."""
    features = draw(st.integers(1, 6))
    n_layers = draw(st.integers(1, 3))
    layers = [(draw(st.sampled_from(CELLS)), draw(st.integers(1, 12))) for _ in range(n_layers)]
    mask_value = draw(st.sampled_from((None, None, 0.0, -1.0, 0.5)))
    head = draw(st.sampled_from((None, "softmax", "linear", "tanh", "log_softmax", "sigmoid")))
    head_units = draw(st.integers(1, 5))
    activation = draw(st.sampled_from((None, None, "relu", "hard_sigmoid")))
    if last_return_sequences is None:
        last_return_sequences = draw(st.booleans())
    model = chain(draw(st.integers(0, 2**32 - 1)), features, layers, mask_value=mask_value,
                  head=None if head is None else (head_units, head), activation=activation,
                  last_return_sequences=last_return_sequences, zero_output_for_mask=draw(st.booleans()))
    return model, mask_value, last_return_sequences


def inputs(rng, batch, steps, features, mask_value=None, masked_fraction=0.25):
    """Random inputs; with a mask value, about ``masked_fraction`` of the timesteps equal it."""
    x = rng.uniform(-1.5, 1.5, (batch, steps, features)).astype(F32)
    if mask_value is not None:
        x[rng.random((batch, steps)) < masked_fraction] = mask_value
    return x


def split_points(rng, steps, include_empty=True):
    """Random chunk boundaries over ``range(steps)``, including chunks of length 0 and 1."""
    cuts = [0]
    while cuts[-1] < steps:
        length = int(rng.choice([0, 1, 1, 2, 3, 5])) if include_empty else int(rng.integers(1, 4))
        cuts.append(min(steps, cuts[-1] + length))
    return list(zip(cuts[:-1], cuts[1:])) + [(steps, steps)]


def assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def forecaster(seed=0, features=3, cells=(("lstm", 8),), head="linear"):
    """A model whose outputs are as many as its input features (so outputs can be fed back)."""
    return chain(seed, features, list(cells), head=(features, head))


# -- equivalence: predict, run, chunks, steps ----------------------------------------------------------------


@SETTINGS
@given(case=chain_models(), batch=st.integers(1, 5), steps=st.integers(0, 10), seed=st.integers(0, 2**32 - 1))
def test_predict_run_chunks_and_steps_agree(case, batch, steps, seed):
    model, mask_value, last_rs = case
    rng = np.random.default_rng(seed)
    x = inputs(rng, batch, steps, model.input_features, mask_value)
    out = model.output_features

    y_run = model.stream(batch).run(x)
    assert y_run.shape == (batch, steps, out) and y_run.dtype == F32

    if not last_rs and not steps:  # the last step of an empty sequence: refused, not a made-up output
        with pytest.raises(InvalidInput, match="no timesteps"):
            model.predict(x)
    else:
        y_pred = model.predict(x)
        if last_rs:
            assert_paths_agree(y_run, y_pred)
        else:
            # a stream's step output is what the model returns for the sequence ending at that step
            assert_paths_agree(y_run[:, -1], y_pred)
            for t in sorted({0, steps // 2, steps - 1}):
                assert_paths_agree(y_run[:, t], model.predict(x[:, : t + 1]))
        # and the float32 runtime is close to the float64 oracle through the whole graph
        (y_ref,) = graph.execute(model.spec, [x], reference)
        np.testing.assert_allclose(y_pred, y_ref, rtol=1e-3, atol=1e-4)

    s = model.stream(batch)
    chunks = [s.run(x[:, a:b]) for a, b in split_points(rng, steps)]
    assert_paths_agree(np.concatenate(chunks, axis=1), y_run)

    s = model.stream(batch)
    stepped = [s.step(x[:, t])[:, None] for t in range(steps)]
    assert_paths_agree(np.concatenate([np.zeros((batch, 0, out), F32)] + stepped, axis=1), y_run)

    # steps and blocks mixed in one stream
    s = model.stream(batch)
    mixed = []
    for a, b in split_points(rng, steps):
        mixed.append(s.step(x[:, a])[:, None] if b - a == 1 and rng.random() < 0.5 else s.run(x[:, a:b]))
    assert_paths_agree(np.concatenate(mixed, axis=1), y_run)


@SETTINGS
@given(case=chain_models(), batch=st.integers(1, 5), steps=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_reset_of_one_stream_equals_a_fresh_stream(case, batch, steps, seed):
    """After ``reset(i)``, row i continues exactly as a fresh stream fed only the remaining steps,
    and the other rows go on undisturbed."""
    model, mask_value, _ = case
    rng = np.random.default_rng(seed)
    x = inputs(rng, batch, steps, model.input_features, mask_value)
    s = model.stream(batch)
    starts = {i: [0] for i in range(batch)}  # per row: the timesteps at which it was (re)started
    pieces = []
    for a, b in split_points(rng, steps):
        for _ in range(int(rng.integers(0, 3))):
            i = int(rng.integers(-batch, batch))  # negative indices count from the end
            s.reset(i)
            if starts[i % batch][-1] != a:
                starts[i % batch].append(a)
        pieces.append(s.run(x[:, a:b]) if rng.random() < 0.5 or b - a != 1 else s.step(x[:, a])[:, None])
    y = np.concatenate(pieces, axis=1)
    for i in range(batch):
        bounds = starts[i] + [steps]
        for a, b in zip(bounds[:-1], bounds[1:]):
            fresh = model.stream(1).run(x[i : i + 1, a:b])
            assert_paths_agree(y[i : i + 1, a:b], fresh, err_msg=f"row {i} from step {a}")

    # reset() puts every row back to the start
    s.reset()
    np.testing.assert_array_equal(s.run(x), model.stream(batch).run(x))


@SETTINGS
@given(case=chain_models(), steps=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_batch_rows_are_independent(case, steps, seed):
    model, mask_value, _ = case
    rng = np.random.default_rng(seed)
    x = inputs(rng, 4, steps, model.input_features, mask_value)
    y = model.stream(4).run(x)
    for i in range(4):
        other = inputs(rng, 4, steps, model.input_features, mask_value)
        other[i] = x[i]
        assert_paths_agree(model.stream(4).run(other)[i], y[i])
        assert_paths_agree(model.stream(1).run(x[i : i + 1])[0], y[i])


@pytest.mark.parametrize("batch", [1, 4, 400])
def test_batch_sizes(batch):
    model = chain(11, 4, [("lstm", 12), ("gru", 7), ("simple", 5)], mask_value=0.0, head=(3, "softmax"))
    rng = np.random.default_rng(batch)
    x = inputs(rng, batch, 9, 4, mask_value=0.0)
    s = model.stream(batch)
    assert s.batch_size == batch
    y = np.concatenate([s.run(x[:, :4]), s.step(x[:, 4])[:, None], s.run(x[:, 5:])], axis=1)
    assert y.shape == (batch, 9, 3)
    assert_paths_agree(y, model.predict(x))
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    for i in sorted({0, batch // 2, batch - 1}):
        assert_paths_agree(model.stream(1).run(x[i : i + 1])[0], y[i])



@SETTINGS
@given(case=chain_models(), steps=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_fused_and_blas_step_paths_agree(case, steps, seed):
    """Whatever batch size picks the path, both give the same steps (forced here at batch 5)."""
    model, mask_value, _ = case
    x = inputs(np.random.default_rng(seed), 5, steps, model.input_features, mask_value)
    saved = runtime.FUSED_STEP_MAX_BATCH
    try:
        runtime.FUSED_STEP_MAX_BATCH = 5
        fused = model.stream(5)
        runtime.FUSED_STEP_MAX_BATCH = 0
        blas = model.stream(5)
    finally:
        runtime.FUSED_STEP_MAX_BATCH = saved
    assert fused._fused and not blas._fused
    for t in range(steps):
        assert_paths_agree(blas.step(x[:, t]), fused.step(x[:, t]))
    for name, value in fused.get_state().items():
        assert_paths_agree(blas.get_state()[name], value)


def test_the_fused_path_is_chosen_by_work_per_stream():
    """Few streams of a big model go across streams sooner than many streams of a small one."""
    small = chain(1, 3, [("lstm", 4)], head=(1, "linear"))
    big = chain(2, 16, [("lstm", 128), ("lstm", 128)], head=(4, "linear"))
    assert runtime.fused_step_max_batch(small.spec) > 64
    assert runtime.fused_step_max_batch(big.spec) < 16
    assert big.stream(2)._fused and not big.stream(64)._fused and small.stream(64)._fused

def test_run_and_step_return_fresh_arrays():
    """Results never alias the stream's internal buffers (batch 1, T 1 once returned a view)."""
    model = forecaster()
    for batch in (1, 3):
        rng = np.random.default_rng(batch)
        s = model.stream(batch)
        first, first_step = s.run(inputs(rng, batch, 1, 3)), s.step(inputs(rng, batch, 1, 3)[:, 0])
        kept, kept_step = first.copy(), first_step.copy()
        s.run(inputs(rng, batch, 1, 3))
        s.step(inputs(rng, batch, 1, 3)[:, 0])
        np.testing.assert_array_equal(first, kept)
        np.testing.assert_array_equal(first_step, kept_step)
        assert s.run(np.zeros((batch, 0, 3))).shape == (batch, 0, 3)


# -- state snapshots ----------------------------------------------------------------------------------------


@SETTINGS
@given(case=chain_models(), seed=st.integers(0, 2**32 - 1))
def test_get_state_set_state_roundtrip(case, seed):
    model, mask_value, _ = case
    rng = np.random.default_rng(seed)
    features = model.input_features
    s = model.stream(3)
    s.run(inputs(rng, 3, 5, features, mask_value))
    snapshot = s.get_state()
    for value in snapshot.values():
        assert isinstance(value, np.ndarray) and value.shape[0] == 3
    kept = {k: v.copy() for k, v in snapshot.items()}
    later = inputs(rng, 3, 6, features, mask_value)
    expected = s.run(later)
    assert_states_equal(snapshot, kept)  # a snapshot is a copy: running on did not touch it

    s.set_state(snapshot)
    assert_states_equal(s.get_state(), snapshot)
    np.testing.assert_array_equal(s.run(later), expected)

    # into a second stream of the same model: it continues identically, step by step too
    other = model.stream(3)
    other.set_state(snapshot)
    assert_paths_agree(np.stack([other.step(later[:, t]) for t in range(6)], axis=1), expected)
    other_state, state = other.get_state(), s.get_state()  # stepped vs run: paths agree
    for key in state:
        assert_paths_agree(other_state[key], state[key], err_msg=key)


def test_snapshot_is_a_copy_and_names_every_state():
    model = chain(3, 2, [("lstm", 4), ("gru", 3)], head=(2, "linear"))
    s = model.stream(2)
    s.run(np.ones((2, 3, 2)))
    snapshot = s.get_state()
    assert set(snapshot) == {"rnn0/h", "rnn0/c", "rnn1/h", "output"}
    assert snapshot["rnn0/c"].shape == (2, 4) and snapshot["rnn1/h"].shape == (2, 3)
    assert snapshot["output"].shape == (2, 2)
    before = {k: v.copy() for k, v in snapshot.items()}
    s.run(np.ones((2, 3, 2)))
    assert_states_equal(snapshot, before)
    snapshot["rnn0/h"][:] = 123.0  # editing a snapshot does not edit the stream
    assert not np.any(s.get_state()["rnn0/h"] == 123.0)
    # float64 snapshots are accepted (converted)
    s.set_state({k: v.astype(np.float64) for k, v in before.items()})
    assert_states_equal(s.get_state(), before)


def test_layer_names_key_the_state_so_they_must_be_unique():
    """get_state keys states by layer name; two layers of one name would share a key (and
    set_state would load one layer's state into both), so such a spec cannot be built."""
    rng = np.random.default_rng(12)
    first = recurrent(rng, "rnn", "gru", 3, 2, return_sequences=True)
    second = recurrent(rng, "rnn", "gru", 3, 3, return_sequences=True)
    with pytest.raises(edgernn.InvalidModelFile, match="named 'rnn'"):
        ir.ModelSpec((ir.Input("x", 2),), (ir.Node(first, ("x",), ("a",)), ir.Node(second, ("a",), ("b",))), ("b",))


# -- forecast --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cells", [(("lstm", 8),), (("gru", 6), ("simple", 5)), (("gru_v1", 4),)])
def test_forecast_feeds_outputs_back(cells):
    model = forecaster(7, 3, cells)
    rng = np.random.default_rng(7)
    s = model.stream(4)
    history = s.run(inputs(rng, 4, 10, 3))
    start = s.get_state()
    np.testing.assert_array_equal(start["output"], history[:, -1])

    f = s.forecast(12)
    assert f.shape == (4, 12, 3) and f.dtype == F32

    # f[:, 0] is the model stepped on the last output
    first = model.stream(4)
    first.set_state(start)
    np.testing.assert_array_equal(f[:, 0], first.step(history[:, -1]))

    # and the whole forecast is a manual feedback loop
    manual = model.stream(4)
    manual.set_state(start)
    y, loop = start["output"], []
    for _ in range(12):
        y = manual.step(y)
        loop.append(y)
    np.testing.assert_array_equal(f, np.stack(loop, axis=1))
    assert_states_equal(s.get_state(), manual.get_state())

    # the stream carries on from where the forecast left it
    np.testing.assert_array_equal(s.forecast(2), np.stack([manual.step(manual.get_state()["output"]) for _ in range(2)], 1))
    assert s.forecast(0).shape == (4, 0, 3)


def test_forecast_refusals():
    model = forecaster()
    s = model.stream(2)
    with pytest.raises(InvalidInput, match="step or run"):
        s.forecast(3)  # no history yet
    s.step(np.ones((2, 3)))
    s.reset()
    with pytest.raises(InvalidInput, match="step or run"):
        s.forecast(3)  # reset() forgets the last output
    s.run(np.ones((2, 4, 3)))
    for bad in (-1, 1.5, "3", None, True, np.float64(2.0)):
        before = s.get_state()
        with pytest.raises(InvalidInput):
            s.forecast(bad)
        assert_states_equal(s.get_state(), before)

    mismatched = chain(1, 3, [("lstm", 4)], head=(2, "linear"))  # 2 outputs, 3 input features
    m = mismatched.stream(2)
    m.run(np.ones((2, 2, 3)))
    before = m.get_state()
    with pytest.raises(InvalidInput, match="2 outputs and 3 input features"):
        m.forecast(1)
    assert_states_equal(m.get_state(), before)


# -- refused inputs leave the state untouched ---------------------------------------------------------------


def _refusals(batch, features, outputs, state):
    wrong_shape = {k: np.zeros((v.shape[0], v.shape[1] + 1), F32) for k, v in state.items()}
    first = next(iter(state))
    return {
        "step wrong features": lambda s: s.step(np.zeros((batch, features + 1), F32)),
        "step wrong batch": lambda s: s.step(np.zeros((batch + 1, features), F32)),
        "step 1-D": lambda s: s.step(np.zeros(features, F32)),
        "step 3-D": lambda s: s.step(np.zeros((batch, 1, features), F32)),
        "step scalar": lambda s: s.step(1.0),
        "step strings": lambda s: s.step(np.full((batch, features), "1.0")),
        "step list of strings": lambda s: s.step([["a"] * features] * batch),
        "step objects": lambda s: s.step(np.full((batch, features), None, dtype=object)),
        "step complex": lambda s: s.step(np.zeros((batch, features), np.complex64)),
        "step ragged": lambda s: s.step([[1.0] * features, [1.0]] + [[1.0] * features] * (batch - 2)),
        "step out wrong shape": lambda s: s.step(np.zeros((batch, features), F32), out=np.zeros((batch, outputs + 1), F32)),
        "step out float64": lambda s: s.step(np.zeros((batch, features), F32), out=np.zeros((batch, outputs))),
        "step out list": lambda s: s.step(np.zeros((batch, features), F32), out=[[0.0] * outputs] * batch),
        "run wrong features": lambda s: s.run(np.zeros((batch, 3, features + 1), F32)),
        "run wrong batch": lambda s: s.run(np.zeros((batch + 1, 3, features), F32)),
        "run 2-D": lambda s: s.run(np.zeros((batch, features), F32)),
        "run 4-D": lambda s: s.run(np.zeros((batch, 3, features, 1), F32)),
        "run strings": lambda s: s.run(np.full((batch, 3, features), "x")),
        "reset out of range": lambda s: s.reset(batch),
        "reset 5": lambda s: s.reset(5),
        "reset negative out of range": lambda s: s.reset(-batch - 1),
        "reset True": lambda s: s.reset(True),
        "reset False": lambda s: s.reset(False),
        "reset float": lambda s: s.reset(1.0),
        "reset string": lambda s: s.reset("1"),
        "reset numpy bool": lambda s: s.reset(np.bool_(True)),
        "set_state not a dict": lambda s: s.set_state([v for v in state.values()]),
        "set_state wrong shapes": lambda s: s.set_state(wrong_shape),
        "set_state one wrong shape": lambda s: s.set_state({**state, first: state[first][:, :-1]}),
        "set_state transposed": lambda s: s.set_state({**state, first: np.ascontiguousarray(state[first].T)}),
        "set_state missing key": lambda s: s.set_state({k: v for k, v in state.items() if k != first}),
        "set_state unknown key": lambda s: s.set_state({**state, "nope/h": state[first]}),
        "set_state NaN": lambda s: s.set_state({**state, first: np.full_like(state[first], np.nan)}),
        "set_state one NaN": lambda s: s.set_state({k: np.where(np.arange(v.shape[1]) == 0, np.nan, v) if k == "output" else v
                                                    for k, v in state.items()}),
        "set_state Inf": lambda s: s.set_state({**state, "output": np.full_like(state["output"], np.inf)}),
        "set_state ints": lambda s: s.set_state({**state, first: state[first].astype(np.int64)}),
        "set_state strings": lambda s: s.set_state({**state, first: np.full(state[first].shape, "0")}),
        "set_state None": lambda s: s.set_state({**state, first: None}),
    }


REFUSAL_NAMES = list(_refusals(4, 2, 2, {"a/h": np.zeros((4, 2)), "output": np.zeros((4, 2))}))


@pytest.mark.parametrize("name", REFUSAL_NAMES)
def test_refused_inputs_raise_and_leave_state_unchanged(name):
    model = chain(5, 2, [("lstm", 3), ("gru", 4)], mask_value=0.0, head=(2, "tanh"))
    batch = 4
    s = model.stream(batch)
    rng = np.random.default_rng(0)
    s.run(inputs(rng, batch, 5, 2))
    # a valid snapshot different from the current state, so a partial set_state would show
    donor = model.stream(batch)
    donor.run(inputs(rng, batch, 3, 2))
    call = _refusals(batch, 2, 2, donor.get_state())[name]
    before = s.get_state()
    with pytest.raises(InvalidInput):
        call(s)
    assert_states_equal(s.get_state(), before)
    # and the stream carries on as if the refused call had never been made
    probe = inputs(rng, batch, 3, 2)
    twin = model.stream(batch)
    twin.set_state(before)
    np.testing.assert_array_equal(s.run(probe), twin.run(probe))


def test_refused_set_state_on_fresh_stream_keeps_forecast_refused():
    model = forecaster()
    s = model.stream(2)
    good = s.get_state()
    with pytest.raises(InvalidInput):
        s.set_state({**good, "output": np.full((2, 3), np.nan)})
    with pytest.raises(InvalidInput, match="step or run"):
        s.forecast(1)


def test_invalid_batch_size():
    model = forecaster()
    for bad in (0, -1, 2.0, "4", None, True):
        with pytest.raises(InvalidInput):
            model.stream(bad)
    assert model.stream(np.int64(3)).batch_size == 3


def test_float64_int_and_list_inputs_are_converted():
    model = chain(9, 3, [("gru", 5)], head=(2, "softmax"))
    x = np.arange(2 * 4 * 3).reshape(2, 4, 3) % 5 - 2  # small integers
    expected = model.stream(2).run(x.astype(F32))
    for variant in (x, x.astype(np.int8), x.astype(np.float64), x.tolist()):
        np.testing.assert_array_equal(model.stream(2).run(variant), expected)
        s = model.stream(2)
        steps = [s.step(np.asarray(variant)[:, t] if not isinstance(variant, list) else [row[t] for row in variant])
                 for t in range(4)]
        assert_paths_agree(np.stack(steps, axis=1), expected)
        np.testing.assert_array_equal(model.predict(variant), expected)


def test_step_into_out_buffer():
    model = chain(2, 3, [("lstm", 6)], head=(4, "linear"))
    x = np.random.default_rng(2).normal(size=(5, 3, 3)).astype(F32)
    s, plain = model.stream(5), model.stream(5)
    buf = np.full((5, 4), np.nan, F32)
    for t in range(3):
        result = s.step(x[:, t], out=buf)
        assert result is buf
        np.testing.assert_array_equal(buf, plain.step(x[:, t]))
    # a strided view of a larger array is a fine ``out`` too (forecast writes into such views)
    block = np.zeros((5, 2, 4), F32)
    assert s.step(x[:, 0], out=block[:, 1]) is not None
    np.testing.assert_array_equal(block[:, 1], plain.step(x[:, 0]))
    np.testing.assert_array_equal(block[:, 0], 0.0)


def test_step_allocates_nothing():
    """With ``out=`` preallocated, 10,000 steps leave no trace in memory: no growth and no
    transient buffer (each intermediate buffer of this model would be >= 8 KB)."""
    model = chain(4, 6, [("lstm", 16), ("gru", 12)], mask_value=0.0, head=(16, "softmax"))
    batch = 128
    s = model.stream(batch)
    x = np.random.default_rng(4).normal(size=(batch, 6)).astype(F32)
    x[::7] = 0.0  # some masked rows
    assert_steps_allocate_nothing(s, x, np.empty((batch, 16), F32))


def assert_steps_allocate_nothing(stream, x, out):
    """10,000 ``stream.step(x, out=out)`` leave no trace in memory: no growth, and no transient
    buffer above 4 KB."""
    for _ in range(200):
        stream.step(x, out=out)
    tracemalloc.start()
    try:
        for _ in range(100):  # warm-up under tracing as well
            stream.step(x, out=out)
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(10_000):
            stream.step(x, out=out)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - baseline < 1024, f"memory grew by {current - baseline} bytes over 10,000 steps"
    assert peak - baseline < 4096, f"a step allocated up to {peak - baseline} bytes"


def test_streams_in_threads_match_sequential_runs():
    """Kernels release the GIL and share only read-only weights: streams of one model stepped in
    parallel threads give what each gives alone."""
    model = chain(13, 4, [("lstm", 16), ("gru", 8)], mask_value=0.0, head=(3, "softmax"))
    rng = np.random.default_rng(13)
    xs = [inputs(rng, 32, 60, 4, mask_value=0.0) for _ in range(4)]
    expected = [model.stream(32).run(x) for x in xs]
    results = [None] * 4

    def work(k):
        s = model.stream(32)
        results[k] = np.stack([s.step(xs[k][:, t]) for t in range(60)], axis=1)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert_paths_agree(got, want)


def test_predict_refusals():
    model = chain(14, 3, [("lstm", 4)], head=(2, "linear"))
    for bad in (np.zeros((2, 5, 4)), np.zeros((2, 3)), np.zeros((2, 5, 3, 1)), np.full((2, 5, 3), "a"), [[1.0], [1.0, 2.0]]):
        with pytest.raises(InvalidInput):
            model.predict(bad)
    with pytest.raises(InvalidInput):
        model.predict(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)))
    two = edgernn.Model(next(spec for name, spec in _not_streamable_models() if name is None))
    with pytest.raises(InvalidInput, match="batch size"):
        two.predict(np.zeros((2, 4, 3)), np.zeros((3, 4, 2)))
    y = two.predict([np.zeros((2, 4, 3)), np.zeros((2, 5, 2))])  # one list of inputs works too
    assert y.shape == (2, 5, 4)


# -- masking inside streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("zero_output", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_v1", "simple"])
def test_masked_step_keeps_state(cell, zero_output):
    mask_value = -1.0
    model = chain(8, 3, [(cell, 6)], mask_value=mask_value, head=(2, "linear"), zero_output_for_mask=zero_output)
    rng = np.random.default_rng(8)
    s = model.stream(4)
    s.run(inputs(rng, 4, 5, 3))
    before = s.get_state()
    x_t = inputs(rng, 4, 1, 3)[:, 0]
    x_t[[1, 3]] = mask_value
    x_t[0, 0] = mask_value  # only one feature equal to the mask value: not masked
    y = s.step(x_t)
    after = s.get_state()
    for key in before:
        if key != "output":
            np.testing.assert_array_equal(after[key][[1, 3]], before[key][[1, 3]], err_msg=key)
            assert not np.array_equal(after[key][[0, 2]], before[key][[0, 2]]), key
    head = model.spec.nodes[-1].op
    if zero_output:
        np.testing.assert_array_equal(y[[1, 3]], np.broadcast_to(head.bias, (2, 2)))
    else:
        assert_paths_agree(y[[1, 3]], before["output"][[1, 3]])
    # a block of masked steps from the start leaves the zero state as it is
    s2 = model.stream(4)
    masked_block = np.full((4, 3, 3), mask_value, F32)
    s2.run(masked_block)
    assert all(np.all(v == 0.0) for k, v in s2.get_state().items() if k != "output")


# -- what cannot be streamed --------------------------------------------------------------------------------------


def _not_streamable_models():
    rng = np.random.default_rng(6)
    x = ir.Input("x", 3)
    fwd = recurrent(rng, "fwd", "lstm", 4, 3, return_sequences=True)
    bwd = recurrent(rng, "bwd", "lstm", 4, 3, return_sequences=True, go_backwards=True)
    yield "bidi", ir.ModelSpec((x,), (ir.Node(ir.Bidirectional("bidi", fwd, bwd), ("x",), ("y",)),), ("y",))

    rev = recurrent(rng, "rev", "gru", 4, 3, go_backwards=True)
    yield "rev", ir.ModelSpec((x,), (ir.Node(rev, ("x",), ("y",)),), ("y",))

    enc = recurrent(rng, "enc", "lstm", 4, 3)
    dec = recurrent(rng, "dec", "lstm", 5, 4, return_sequences=True)
    yield "repeat", ir.ModelSpec((x,), (
        ir.Node(enc, ("x",), ("e",)),
        ir.Node(ir.RepeatVector("repeat", 3), ("e",), ("r",)),
        ir.Node(dec, ("r",), ("y",)),
    ), ("y",))

    enc_seq = recurrent(rng, "enc", "lstm", 4, 3, return_sequences=True)
    dec_init = recurrent(rng, "dec", "lstm", 4, 4, return_sequences=True)
    yield "dec", ir.ModelSpec((x,), (
        ir.Node(enc_seq, ("x",), ("e", "h", "c")),
        ir.Node(dec_init, ("e",), ("y",), initial_state=("h", "c")),
    ), ("y",))

    # the usual encoder-decoder: two inputs, the decoder starting from the encoder's states
    dec2 = recurrent(rng, "dec", "lstm", 4, 2, return_sequences=True)
    yield None, ir.ModelSpec((x, ir.Input("d", 2)), (
        ir.Node(enc, ("x",), ("e", "h", "c")),
        ir.Node(dec2, ("d",), ("y",), initial_state=("h", "c")),
    ), ("y",))


@pytest.mark.parametrize("name,spec", list(_not_streamable_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_not_streamable_models_are_refused_with_the_layer_name(name, spec):
    model = edgernn.Model(spec)
    with pytest.raises(NotStreamable) as caught:
        model.stream(2)
    if name is not None:
        assert repr(name) in str(caught.value)
    assert isinstance(caught.value, edgernn.EdgernnError)
    # predict still runs them, and so does warmup
    model.warmup()
    arrays = [np.ones((2, 4, i.features), F32) for i in spec.inputs]
    y = model.predict(*arrays)
    assert y.shape[0] == 2 and np.all(np.isfinite(y))
