"""Streaming the stateless per-timestep ops (issue #16): LayerNormalization, RMSNormalization,
Normalization, and Embedding of integer codes (one code per stream per step, ``mask_zero``),
against live Keras 3 on prefixes and edgernn's predict on every prefix, on the fused step and the
many-streams step (a batch above ``fused_step_max_batch``), with ``run`` in chunks.

Also: get/set_state, save/load_state and reset(i) with these stages in the chain, no allocation per step, bad codes
refused before any state changes (on both step paths, and in run), the (batch,) shape refused
with a hint, forecast refused on codes, predict on codes of another length than the converted one,
and quantize still refusing the layers by name.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from test_conv_layers import data, randomize
from test_conv_stream import check_stream, convert
from test_keras_import import ATOL, RTOL, keras, layers
from test_stream import assert_paths_agree, assert_steps_allocate_nothing

import edgernn
from edgernn import ir, kernels, reference, runtime
from edgernn.cli import main
from edgernn.errors import EdgernnError, InvalidInput
from edgernn.summary import describe, format_description

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

F32 = np.float32
VOCAB = 9


def batch_for(m, path):
    """A batch that takes ``path`` ("fused" or "many streams") for model ``m``."""
    limit = runtime.fused_step_max_batch(m.spec)
    batch = 2 if path == "fused" else limit + 3
    assert m.stream(batch)._fused == (path == "fused")
    return batch


# --- LayerNormalization, RMSNormalization, Normalization ------------------------------------------

NORMS = {
    "layer": lambda: layers.LayerNormalization(epsilon=1e-3),
    "layer-plain": lambda: layers.LayerNormalization(center=False, scale=False),
    "rms_scaling": lambda: layers.LayerNormalization(rms_scaling=True),
    "rms": lambda: layers.RMSNormalization(epsilon=1e-4),
    "normalization": lambda: layers.Normalization(mean=[0.5, -2.0, 30.0], variance=[0.25, 4.0, 900.0]),
}


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_normalizations_stream(kind, path, tmp_path):
    """Before a recurrent layer, and (LayerNorm) between it and the head, as in a transformer-ish
    sensor model; every prefix equals predict and Keras."""
    keras_model, m = convert(NORMS[kind](), layers.LSTM(6, return_sequences=True), layers.LayerNormalization(),
                             layers.Dense(3), tmp_path=tmp_path)
    names = [type(n.op).__name__ for n in m.spec.nodes]
    assert names == ["Standardize" if kind == "normalization" else "LayerNorm", "Recurrent", "LayerNorm", "Dense"]
    batch = batch_for(m, path)
    x = data(batch=batch, steps=12, seed=batch) * np.array([0.5, 2.0, 30.0], F32) + np.array([0.5, -2.0, 30.0], F32)
    check_stream(keras_model, m, x)


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_layer_norm_after_a_convolution_streams(path, tmp_path):
    keras_model, m = convert(layers.Conv1D(8, 3, padding="causal", activation="relu"), layers.LayerNormalization(),
                             layers.GRU(5), layers.RMSNormalization(), layers.Dense(2), tmp_path=tmp_path)
    batch = batch_for(m, path)
    check_stream(keras_model, m, data(batch=batch, steps=15, seed=3))


@pytest.fixture(scope="module")
def normed(tmp_path_factory):
    return convert(layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 0.5, 2.0], name="normalization"),
                   layers.LayerNormalization(), layers.LSTM(7, name="lstm"), layers.Dense(2), tmp_path=tmp_path_factory.mktemp("normed"))


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_normalization_steps_allocate_nothing(normed, path):
    _, m = normed
    batch = batch_for(m, path)
    assert_steps_allocate_nothing(m.stream(batch), data(batch=batch, steps=1)[:, 0], np.empty((batch, 2), F32))


def check_state_and_reset(m, x, split, state_names, reset, state_file):
    """The per-row stages add no state: get_state holds the recurrent layers' only, a stream set to
    it mid-sequence (set_state, or load_state of ``state_file`` save_state wrote) goes on exactly as
    the original, and after reset(``reset``) that stream alone starts over (the others carry on) --
    each against predict."""
    s = m.stream(x.shape[0])
    s.run(x[:, :split])
    snapshot = s.get_state()
    assert sorted(snapshot) == state_names
    s.save_state(state_file)
    rest = s.run(x[:, split:])
    other = m.stream(x.shape[0])
    other.set_state(snapshot)
    np.testing.assert_array_equal(other.run(x[:, split:]), rest)
    loaded = m.stream(x.shape[0])
    loaded.load_state(state_file)
    np.testing.assert_array_equal(loaded.run(x[:, split:]), rest)
    s.reset(reset)
    again = s.run(x[:, split:])
    np.testing.assert_allclose(again[reset, -1], m.predict(x[reset:reset + 1, split:])[0], atol=ATOL, rtol=RTOL)
    others = [i for i in range(x.shape[0]) if i != reset]
    np.testing.assert_allclose(again[others, -1], m.predict(np.concatenate([x[others], x[others, split:]], 1)),
                               atol=ATOL, rtol=RTOL)


def test_normalization_state_reset_and_quantize(normed, tmp_path):
    _, m = normed
    x = data(batch=3, steps=10, seed=4)
    check_state_and_reset(m, x, 4, ["lstm/c", "lstm/h", "output"], reset=1, state_file=tmp_path / "state.zip")
    with pytest.raises(EdgernnError) as info:
        m.quantize(x)
    text = str(info.value) + " ".join(info.value.problems)
    assert "is LayerNorm" in text and "'normalization'" not in text  # the firmware runs the Normalization


@pytest.mark.parametrize("kind, gamma, beta", [("layer", True, True), ("layer", False, True), ("layer", True, False),
                                               ("layer", False, False), ("rms_scaling", True, False),
                                               ("rms_scaling", False, False), ("rms", True, False)])
def test_row_kernels_match_the_reference(kind, gamma, beta):
    """kernels.rowwise against the float64 reference, rows of a large mean against their spread included."""
    rng = np.random.default_rng(5)
    op = ir.LayerNorm("ln", kind, 1e-3, ir.as_weight(rng.normal(1, 0.3, 6)) if gamma else None,
                      ir.as_weight(rng.normal(0, 0.3, 6)) if beta else None)
    x = (rng.normal(0, 1, (40, 6)) * rng.uniform(0.01, 3, (40, 1)) + rng.normal(0, 300, (40, 1))).astype(F32)
    y = np.empty_like(x)
    kernels.layer_norm_rows(kernels.NORM_IDS[kind], x, y, *[a if a is not None else np.zeros(0, F32)
                                                           for a in (op.gamma, op.beta)], F32(op.epsilon))
    np.testing.assert_allclose(y, reference.layer_norm(op, x), atol=ATOL, rtol=RTOL)
    op = ir.Standardize("std", ir.as_weight(rng.normal(0, 300, 6)), ir.as_weight(rng.uniform(0.01, 3, 6)))
    kernels.standardize_rows(x, y, op.mean, op.std)
    np.testing.assert_allclose(y, reference.standardize(op, x), atol=ATOL, rtol=RTOL)


# --- Embedding ----------------------------------------------------------------------------------------


def codes(batch, steps, seed=1, zeros=True):
    """Codes in [0, VOCAB); with ``zeros``, runs of the padding code 0 inside the sequences."""
    x = np.random.default_rng(seed).integers(1, VOCAB, size=(batch, steps))
    if zeros:
        x[0, 3:6] = 0
        x[-1, -4:] = 0
        x[:, 1] = np.where(np.arange(batch) % 2, 0, x[:, 1])
    return x.astype(np.int32)


def embedded(stack, tmp_path, steps=10, mask_zero=True, dim=4):
    """One set of layers behind two Keras inputs: a fixed length (converted; edgernn converts codes of a
    fixed length) and any length (Keras's live reference on prefixes). ``(keras_any_length, model)``."""
    embedding = layers.Embedding(VOCAB, dim, mask_zero=mask_zero, name="emb")
    models = []
    for length in (steps, None):
        inp = keras.Input(shape=(length,), dtype="int32")
        h = embedding(inp)
        for layer in stack:
            h = layer(h)
        models.append(keras.Model(inp, h))
    randomize(models[0])
    models[0].save(tmp_path / "codes.keras")
    return models[1], edgernn.convert(tmp_path / "codes.keras")


def check_codes_stream(keras_model, m, x, chunks=(4, 1, 6)):
    """Step code by code (as float32 columns, the fast path), run in chunks: every prefix equals
    predict on it and Keras on a few."""
    batch, steps = x.shape
    s = m.stream(batch)
    ys = np.stack([s.step(np.ascontiguousarray(x[:, t:t + 1], dtype=F32)) for t in range(steps)], axis=1)
    assert s.emitted.all()
    r, pieces, t, k = m.stream(batch), [], 0, 0
    while t < steps:
        n = min(chunks[k % len(chunks)], steps - t)
        pieces.append(r.run(x[:, t:t + n]))
        t, k = t + n, k + 1
    assert_paths_agree(np.concatenate(pieces, axis=1), ys)
    sequence = m.spec.tensor_shape(m.spec.outputs[0])[0] == 3
    for n in range(1, steps + 1):
        p = m.predict(x[:, :n])
        np.testing.assert_allclose(ys[:, n - 1], p[:, -1] if sequence else p, atol=ATOL, rtol=RTOL,
                                   err_msg=f"prefix of {n} steps")
    for n in (1, steps // 2, steps):
        k_out = np.asarray(keras_model(x[:, :n], training=False))
        np.testing.assert_allclose(ys[:, n - 1], k_out[:, -1] if sequence else k_out, atol=ATOL, rtol=RTOL,
                                   err_msg=f"Keras on the prefix of {n} steps")
    return ys


@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_embedding_streams(mask_zero, path, tmp_path):
    """Embedding -> LSTM (sequences) -> LayerNorm -> GRU -> Dense: with mask_zero a code 0 keeps both
    recurrent layers' state and output, in the stream as in Keras."""
    keras_model, m = embedded([layers.LSTM(5, return_sequences=True), layers.LayerNormalization(), layers.GRU(4),
                               layers.Dense(3)], tmp_path, mask_zero=mask_zero)
    assert m.spec.inputs[0].dtype == "int" and m.spec.inputs[0].features == 10
    batch = batch_for(m, path)
    x = codes(batch, 16, seed=batch)  # longer than the converted length
    ys = check_codes_stream(keras_model, m, x)
    held = np.all(ys[:, 1:] == ys[:, :-1], axis=-1)  # a masked step repeats the output exactly
    if mask_zero:
        np.testing.assert_array_equal(held[0, 3:5], True)
    else:
        assert not held.any()


@pytest.mark.parametrize("path", ["fused", "many streams"])
def test_embedding_into_a_convolution_streams(path, tmp_path):
    keras_model, m = embedded([layers.Conv1D(6, 3, padding="causal", activation="relu"), layers.LSTM(5),
                               layers.Dense(2)], tmp_path, mask_zero=False)
    check_codes_stream(keras_model, m, codes(batch_for(m, path), 12, seed=5))


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    return embedded([layers.GRU(6, name="gru"), layers.Dense(3)], tmp_path_factory.mktemp("words"))


@pytest.mark.parametrize("path", ["fused", "many streams"])
@pytest.mark.parametrize("bad", [VOCAB, -1, 2.5, np.nan, 2 ** 24 + 1 + VOCAB])
def test_bad_codes_refused_leaving_the_state_untouched(words, path, bad):
    _, m = words
    batch = batch_for(m, path)
    x = codes(batch, 6).astype(np.float64)
    s = m.stream(batch)
    s.run(x[:, :3])
    before = s.get_state()
    column = np.ascontiguousarray(x[:, 3:4])
    column[batch - 1, 0] = bad  # the last stream: every other stream is checked first
    for given in (column, column.astype(F32)) if abs(bad) < 2 ** 24 or np.isnan(bad) else (column,):
        with pytest.raises(InvalidInput, match=f"layer 'emb' \\(Embedding\\) takes integer codes in \\[0, {VOCAB}\\)"):
            s.step(given)
        after = s.get_state()
        assert all(np.array_equal(after[k], before[k]) for k in before)
    block = x[:, 3:].copy()
    block[0, 2] = bad
    with pytest.raises(InvalidInput, match="'emb'"):
        s.run(block)
    after = s.get_state()
    assert all(np.array_equal(after[k], before[k]) for k in before)
    # and the stream goes on as if nothing had happened
    np.testing.assert_allclose(s.run(x[:, 3:])[:, -1], m.predict(x), atol=ATOL, rtol=RTOL)


def test_codes_shapes_forecast_and_quantize(words):
    _, m = words
    s = m.stream(3)
    assert s.input_features == 1
    with pytest.raises(InvalidInput, match=r"shape \(batch=3, 1\).*got \(3,\).*x_t\[:, None\]"):
        s.step(np.ones(3, F32))
    with pytest.raises(InvalidInput, match=r"\(batch=3, T\), got \(3, 4, 1\)"):
        s.run(np.ones((3, 4, 1), F32))
    s.step(np.ones((3, 1), F32))
    with pytest.raises(InvalidInput, match="integer codes.*'emb' is an Embedding"):
        s.forecast(2)
    # the firmware runs models of codes too (tests/test_firmware_embedding.py has the bit-exact checks)
    q = m.quantize(codes(3, 10))
    x = codes(2, 10, seed=5)
    y, expected = q.predict(x), m.predict(x)
    assert y.shape == expected.shape and np.abs(y - expected).mean() < 0.05 * (np.ptp(expected) + 1e-3)


def test_codes_state_reset_and_allocation(words, tmp_path):
    _, m = words
    check_state_and_reset(m, codes(4, 12, seed=6), 5, ["gru/h", "output"], reset=2, state_file=tmp_path / "state.zip")
    for path in ("fused", "many streams"):
        batch = batch_for(m, path)
        column = np.ascontiguousarray(codes(batch, 1, zeros=False), dtype=F32)
        assert_steps_allocate_nothing(m.stream(batch), column, np.empty((batch, 3), F32))


def test_summary_shows_codes(words):
    _, m = words
    info = describe(m.spec)
    assert info["inputs"][0]["shape"] == ["batch", "T"] and info["inputs"][0]["dtype"] == "int"
    assert info["streamable"] and info["state_bytes_per_stream"] == 4 * 6
    assert f"input {m.spec.inputs[0].name}: (batch, T) integer codes" in format_description(info)


def test_predict_takes_codes_of_any_length(words):
    keras_model, m = words
    for steps in (1, 7, 10, 23):
        x = codes(3, steps, seed=steps, zeros=steps > 5)
        np.testing.assert_allclose(m.predict(x), np.asarray(keras_model(x)), atol=ATOL, rtol=RTOL)
    with pytest.raises(InvalidInput, match="has no timesteps"):
        m.predict(np.zeros((3, 0), np.int32))


def test_edgernn_run_reads_one_code_per_stream(words, tmp_path):
    """`edgernn run` on a codes model: a row holds one code per stream; each output row is predict on
    the prefix."""
    _, m = words
    m.save(tmp_path / "words.ernn")
    x = codes(2, 7, seed=8)
    text = "\n".join(",".join(str(v) for v in row) for row in x.T) + "\n"
    result = CliRunner().invoke(main, ["run", str(tmp_path / "words.ernn"), "--streams", "2"], input=text)
    assert result.exit_code == 0, result.output
    rows = np.loadtxt(result.output.splitlines(), delimiter=",", ndmin=2)
    assert rows.shape == (7, 2 * 3)
    for n in range(1, 8):
        np.testing.assert_allclose(rows[n - 1].reshape(2, 3), m.predict(x[:, :n]), atol=ATOL, rtol=RTOL)
