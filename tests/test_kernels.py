"""The Numba float32 kernels held against the float64 NumPy reference (the oracle).

Every recurrent cell (LSTM, GRU with both candidate formulas, SimpleRNN) over hypothesis-drawn
shapes, activations, masks (including leading masked steps), ``go_backwards``,
``return_sequences``, ``zero_output_for_mask`` and initial states; Dense with every activation;
and every activation alone over a range of inputs up to extreme values.

Tolerance: float32 against float64, ``|kernel - reference| <= 1e-5 + 1e-4 * |reference|``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgernn import ir, kernels, reference

ATOL, RTOL = 1e-5, 1e-4
ELEMENTWISE = ir.ELEMENTWISE_ACTIVATIONS
ALL_ACTIVATIONS = tuple(ir.ACTIVATION_IDS)
# Activations without an upper bound: with them a recurrence can grow step after step, so the
# weights are drawn smaller to keep values in a range where float32 and float64 are comparable.
UNBOUNDED = {"linear", "relu", "leaky_relu", "elu", "selu", "celu", "softplus", "exponential", "silu",
             "hard_silu", "gelu", "mish", "tanh_shrink"}

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def close(actual, expected, what=""):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=RTOL, atol=ATOL, err_msg=what)


# -- recurrent layers --------------------------------------------------------------------------------


@st.composite
def recurrent_cases(draw):
    """A random recurrent layer and everything it runs on: (layer, x, mask, initial_state)."""
    cell = draw(st.sampled_from(("lstm", "gru", "simple")))
    units = draw(st.integers(1, 17))
    features = draw(st.integers(1, 9))
    batch = draw(st.integers(1, 6))
    steps = draw(st.integers(0, 12))
    activation = draw(st.sampled_from(ELEMENTWISE))
    recurrent_activation = draw(st.sampled_from(ELEMENTWISE))
    reset_after = draw(st.booleans()) if cell == "gru" else True
    use_bias = draw(st.booleans())
    use_recurrent_bias = cell == "gru" and reset_after and use_bias and draw(st.booleans())
    mask_kind = draw(st.sampled_from(("none", "random", "leading", "all_masked_row")))
    with_initial_state = draw(st.booleans())
    flags = dict(
        return_sequences=draw(st.booleans()),
        go_backwards=draw(st.booleans()),
        zero_output_for_mask=draw(st.booleans()),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    gates = ir.CELL_GATES[cell]
    width = gates * units
    grows = activation in UNBOUNDED or (cell != "simple" and recurrent_activation in UNBOUNDED)
    scale = 0.25 if grows else 0.8
    layer = ir.Recurrent(
        name="rnn",
        cell=cell,
        units=units,
        input_size=features,
        kernel=ir.as_weight(rng.normal(0.0, scale / np.sqrt(features), (features, width))),
        recurrent_kernel=ir.as_weight(rng.normal(0.0, scale / np.sqrt(units), (units, width))),
        bias=ir.as_weight(rng.normal(0.0, 0.3 * scale, width)) if use_bias else None,
        recurrent_bias=ir.as_weight(rng.normal(0.0, 0.3 * scale, width)) if use_recurrent_bias else None,
        activation=activation,
        recurrent_activation=recurrent_activation,
        reset_after=reset_after,
        **flags,
    )
    x = rng.uniform(-1.0, 1.0, (batch, steps, features)).astype(np.float32)

    mask = None
    if mask_kind != "none":
        mask = rng.random((batch, steps)) < 0.7
        if mask_kind == "leading":
            # each row starts with 0..steps masked steps (a padded sequence, padding in front)
            for row, lead in enumerate(rng.integers(0, steps + 1, batch)):
                mask[row, :lead] = False
        elif mask_kind == "all_masked_row":
            mask[rng.integers(0, batch)] = False
    initial = None
    if with_initial_state:
        initial = [rng.normal(0.0, 0.5, (batch, units)).astype(np.float32) for _ in range(layer.state_count)]
    return layer, x, mask, initial


def _describe(layer):
    return (f"{layer.cell} units={layer.units} in={layer.input_size} act={layer.activation} "
            f"rec_act={layer.recurrent_activation} reset_after={layer.reset_after} bias={layer.bias is not None} "
            f"rs={layer.return_sequences} back={layer.go_backwards} zero_out={layer.zero_output_for_mask}")


@SETTINGS
@given(recurrent_cases())
def test_recurrent_sequence_matches_reference(case):
    layer, x, mask, initial = case
    with np.errstate(over="ignore", invalid="ignore"):
        y_ref, states_ref = reference.recurrent_sequence(layer, x, mask, initial)
    # Keep to values float32 represents with room to spare (exponential cells can still run away).
    assume(np.all(np.abs(y_ref) < 1e4) and all(np.all(np.abs(s) < 1e4) for s in states_ref))
    y, states = kernels.recurrent_sequence(layer, x, mask, initial)

    what = _describe(layer)
    assert y.dtype == np.float32
    assert y.shape == y_ref.shape
    close(y, y_ref, what)
    assert len(states) == len(states_ref) == layer.state_count
    for state, state_ref in zip(states, states_ref):
        assert state.shape == (x.shape[0], layer.units)
        close(state, state_ref, what)


@pytest.mark.parametrize("cell,reset_after", [("lstm", True), ("gru", True), ("gru", False), ("simple", True)])
def test_masked_steps_keep_state_and_repeat_or_zero_output(cell, reset_after):
    """Hand-checkable case: a row masked throughout keeps its initial state exactly, and its outputs
    are the zeros it started from (or zeros by zero_output_for_mask); a row masked at its end
    repeats its last real output."""
    rng = np.random.default_rng(1)
    units, features, steps = 5, 3, 6
    width = ir.CELL_GATES[cell] * units
    for zero_output in (False, True):
        layer = ir.Recurrent("r", cell, units, features, ir.as_weight(rng.normal(0, 0.5, (features, width))),
                             ir.as_weight(rng.normal(0, 0.5, (units, width))), ir.as_weight(rng.normal(0, 0.2, width)),
                             reset_after=reset_after, return_sequences=True, zero_output_for_mask=zero_output)
        x = rng.normal(size=(2, steps, features)).astype(np.float32)
        mask = np.ones((2, steps), bool)
        mask[0] = False
        mask[1, 4:] = False
        initial = [rng.normal(size=(2, units)).astype(np.float32) for _ in range(layer.state_count)]
        y, states = kernels.recurrent_sequence(layer, x, mask, initial)
        for state, start in zip(states, initial):
            np.testing.assert_array_equal(state[0], start[0])
        np.testing.assert_array_equal(y[0], 0.0)
        if zero_output:
            np.testing.assert_array_equal(y[1, 4:], 0.0)
        else:
            np.testing.assert_array_equal(y[1, 4], y[1, 3])
            np.testing.assert_array_equal(y[1, 5], y[1, 3])
        y_ref, _ = reference.recurrent_sequence(layer, x, mask, initial)
        close(y, y_ref)


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_reference_sequence_semantics(cell):
    """The oracle itself: go_backwards reads the reversed sequence (no flip of the result), an
    all-True mask changes nothing, and masked trailing steps leave the final state of the prefix."""
    rng = np.random.default_rng(2)
    units, features, steps = 4, 3, 7
    width = ir.CELL_GATES[cell] * units

    def layer(**flags):
        local = np.random.default_rng(3)
        return ir.Recurrent("r", cell, units, features, ir.as_weight(local.normal(0, 0.5, (features, width))),
                            ir.as_weight(local.normal(0, 0.5, (units, width))), ir.as_weight(local.normal(0, 0.2, width)),
                            return_sequences=True, **flags)

    x = rng.normal(size=(3, steps, features))
    forward, backward = layer(), layer(go_backwards=True)
    y_b, s_b = reference.recurrent_sequence(backward, x)
    y_f, s_f = reference.recurrent_sequence(forward, x[:, ::-1])
    np.testing.assert_array_equal(y_b, y_f)
    for a, b in zip(s_b, s_f):
        np.testing.assert_array_equal(a, b)

    y_masked, _ = reference.recurrent_sequence(forward, x, np.ones((3, steps), bool))
    y_plain, _ = reference.recurrent_sequence(forward, x)
    np.testing.assert_array_equal(y_masked, y_plain)

    mask = np.ones((3, steps), bool)
    mask[:, 5:] = False
    y_m, s_m = reference.recurrent_sequence(forward, x, mask)
    y_p, s_p = reference.recurrent_sequence(forward, x[:, :5])
    for a, b in zip(s_m, s_p):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(y_m[:, 5], y_p[:, 4])


def test_zero_length_sequence():
    rng = np.random.default_rng(4)
    for cell in ("lstm", "gru", "simple"):
        width = ir.CELL_GATES[cell] * 3
        for rs in (False, True):
            layer = ir.Recurrent("r", cell, 3, 2, ir.as_weight(rng.normal(size=(2, width))),
                                 ir.as_weight(rng.normal(size=(3, width))), return_sequences=rs)
            x = np.zeros((2, 0, 2), np.float32)
            initial = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(layer.state_count)]
            y, states = kernels.recurrent_sequence(layer, x, None, initial)
            y_ref, states_ref = reference.recurrent_sequence(layer, x, None, initial)
            assert y.shape == y_ref.shape == ((2, 0, 3) if rs else (2, 3))
            np.testing.assert_array_equal(y, y_ref)
            for s, s_ref, s0 in zip(states, states_ref, initial):
                np.testing.assert_array_equal(s, s0)
                np.testing.assert_array_equal(s_ref, s0)


# -- dense -------------------------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(
    activation=st.sampled_from(ALL_ACTIVATIONS),
    leading=st.lists(st.integers(0, 5), min_size=0, max_size=2),
    input_size=st.integers(1, 17),
    output_size=st.integers(1, 17),
    use_bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_dense_matches_reference(activation, leading, input_size, output_size, use_bias, seed):
    rng = np.random.default_rng(seed)
    op = ir.Dense("d", ir.as_weight(rng.normal(0, 1.5 / np.sqrt(input_size), (input_size, output_size))),
                  ir.as_weight(rng.normal(0, 0.5, output_size)) if use_bias else None, activation)
    x = rng.uniform(-2, 2, (*leading, input_size)).astype(np.float32)
    y = kernels.dense(op, x)
    y_ref = reference.dense(op, x)
    assert y.dtype == np.float32 and y.shape == y_ref.shape == (*leading, output_size)
    close(y, y_ref, activation)


@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_dense_every_activation_fixed(activation):
    """Every activation through Dense, explicitly (not left to hypothesis's draw)."""
    rng = np.random.default_rng(ir.ACTIVATION_IDS[activation])
    op = ir.Dense("d", ir.as_weight(rng.normal(0, 0.7, (6, 5))), ir.as_weight(rng.normal(0, 0.5, 5)), activation)
    x = rng.uniform(-3, 3, (4, 7, 6)).astype(np.float32)
    close(kernels.dense(op, x), reference.dense(op, x), activation)
    if activation == "softmax":
        np.testing.assert_allclose(kernels.dense(op, x).sum(-1), 1.0, rtol=1e-6)


# -- activations -------------------------------------------------------------------------------------------

_F32_MAX = float(np.finfo(np.float32).max)
EXTREMES = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 1e-3, -1e-3, 0.5, -0.5, 2.9999, 3.0, -3.0, -3.0001,
                     10.0, -10.0, 20.0, -20.0, 50.0, -50.0, 80.0, -80.0, 88.0, -88.0, 100.0, -100.0, 1e3, -1e3,
                     1e6, -1e6, 1e30, -1e30])


@pytest.mark.parametrize("activation", ELEMENTWISE)
def test_activation_matches_reference(activation):
    values = np.concatenate([np.linspace(-8.0, 8.0, 1601), EXTREMES]).astype(np.float32)
    x = values.reshape(1, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = reference.activate(activation, x.astype(np.float64))
    actual = kernels.activate(activation, x)
    assert actual.dtype == np.float32 and actual.shape == x.shape
    representable = np.isfinite(expected) & (np.abs(expected) <= _F32_MAX)
    close(actual[representable], expected[representable], activation)
    # where the exact result overflows float32, the kernel gives an infinity of the right sign
    overflow = ~representable & np.isfinite(x.astype(np.float64))
    assert np.all(np.isinf(actual[overflow]) & (np.sign(actual[overflow]) == np.sign(expected[overflow]))), activation


@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_activation_nan_and_infinities_like_reference(activation):
    """No nnan/ninf fastmath flags: NaN propagates and infinities map as in float64 NumPy."""
    x = np.array([[np.nan, 1.0, -2.0], [np.inf, 0.5, -1.0], [-np.inf, 0.0, 3.0], [np.nan, np.inf, -np.inf]], np.float32)
    with np.errstate(all="ignore"):
        expected = reference.activate(activation, x.astype(np.float64))
    actual = kernels.activate(activation, x)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=activation)
    finite_or_inf = ~np.isnan(expected)
    close(actual[finite_or_inf], expected[finite_or_inf], activation)


@pytest.mark.parametrize("activation", ELEMENTWISE)
def test_activation_shapes_and_rows(activation):
    """Same result for any 2-D/3-D layout: element-wise means element-wise."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-6, 6, (3, 4, 5)).astype(np.float32)
    y = kernels.activate(activation, x)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y.reshape(-1), kernels.activate(activation, x.reshape(1, -1)).reshape(-1))
    close(y, reference.activate(activation, x), activation)


@pytest.mark.parametrize("activation", ir.VECTOR_ACTIVATIONS)
def test_vector_activation_matches_reference(activation):
    rng = np.random.default_rng(6)
    rows = [
        rng.uniform(-8, 8, 7),
        np.array([50.0, -50.0, 0.0, 1.0, 2.0, 3.0, -1.0]),
        np.array([80.0, 80.0, 80.0, -80.0, 0.0, 1e3, -1e3]),
        np.full(7, -1e3),
        np.full(7, 1e30),
        np.zeros(7),
    ]
    x = np.array(rows, np.float32)
    actual = kernels.activate(activation, x)
    expected = reference.activate(activation, x.astype(np.float64))
    close(actual, expected, activation)
    if activation == "softmax":
        np.testing.assert_allclose(actual.sum(-1), 1.0, rtol=1e-6)
    # logits far from zero: (x - max) is exact there, so log_softmax keeps its float32 precision
    big = np.array([[1e4, 1e4 + 1, 1e4 - 3], [-2e4, -2e4 + 0.5, -2e4 - 8]], np.float32)
    close(kernels.activate(activation, big), reference.activate(activation, big.astype(np.float64)), activation)
    # one feature: softmax is 1, log_softmax is 0
    single = kernels.activate(activation, np.array([[3.0], [-1e3]], np.float32))
    np.testing.assert_array_equal(single, 1.0 if activation == "softmax" else 0.0)


def test_reference_activation_anchor_values():
    """A few known values of the oracle's definitions (Keras 3's, and Keras 2's hard_sigmoid)."""
    a = reference.activate
    assert a("sigmoid", 0.0) == 0.5
    assert a("hard_sigmoid", 1.5) == pytest.approx(0.75)           # relu6(x + 3) / 6
    assert a("hard_sigmoid_keras2", 1.5) == pytest.approx(0.8)     # 0.2 x + 0.5
    assert a("hard_sigmoid_keras2", 3.0) == 1.0 and a("hard_sigmoid", 3.0) == 1.0
    assert a("leaky_relu", -1.0) == pytest.approx(-0.2)
    assert a("softplus", 0.0) == pytest.approx(np.log(2.0))
    assert a("selu", -1.0) == pytest.approx(-1.0507009873554805 * 1.6732632423543772 * (1 - np.exp(-1.0)))
    assert a("gelu", 1.0) == pytest.approx(0.8413447460685429)
    assert a("mish", 1.0) == pytest.approx(np.tanh(np.log1p(np.e)))
    assert a("log_sigmoid", 0.0) == pytest.approx(-np.log(2.0))
    assert a("hard_silu", 1.0) == pytest.approx(2.0 / 3.0)
    assert a("relu6", 7.0) == 6.0 and a("hard_tanh", -4.0) == -1.0
    assert a("tanh_shrink", 1.0) == pytest.approx(1.0 - np.tanh(1.0))
    np.testing.assert_allclose(a("softmax", np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]])


def test_fast_tanh_and_sigmoid_error_bounds():
    """The rational tanh the kernels use stays within 4e-7 of tanh, and sigmoid within 2e-7,
    over a dense float32 grid and the extremes (the bound the docstring of kernels/activations.py
    promises; Keras's own float32 results are matched to 1e-5)."""
    grid = np.concatenate([np.linspace(-12, 12, 1_000_001, dtype=np.float32),
                           np.array([-1e30, -88.0, -9.0, -7.9, 7.9, 9.0, 88.0, 1e30, 0.0, 1e-30, -1e-30], np.float32)])
    x = grid.reshape(1, -1)
    tanh = kernels.activate("tanh", x)[0].astype(np.float64)
    sigmoid = kernels.activate("sigmoid", x)[0].astype(np.float64)
    exact = np.tanh(grid.astype(np.float64))
    assert np.abs(tanh - exact).max() < 4e-7
    assert np.abs(sigmoid - (1 + exact_tanh_half(grid)) / 2).max() < 2e-7
    assert np.all(np.abs(tanh) <= 1.0) and np.all((sigmoid >= 0) & (sigmoid <= 1))


def exact_tanh_half(grid):
    return np.tanh(grid.astype(np.float64) / 2)


PACKED_AFFINE_SHAPES = [(0, 5, 16), (3, 8, 17), (8, 64, 256), (1, 1, 1), (16, 33, 40), (4, 7, 48), (128, 128, 300)]


def check_packed_affine(streams, features, state, columns):
    """``packed_affine`` against NumPy in float64, to float32 rounding; columns past ``columns``
    left as they were."""
    from edgernn.kernels._gemm import PANEL, ROWS, pack_columns, packed_affine

    rng = np.random.default_rng(streams * 1000 + columns)
    x, h = (rng.standard_normal((streams, n)).astype(np.float32) for n in (features, state))
    w, u = (rng.standard_normal((n, columns)).astype(np.float32) for n in (features, state))
    bias = rng.standard_normal(columns).astype(np.float32)
    c = np.full((streams, columns + 3), 7.0, np.float32)
    packed_affine(x, pack_columns(w), h, pack_columns(u), pack_columns(bias), columns, c,
                  np.zeros((ROWS, PANEL), np.float32))
    exact = bias + x.astype(np.float64) @ w + h.astype(np.float64) @ u
    scale = np.abs(bias) + np.abs(x) @ np.abs(w) + np.abs(h) @ np.abs(u)
    assert np.all(np.abs(c[:, :columns] - exact) <= 1e-6 * scale)
    assert np.all(c[:, columns:] == 7.0)


@pytest.mark.parametrize("streams", [1, 3, 4, 5, 8, 9, 13, 15, 16])
@pytest.mark.parametrize("features, state, columns", PACKED_AFFINE_SHAPES)
def test_packed_affine_matches_numpy(streams, features, state, columns):
    """The many-streams product ``b + x W + h U`` on packed weights equals NumPy's, for row counts
    around the tiles (4 rows, or 8 and 4 with AVX-512), single, paired and ragged last panels, an
    empty input and weights in more than one panel group (the last case: 307 KB, groups of
    128 KB)."""
    from edgernn.kernels._gemm import GROUP_BYTES

    if columns == 300:  # weights beyond one panel group, or the grouping goes untested
        assert (features + state) * 4 * columns > GROUP_BYTES
    check_packed_affine(streams, features, state, columns)


# (streams, taps before the last, channels, ring rows, columns)
GATHERED_AFFINE_SHAPES = [(13, 4, 6, 4, 32), (9, 2, 5, 6, 40), (5, 0, 3, 0, 17), (16, 1, 32, 3, 16)]


def check_gathered_affine(streams, taps, channels, rows, columns):
    """``packed_affine`` with a gathered first operand (a Conv1D's taps read from its ring at
    each stream's own offsets) and relu, against NumPy in float64: ``max(b + sum_j ring[s,
    taps[s, j]:][:C] @ W_j + x[s] @ W_x, 0)``, NaN kept (a NaN input gives a NaN row, as relu
    over predict's)."""
    from edgernn.kernels._gemm import PANEL, ROWS, pack_columns, packed_affine

    rng = np.random.default_rng(streams * 100 + taps)
    ring = rng.standard_normal((streams, rows * channels)).astype(np.float32)
    x = rng.standard_normal((streams, channels)).astype(np.float32)
    x[streams // 2, 0] = np.nan
    starts = (rng.integers(0, max(rows, 1), size=(streams, taps)) * channels).astype(np.intp)
    w = rng.standard_normal((taps * channels, columns)).astype(np.float32)
    w_x = rng.standard_normal((channels, columns)).astype(np.float32)
    bias = rng.standard_normal(columns).astype(np.float32)
    windows = np.zeros((streams, taps * channels))
    for s in range(streams):
        for j in range(taps):
            windows[s, j * channels:(j + 1) * channels] = ring[s, starts[s, j]:starts[s, j] + channels]
    c = np.full((streams, columns + 3), 7.0, np.float32)
    for relu in (False, True):
        packed_affine(ring, pack_columns(w), x, pack_columns(w_x), pack_columns(bias), columns, c,
                      np.zeros((ROWS, PANEL), np.float32), starts, relu)
        exact = bias + windows @ w + x.astype(np.float64) @ w_x
        scale = np.abs(bias) + np.abs(windows) @ np.abs(w) + np.abs(x) @ np.abs(w_x)
        if relu:
            exact = np.maximum(exact, 0.0)
        nan = np.isnan(exact)
        assert nan[streams // 2].all() and nan.sum() == columns
        np.testing.assert_array_equal(np.isnan(c[:, :columns]), nan)
        assert np.all(np.abs(c[:, :columns] - exact)[~nan] <= 1e-6 * scale[~nan])
        assert (c[:, :columns] < 0).any() != relu
        assert np.all(c[:, columns:] == 7.0)


@pytest.mark.parametrize("shape", GATHERED_AFFINE_SHAPES)
def test_packed_affine_gathered_taps_and_relu(shape):
    """A Conv1D's many-streams product read straight from its ring (edgernn.kernels.window.conv_batch):
    each stream's taps at its own offsets, row counts around the tiles, a ragged last panel, no
    tap before the last (kernel_size 1), and the relu applied as the tile stores."""
    check_gathered_affine(*shape)


GENERIC_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from edgernn.kernels import _gemm
import test_kernels
assert (_gemm.WIDE, _gemm.LANES, _gemm.ROWS, _gemm.PAIR) == (False, 8, 4, 1), (_gemm.WIDE, _gemm.LANES)
for streams in (1, 5, 9):
    for shape in test_kernels.PACKED_AFFINE_SHAPES:
        test_kernels.check_packed_affine(streams, *shape)
for shape in test_kernels.GATHERED_AFFINE_SHAPES:
    test_kernels.check_gathered_affine(*shape)
print("portable tile ok")
"""


def test_packed_affine_portable_tile(tmp_path):
    """Compiled for a generic CPU (``NUMBA_CPU_NAME=generic``, as for a cache shared across
    machines; aarch64 takes the same 8-lane tile), the product takes the 4-row, one-panel tile
    of 8-lane vectors and is still right. The AVX-512 choice follows the features Numba targets."""
    import subprocess
    import sys

    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    from edgernn.kernels import _gemm

    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    assert _gemm.WIDE == ("+avx512f" in str(features).split(","))
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_FEATURES", None)
    done = subprocess.run([sys.executable, "-c", GENERIC_CHILD, str(Path(__file__).resolve().parent)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "portable tile ok" in done.stdout


def test_packed_affine_refuses_strided_arrays():
    """The tile assumes unit column strides: a strided operand does not compile (rather than
    reading the wrong entries)."""
    from numba.core.errors import TypingError

    from edgernn.kernels._gemm import PANEL, ROWS, pack_columns, packed_affine

    h = np.zeros((4, 16), np.float32)[:, ::2]
    panels = pack_columns(np.ones((8, 16), np.float32))
    with pytest.raises(TypingError):
        packed_affine(h[:, :0], panels, h, panels, pack_columns(np.zeros(16, np.float32)), 16,
                      np.zeros((4, 16), np.float32), np.zeros((ROWS, PANEL), np.float32))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("streams", [1, 3])
@pytest.mark.parametrize("depth, columns", [(1, 1), (2, 32), (5, 33), (64, 256), (127, 500)])
def test_matvec_matches_numpy(depth, columns, streams, reverse):
    """The block recurrence's product ``init + bias + v U`` on panels (edgernn.kernels._matvec)
    equals NumPy's in float64 to float32 rounding: odd and even K, a ragged last panel, either
    order of panels, one stream or several, computed in place over ``init``; the padding columns
    are init + bias; a stream not kept is left as it was; and a stream's result does not depend on
    the streams beside it (bit for bit)."""
    from edgernn.kernels._matvec import matvec, pack_recurrent, padded_width

    rng = np.random.default_rng(depth * 1000 + columns)
    width = padded_width(columns)
    assert width % 32 == 0 and width - 32 < columns <= width
    v = rng.standard_normal((streams, depth)).astype(np.float32)
    u = rng.standard_normal((depth, columns)).astype(np.float32)
    init = rng.standard_normal((streams, width)).astype(np.float32)
    bias = rng.standard_normal(width).astype(np.float32)
    keep = np.arange(streams) != 1  # the second stream, where there is one, is skipped
    packed = pack_recurrent(u)
    out = init.copy()
    matvec(out, bias, v, packed, out, keep, reverse)
    exact = init[:, :columns].astype(np.float64) + bias[:columns] + v.astype(np.float64) @ u
    scale = np.abs(init[:, :columns]) + np.abs(bias[:columns]) + np.abs(v) @ np.abs(u)
    assert np.all(np.abs(out[keep, :columns] - exact[keep]) <= 1e-6 * scale[keep])
    np.testing.assert_array_equal(out[keep, columns:], init[keep, columns:] + bias[columns:])
    np.testing.assert_array_equal(out[~keep], init[~keep])
    alone = init[-1:].copy()
    matvec(alone, bias, v[-1:], packed, alone, keep[-1:], not reverse)
    np.testing.assert_array_equal(alone[0], out[-1])


def test_matvec_refuses_strided_arrays():
    """Like the packed product, the panel assumes unit strides: a strided state does not compile."""
    from numba.core.errors import TypingError

    from edgernn.kernels._matvec import matvec, pack_recurrent

    rows = np.zeros((1, 32), np.float32)
    with pytest.raises(TypingError):
        matvec(rows, rows[0], np.zeros((1, 8), np.float32)[:, ::2], pack_recurrent(np.ones((4, 32), np.float32)),
               rows, np.ones(1, np.bool_), False)


@pytest.mark.parametrize("shape", [1, 7, (3, 5), (400, 128), (2, 3, 16)])
def test_aligned_zeros_start_on_a_cache_line(shape):
    """The many-streams buffers and packed weights start on a 64-byte line, whatever NumPy's
    allocator returns (so their vector loads never straddle two lines for that reason)."""
    from edgernn.kernels.program import aligned_zeros

    for _ in range(8):  # several allocations: NumPy's own alignment varies between them
        array = aligned_zeros(shape)
        assert array.ctypes.data % 64 == 0 and array.flags.c_contiguous and array.dtype == np.float32
        assert array.shape == np.zeros(shape).shape and not array.any()
