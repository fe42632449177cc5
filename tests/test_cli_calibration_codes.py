"""``edgernn export --calibration`` for a model of integer codes (an Embedding first): (sequences, T)
and (sequences, T, 1) codes at any T, not only the T the model was converted with; one clear error
for floats that are not integers and for codes outside the vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
from test_cli_errors import invoke, one_error_line
from test_stream import dense, recurrent

import edgernn
from edgernn import ir

VOCAB, DIM, T = 7, 4, 8


@pytest.fixture(scope="module")
def code_model(tmp_path_factory):
    """codes (converted T = 8) -> Embedding(7, 4) -> LSTM(5) -> Dense(3), saved as .ernn."""
    rng = np.random.default_rng(3)
    ops = [ir.Embedding("emb", ir.as_weight(rng.normal(0, 1, (VOCAB, DIM)))),
           recurrent(rng, "lstm", "lstm", 5, DIM), dense(rng, "head", 5, 3)]
    nodes = [ir.Node(ops[0], ("codes",), ("emb",)), ir.Node(ops[1], ("emb",), ("lstm",)),
             ir.Node(ops[2], ("lstm",), ("head",))]
    model = edgernn.Model(ir.ModelSpec((ir.Input("codes", T, rank=2, dtype="int"),), tuple(nodes), ("head",)))
    path = tmp_path_factory.mktemp("codes") / "codes.ernn"
    model.save(path)
    return path


@pytest.mark.parametrize("shape", [(4, 13), (4, 5, 1), (T,)])
def test_codes_of_any_length_calibrate(code_model, tmp_path, shape):
    codes = np.random.default_rng(1).integers(0, VOCAB, size=shape).astype(np.int64)
    np.save(tmp_path / "cal.npy", codes)
    result = invoke("export", code_model, "--quant", "int8", "--calibration", tmp_path / "cal.npy", "-o", tmp_path / "fw")
    assert result.exit_code == 0, result.output
    assert "error against the float model on the calibration data" in result.output
    assert (tmp_path / "fw" / "codes_model.c").exists()


@pytest.mark.parametrize("values, why", [
    (np.array([[1.0, 2.5, 3.0]]), "2.5"),                     # a float that is not an integer
    (np.array([[1, 2, VOCAB]]), f"[0, {VOCAB})"),             # outside the vocabulary
    (np.zeros((2, 3, 2)), "(sequences, T), (sequences, T, 1) or (T,) codes"),  # not codes' shape
])
def test_bad_codes_are_one_error(code_model, tmp_path, values, why):
    np.save(tmp_path / "cal.npy", values)
    line = one_error_line(invoke("export", code_model, "--calibration", tmp_path / "cal.npy", "-o", tmp_path / "fw"))
    assert why in line
    assert not (tmp_path / "fw").exists()
