"""Accuracy of the firmware schemes on more real data: a GRU classifier, an LSTM forecaster, a CNN-LSTM.

The BasicMotions models are tools/quant_accuracy.py; this script does the others, each trained by a
seeded script in tools/ (the first two run here first if their model is not in build/models/),
converted with edgernn, quantized with its *training* data as calibration, then run on held-out data
by the float model (edgernn's float32 kernels) and by each scheme's simulation (bit-exact with the C
runtime), from zero state:

* JapaneseVowels speaker classifier (tools/train_vowels_gru.py): Masking -> GRU(24) -> Dense(9,
  softmax) on utterances post-padded to 29 frames; test accuracy and argmax agreement with the float
  model over the 370 test utterances. Target for int8: <= 1 point lost, >= 98% agreement.
* Airline forecaster (tools/train_airline_lstm.py): LSTM(16) -> Dense(1) reading this month's log
  growth and that of next month a year earlier, predicting next month's growth; the
  whole series is run once, each month's output forecasting the next month from the true history;
  RMSE (thousands of passengers) of the one-step-ahead forecasts of the 24 held-out months. Target
  for int8: at most 5% more RMSE than float.
* Daphnet gait CNN-LSTM (examples/daphnet/daphnet_cnn_lstm.ernn, tools/train_daphnet.py --model
  cnn-lstm): standardisation -> 2 x causal Conv1D(16, 5) -> LSTM(32) -> Dense(2, softmax) on three
  3-axis accelerometers at 64 Hz, calibrated on its training windows (226 x 4 s); each test segment
  (24 s and 22 s) streamed from zero state, every step counted: test accuracy and argmax agreement
  with the float model. Target for int8: <= 1 point lost, >= 98% agreement.

Run:  python tools/quant_accuracy_more.py      (needs keras for training; EDGERNN_DATA or `aeon`)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_airline_lstm as airline  # noqa: E402
import train_daphnet as daphnet  # noqa: E402
import train_vowels_gru as vowels  # noqa: E402
from quant_accuracy import ROOT, compare, errors, int8_met, load, scheme_outputs  # noqa: E402

import edgernn  # noqa: E402


def _model(trainer) -> edgernn.Model:
    if not trainer.OUTPUT.is_file():
        trainer.main()
    return edgernn.convert(str(trainer.OUTPUT))


def classifier_rows(model: edgernn.Model, calibration: np.ndarray, run, labels: np.ndarray, title: str) -> list[dict]:
    """Per scheme (the float model first): accuracy against ``labels``, argmax agreement with the float
    model, max / mean |probability - float probability| of ``run(predict)``'s probabilities."""
    rows, reference = [], None
    for scheme, y in scheme_outputs(model, calibration, run, title):
        reference = y if reference is None else reference
        acc, agree = compare(y, reference, labels)
        rows.append({"scheme": scheme, "acc": acc, "agree": agree, **errors(y, reference)})
    return rows


def evaluate_vowels() -> list[dict]:
    (x_train, _), (x_test, y_test) = vowels.data()
    return classifier_rows(_model(vowels), x_train, lambda predict: predict(x_test), y_test, "JapaneseVowels")


def evaluate_daphnet() -> list[dict]:
    """Every step of the test segments, each streamed whole from zero state (as train_daphnet.py measures)."""
    _, _, _, test, _, windows_x, _ = daphnet.data()
    model = load(ROOT / "examples" / "daphnet" / "daphnet_cnn_lstm.ernn")
    labels = np.concatenate([py for _, py in test])

    def run(predict):
        return np.concatenate([predict(px[None])[0] for px, _ in test])  # (2944, 2)

    return classifier_rows(model, windows_x, run, labels, "Daphnet CNN-LSTM")


def evaluate_airline() -> list[dict]:
    x, r, first = airline.data()
    calibration, _ = airline.training_windows()
    truth = x[first:]
    rows, reference = [], None
    for scheme, predicted in scheme_outputs(_model(airline), calibration,
                                            lambda predict: airline.forecast(predict, x, r, first), "Airline"):
        reference = predicted if reference is None else reference
        rows.append({"scheme": scheme, "rmse": airline.rmse(predicted, truth),
                     "max_diff": float(np.abs(predicted - reference).max())})
    return rows


def print_classifier(rows: list[dict], title: str) -> bool:
    """The table of `classifier_rows` and the int8 target's verdict; returns whether it is met."""
    print(title)
    print(f"{'scheme':<24} {'accuracy':>9} {'agreement':>9} {'max |dp|':>9} {'mean |dp|':>9}")
    for row in rows:
        print(f"{row['scheme']:<24} {100 * row['acc']:>8.2f}% {100 * row['agree']:>8.2f}% "
              f"{row['max_err']:>9.4f} {row['mean_err']:>9.5f}")
    met = int8_met(rows)
    print("int8 target (<= 1 point lost, >= 98% argmax agreement):", "met" if met else "NOT met", "\n")
    return met


def main() -> None:
    ok = print_classifier(evaluate_vowels(), "JapaneseVowels test set (370 utterances, 7-29 frames), "
                                             "Masking -> GRU(24) -> Dense(9, softmax)")
    ok &= print_classifier(evaluate_daphnet(), "Daphnet test segments (2,944 steps at 64 Hz, every step), "
                                               "CNN-LSTM: 2 x Conv1D(16, 5) causal -> LSTM(32) -> Dense(2, softmax)")

    rows = evaluate_airline()
    print(f"Airline, one-step-ahead forecasts of the last {airline.HELD_OUT} months, LSTM(16) -> Dense(1)")
    print(f"{'scheme':<24} {'RMSE':>7} {'vs float':>9} {'max |forecast - float|':>23}")
    for row in rows:
        print(f"{row['scheme']:<24} {row['rmse']:>7.2f} {100 * (row['rmse'] / rows[0]['rmse'] - 1):>+8.2f}% "
              f"{row['max_diff']:>23.3f}")
    met = rows[1]["rmse"] <= 1.05 * rows[0]["rmse"]
    ok &= met
    print("int8 target (<= 5% more RMSE than float):", "met" if met else "NOT met")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
