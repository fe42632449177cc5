"""LSTM peepholes and projection, and the cell clip of every cell (ONNX and PyTorch features):
kernels against the float64 reference, streams, and the .ernn round trip."""

from __future__ import annotations

import numpy as np
import pytest

import edgernn
from edgernn import ir, kernels, reference

TOL = dict(atol=1e-5, rtol=1e-4)


def _layer(cell, peephole, proj, clip, seed, return_sequences=True, recurrent_activation="sigmoid"):
    rng = np.random.default_rng(seed)
    w = lambda *shape: ir.as_weight(rng.normal(scale=0.5, size=shape))  # noqa: E731
    units, features = 6, 4
    gates = ir.CELL_GATES[cell]
    out = proj or units
    return ir.Recurrent(
        "rnn", cell, units, features, w(features, gates * units), w(out, gates * units), w(gates * units),
        recurrent_bias=w(gates * units) if cell == "gru" else None,
        peephole=w(3, units) if peephole else None, projection=w(units, proj) if proj else None,
        cell_clip=clip, return_sequences=return_sequences,
        **({} if cell == "simple" else {"recurrent_activation": recurrent_activation}))


CASES = [("lstm", True, None, None), ("lstm", False, 3, None), ("lstm", True, 2, 0.7), ("lstm", False, None, 0.5),
         ("gru", False, None, 0.4), ("simple", False, None, 0.3)]


@pytest.mark.parametrize("cell, peephole, proj, clip", CASES)
def test_kernel_matches_reference(cell, peephole, proj, clip):
    layer = _layer(cell, peephole, proj, clip, seed=1)
    rng = np.random.default_rng(2)
    x = rng.normal(scale=2.0, size=(3, 9, 4)).astype(np.float32)
    mask = rng.random((3, 9)) > 0.25
    initial = [rng.normal(size=(3, size)).astype(np.float32) for size in layer.state_sizes]
    want_y, want_states = reference.recurrent_sequence(layer, x, mask, initial)
    got_y, got_states = kernels.recurrent_sequence(layer, x, mask, initial)
    np.testing.assert_allclose(got_y, want_y, **TOL)
    for got, want in zip(got_states, want_states):
        np.testing.assert_allclose(got, want, **TOL)
    if clip is not None:  # the clip changes the result, so the test would see it missing
        unclipped = reference.recurrent_sequence(_layer(cell, peephole, proj, None, seed=1), x, mask, initial)[0]
        assert np.abs(unclipped - want_y).max() > 1e-3


@pytest.mark.parametrize("cell, peephole, proj, clip", CASES)
def test_stream_and_round_trip(cell, peephole, proj, clip, tmp_path):
    layer = _layer(cell, peephole, proj, clip, seed=3)
    spec = ir.ModelSpec((ir.Input("x", 4),), (ir.Node(layer, ("x",), ("y",)),), ("y",))
    model = edgernn.Model(spec)
    x = np.random.default_rng(4).normal(size=(2, 7, 4)).astype(np.float32)
    stream = model.stream(2)
    steps = np.stack([stream.step(x[:, t]) for t in range(7)], axis=1)
    np.testing.assert_allclose(steps, model.predict(x), rtol=1e-5, atol=1e-6)  # fused step vs block path
    assert {k: v.shape for k, v in stream.get_state().items() if k != "output"} == {
        f"rnn/{name}": (2, size) for name, size in zip(("h", "c"), layer.state_sizes)}
    model.save(tmp_path / "m.ernn")
    np.testing.assert_array_equal(edgernn.load(tmp_path / "m.ernn").predict(x), model.predict(x))


@pytest.mark.parametrize("cell, peephole, proj, clip, recurrent_activation",
                         [case + ("sigmoid",) for case in CASES]
                         + [("lstm", False, None, None, "sigmoid"), ("gru", False, None, None, "sigmoid"),
                            ("lstm", False, None, None, "hard_sigmoid"), ("gru", False, None, None, "hard_sigmoid")])
def test_many_streams_step_matches_block_path(cell, peephole, proj, clip, recurrent_activation, monkeypatch):
    """The many-streams step (products across streams, then the gate pass) against the block
    path, for the standard cells (whose gates it takes as tanh of halved pre-activations) and the
    others (peepholes, projection, clip, hard_sigmoid: the general gate pass)."""
    from edgernn import runtime

    layer = _layer(cell, peephole, proj, clip, seed=5, recurrent_activation=recurrent_activation)
    spec = ir.ModelSpec((ir.Input("x", 4),), (ir.Node(layer, ("x",), ("y",)),), ("y",))
    model = edgernn.Model(spec)
    x = np.random.default_rng(6).normal(scale=2.0, size=(9, 7, 4)).astype(np.float32)
    monkeypatch.setattr(runtime, "FUSED_STEP_MAX_BATCH", 0)
    stream = model.stream(9)
    assert not stream._fused
    steps = np.stack([stream.step(x[:, t]) for t in range(7)], axis=1)
    np.testing.assert_allclose(steps, model.predict(x), rtol=1e-5, atol=1e-6)


def test_extras_are_validated():
    with pytest.raises(edgernn.InvalidModelFile, match="peephole and projection exist only for LSTM"):
        _layer("gru", True, None, None, seed=0)
    with pytest.raises(edgernn.InvalidModelFile, match="cell_clip must be a positive number"):
        _layer("lstm", False, None, -1.0, seed=0)
