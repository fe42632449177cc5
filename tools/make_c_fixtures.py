"""Write the fixture models of the C runtime's own tests (``make -C firmware_export test``).

The C tests in ``firmware_export/tests/`` run without Python, so the models they step and the
outputs they expect are stored: one exported model per scheme in
``firmware_export/tests/fixtures/<scheme>/`` (``net_model.h``, ``net_model.c``) and its golden
outputs (``net_golden.h``): what the Python simulation (``Model.quantize(...).stream``) outputs for
the seeded inputs that all schemes share (``fixtures/golden_inputs.h``: three stateful runs
separated by resets), as float32 bit patterns and, for the int8 scheme, as the raw int8 values of
``ernn_step_int8``.

The model has every layer kind the runtime has: Masking -> LSTM(8) -> GRU(6, reset_after=False) ->
SimpleRNN(5) -> Conv1D(6, 3, causal, dilation 2, relu) -> BatchNormalization (a per-channel Conv1D) ->
AveragePooling1D(3, strides 2) -> Dense(7, relu) -> Dense(4) -> softmax, on 6 features (the steps
that emit no pooled row return the last output again). Everything is seeded, so
running this again writes the same bytes; tests/test_firmware_export.py checks that it does.

    python tools/make_c_fixtures.py [FOLDER]     (default: firmware_export/tests/fixtures)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import edgernn
from edgernn import ir
from edgernn.export import export

SCHEMES = ("int8", "int8-weights", "float32")
FEATURES = 6
DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "firmware_export" / "tests" / "fixtures"


def fixture_model() -> edgernn.Model:
    """The float model every fixture quantizes (seeded weights, every layer kind)."""
    rng = np.random.default_rng(2026)

    def weight(*shape, scale=0.5):
        return ir.as_weight(rng.normal(scale=scale, size=shape))

    def recurrent(name, cell, units, features, **options):
        rows = ir.CELL_GATES[cell] * units
        if cell == "gru" and options.get("reset_after", True):
            options["recurrent_bias"] = weight(rows, scale=0.2)
        return ir.Recurrent(name, cell, units, features, weight(features, rows), weight(units, rows),
                            weight(rows, scale=0.2), return_sequences=True, **options)

    nodes = (
        ir.Node(ir.Masking("mask", 0.0), ("x",), ("mask", "keep")),
        ir.Node(recurrent("lstm", "lstm", 8, FEATURES), ("mask",), ("lstm",), mask="keep"),
        ir.Node(recurrent("gru", "gru", 6, 8, reset_after=False), ("lstm",), ("gru",), mask="keep"),
        ir.Node(recurrent("rnn", "simple", 5, 6), ("gru",), ("rnn",), mask="keep"),
        ir.Node(ir.Conv1D("conv", weight(3, 5, 6), weight(6, scale=0.3), padding="causal", dilation_rate=2,
                          activation="relu"), ("rnn",), ("conv",)),
        ir.Node(ir.Affine("norm", ir.as_weight(rng.uniform(0.5, 2.0, 6)), weight(6)), ("conv",), ("norm",)),
        ir.Node(ir.Pooling1D("pool", "average", 3, 2), ("norm",), ("pool",)),
        ir.Node(ir.Dense("hidden", weight(6, 7), weight(7, scale=0.3), "relu"), ("pool",), ("hidden",)),
        ir.Node(ir.Dense("logits", weight(7, 4), weight(4, scale=0.3), "linear"), ("hidden",), ("logits",)),
        ir.Node(ir.Activation("probabilities", "softmax"), ("logits",), ("probabilities",)),
    )
    return edgernn.Model(ir.ModelSpec((ir.Input("x", FEATURES),), nodes, ("probabilities",), {"format": "fixture"}))


def inputs(seed: int) -> list[np.ndarray]:
    """Three runs of (40, 70, 25) steps, off-centre (zero points matter), with masked (all-zero) rows."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=FEATURES)
    runs = [(rng.normal(size=(n, FEATURES)) * 1.5 + offset).astype(np.float32) for n in (40, 70, 25)]
    for run in runs:
        run[rng.random(len(run)) < 0.1] = 0.0
    return runs


def _c_array(ctype: str, name: str, values: np.ndarray, literal) -> str:
    """A const C array of ``values`` (1-D: one line; 2-D: a row per line)."""
    if values.ndim == 1:
        return f"static const {ctype} {name}[{len(values)}] = {{{', '.join(literal(v) for v in values)}}};\n"
    rows = [", ".join(literal(v) for v in row) for row in values]
    return (f"static const {ctype} {name}[{values.shape[0]}][{values.shape[1]}] = {{\n    {{"
            + "},\n    {".join(rows) + "}\n};\n")


def _steps(runs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The runs as one array of steps, and a flag per step: 1 on each run's first step."""
    x = np.concatenate(runs)
    reset = np.zeros(len(x), np.uint8)
    reset[np.cumsum([0] + [len(r) for r in runs[:-1]])] = 1
    return x, reset


def golden_inputs_header(runs: list[np.ndarray]) -> str:
    """``golden_inputs.h``, shared by every scheme's fixture: the steps and the reset flags."""
    x, reset = _steps(runs)
    return "".join([
        "/* Golden inputs of the fixture models, written by tools/make_c_fixtures.py: three stateful runs\n"
        " * (golden_reset marks each run's first step: ernn_reset before it). Every scheme steps these. */\n",
        f"#define GOLDEN_STEPS {len(x)}\n",
        _c_array("unsigned char", "golden_reset", reset, str),
        "#ifndef ERNN_NO_FLOAT\n",  # unused there, and an unused const array is a warning in C
        _c_array("float", "golden_x", x, lambda v: float(v).hex() + "f"),  # hex: exact
        "#endif\n"])


def golden_header(qmodel, runs: list[np.ndarray]) -> str:
    """``net_golden.h``: the Python simulation's outputs of one scheme for the golden inputs."""
    stream = qmodel.stream(1)
    x, _ = _steps(runs)
    y, yq = [], []
    for run in runs:
        stream.reset()
        y.append(stream.run(run[None])[0])
        if qmodel.scheme == "int8":
            stream.reset()
            yq.append(stream.run_int8(qmodel.quantize_input(run[None]))[0])
    text = [f"/* Golden outputs of the {qmodel.scheme} fixture model, written by tools/make_c_fixtures.py: what\n"
            " * the Python simulation computes for golden_inputs.h, which the C must reproduce bit for bit. */\n",
            '#include "golden_inputs.h"\n',
            f"#define GOLDEN_INT8 {int(bool(yq))}  /* golden_xq and golden_yq exist (int8 scheme) */\n",
            "#ifndef ERNN_NO_FLOAT\n",
            _c_array("uint32_t", "golden_y_bits", np.concatenate(y).view(np.uint32), lambda v: f"0x{int(v):08x}u"),
            "#endif\n"]
    if yq:
        text += [_c_array("int8_t", "golden_xq", qmodel.quantize_input(x[None])[0], str),
                 _c_array("int8_t", "golden_yq", np.concatenate(yq), str)]
    return "".join(text)


def generate(folder: Path) -> list[Path]:
    """Write every scheme's fixture under ``folder``; returns the files written."""
    model = fixture_model()
    calibration = inputs(seed=1)[1][:60].reshape(2, 30, FEATURES)  # two sequences of 30 steps
    runs = inputs(seed=7)
    shared = Path(folder) / "golden_inputs.h"
    shared.parent.mkdir(parents=True, exist_ok=True)
    shared.write_text(golden_inputs_header(runs))
    written = [shared]
    for scheme in SCHEMES:
        target = Path(folder) / scheme
        qmodel = model.quantize(calibration, scheme)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            export(qmodel, tmp, name="net")
            target.mkdir(parents=True, exist_ok=True)
            for name in ("net_model.h", "net_model.c"):
                (target / name).write_text((tmp / name).read_text())
                written.append(target / name)
        (target / "net_golden.h").write_text(golden_header(qmodel, runs))
        written.append(target / "net_golden.h")
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FOLDER):
        print(path)
