"""Accuracy of the firmware schemes on real data: the shipped BasicMotions LSTM classifier.

The example model (edgernn/examples/basicmotions_lstm.keras: LSTM(16) -> Dense(4, softmax), naming the
activity at every timestep of a 10 Hz smartwatch IMU) is quantized with the BasicMotions *training*
recordings as calibration data, then the float model and each scheme's simulation (bit-exact with
the C runtime) run the 40 *test* recordings from zero state. Reported per scheme:

* test accuracy at the end of each 10 s recording, and over every timestep;
* argmax agreement with the float model, at the end of each recording and over every timestep;
* max / mean |probability - float probability|.

The issue's target for int8: at most 1 point of test accuracy lost, argmax agreement >= 98%.

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


def compare(y: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Probabilities ``y`` against the float ``reference`` (same shape, classes last) and true ``labels``
    (their shape without the class axis): ``(accuracy, argmax agreement with the reference)``."""
    return float(np.mean(y.argmax(-1) == labels)), float(np.mean(y.argmax(-1) == reference.argmax(-1)))


def evaluate() -> list[dict]:
    (x_train, _, _), (x_test, y_test, _) = basic_motions()
    model = edgernn.convert(str(examples.path()))
    reference = model.predict(x_test)  # (40, 100, 4) float32 kernels
    steps = x_test.shape[1]
    labels = np.repeat(y_test[:, None], steps, axis=1)
    rows = [{"scheme": "float (edgernn kernels)", "final_acc": compare(reference[:, -1], reference[:, -1], y_test)[0],
             "step_acc": compare(reference, reference, labels)[0], "final_agree": 1.0, "step_agree": 1.0,
             "max_err": 0.0, "mean_err": 0.0}]
    for scheme in SCHEMES:
        qmodel = model.quantize(x_train, scheme)
        if scheme == "int8":
            print("int8 calibration report (training data):\n" + format_report(qmodel.report) + "\n")
        y = qmodel.predict(x_test)
        error = np.abs(y.astype(np.float64) - reference)
        final_acc, final_agree = compare(y[:, -1], reference[:, -1], y_test)
        step_acc, step_agree = compare(y, reference, labels)
        rows.append({"scheme": scheme, "final_acc": final_acc, "step_acc": step_acc, "final_agree": final_agree,
                     "step_agree": step_agree, "max_err": float(error.max()), "mean_err": float(error.mean())})
    return rows


def main() -> None:
    rows = evaluate()
    print("BasicMotions test set (40 recordings x 100 steps), shipped LSTM(16) -> Dense(4, softmax)")
    print(f"{'scheme':<24} {'acc (end)':>9} {'acc (all steps)':>15} {'agree (end)':>11} {'agree (all)':>11} "
          f"{'max |dp|':>9} {'mean |dp|':>9}")
    for r in rows:
        print(f"{r['scheme']:<24} {100 * r['final_acc']:>8.1f}% {100 * r['step_acc']:>14.2f}% "
              f"{100 * r['final_agree']:>10.1f}% {100 * r['step_agree']:>10.2f}% {r['max_err']:>9.4f} {r['mean_err']:>9.5f}")
    int8, base = rows[1], rows[0]
    ok = base["final_acc"] - int8["final_acc"] <= 0.01 and base["step_acc"] - int8["step_acc"] <= 0.01 \
        and int8["step_agree"] >= 0.98
    print("int8 target (<= 1 point lost, >= 98% argmax agreement):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
