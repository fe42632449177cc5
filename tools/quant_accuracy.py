"""Accuracy of the firmware schemes on real data: the BasicMotions classifiers.

Two models name the activity at every timestep of a 10 Hz smartwatch IMU (BasicMotions):

* the shipped example LSTM (edgernn/examples/basicmotions_lstm.keras: LSTM(16) -> Dense(4, softmax));
* the CNN-LSTM example (examples/cnn_lstm/basicmotions_cnn_lstm.ernn, tools/train_cnn_lstm.py:
  standardisation -> 2 x causal Conv1D(16, 5) -> LSTM(32) -> Dense(4, softmax)).

Each is quantized with the BasicMotions *training* recordings as calibration data, then the float
model and each scheme's simulation (bit-exact with the C runtime) run the 40 *test* recordings from
zero state. Reported per scheme:

* test accuracy at the end of each 10 s recording, and over every timestep;
* argmax agreement with the float model, at the end of each recording and over every timestep;
* max / mean |probability - float probability|.

The issue's target for int8: at most 1 point of test accuracy lost, argmax agreement >= 98%.
`scheme_outputs` and `compare` are shared with tools/quant_accuracy_more.py (more models and data).

Run:  python tools/quant_accuracy.py      (needs the `aeon` package, or EDGERNN_DATA)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import basic_motions  # noqa: E402

import edgernn  # noqa: E402
from edgernn import examples  # noqa: E402
from edgernn.quantize import format_report  # noqa: E402


SCHEMES = ("int8", "int8-weights", "float32")
FLOAT = "float (edgernn kernels)"
ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # key: (file, description)
    "lstm": (examples.path(), "shipped LSTM(16) -> Dense(4, softmax)"),
    "cnn-lstm": (ROOT / "examples" / "cnn_lstm" / "basicmotions_cnn_lstm.ernn",
                 "CNN-LSTM: 2 x Conv1D(16, 5) causal -> LSTM(32) -> Dense(4, softmax)"),
}


def compare(y: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Probabilities ``y`` against the float ``reference`` (same shape, classes last) and true ``labels``
    (their shape without the class axis): ``(accuracy, argmax agreement with the reference)``."""
    return float(np.mean(y.argmax(-1) == labels)), float(np.mean(y.argmax(-1) == reference.argmax(-1)))


def errors(y: np.ndarray, reference: np.ndarray) -> dict:
    """max / mean |y - reference| (``max_err``, ``mean_err``)."""
    error = np.abs(y.astype(np.float64) - reference)
    return {"max_err": float(error.max()), "mean_err": float(error.mean())}


def scheme_outputs(model: edgernn.Model, calibration: np.ndarray, run, title: str):
    """``(scheme, outputs)``: first the float model's (FLOAT), then each of SCHEMES's simulation, quantized
    with ``calibration``; ``run(predict)`` applies a predict function to the held-out data. Prints the
    int8 scheme's calibration report (per layer error on the calibration data)."""
    yield FLOAT, run(model.predict)
    for scheme in SCHEMES:
        qmodel = model.quantize(calibration, scheme)
        if scheme == "int8":
            print(f"{title}: int8 calibration report (training data):\n" + format_report(qmodel.report) + "\n")
        yield scheme, run(qmodel.predict)


def load(path: Path) -> edgernn.Model:
    """An .ernn model (edgernn's own file) loaded, any other converted."""
    return edgernn.load(str(path)) if Path(path).suffix == ".ernn" else edgernn.convert(str(path))


def evaluate(key: str = "lstm") -> list[dict]:
    (x_train, _, _), (x_test, y_test, _) = basic_motions()
    model = load(MODELS[key][0])
    labels = np.repeat(y_test[:, None], x_test.shape[1], axis=1)
    rows, reference = [], None
    for scheme, y in scheme_outputs(model, x_train, lambda predict: predict(x_test), MODELS[key][1]):
        reference = y if reference is None else reference  # (40, 100, 4), the float model's
        final_acc, final_agree = compare(y[:, -1], reference[:, -1], y_test)
        step_acc, step_agree = compare(y, reference, labels)
        rows.append({"scheme": scheme, "final_acc": final_acc, "step_acc": step_acc, "final_agree": final_agree,
                     "step_agree": step_agree, **errors(y, reference)})
    return rows


def int8_met(rows: list[dict], accuracies=("acc",), agreement: str = "agree") -> bool:
    """The int8 target: no accuracy in ``accuracies`` more than 1 point below the float model's (row 0),
    int8 (row 1) argmax agreement >= 98%."""
    base, int8 = rows[0], rows[1]
    return all(base[a] - int8[a] <= 0.01 for a in accuracies) and int8[agreement] >= 0.98


def main() -> None:
    ok = True
    for key in MODELS:
        rows = evaluate(key)
        print(f"BasicMotions test set (40 recordings x 100 steps), {MODELS[key][1]}")
        print(f"{'scheme':<24} {'acc (end)':>9} {'acc (all steps)':>15} {'agree (end)':>11} {'agree (all)':>11} "
              f"{'max |dp|':>9} {'mean |dp|':>9}")
        for r in rows:
            print(f"{r['scheme']:<24} {100 * r['final_acc']:>8.1f}% {100 * r['step_acc']:>14.2f}% "
                  f"{100 * r['final_agree']:>10.1f}% {100 * r['step_agree']:>10.2f}% {r['max_err']:>9.4f} "
                  f"{r['mean_err']:>9.5f}")
        met = int8_met(rows, ("final_acc", "step_acc"), "step_agree")
        ok &= met
        print("int8 target (<= 1 point lost, >= 98% argmax agreement):", "met" if met else "NOT met", "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
