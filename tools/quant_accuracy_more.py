"""Accuracy of the firmware schemes on more real data: a GRU classifier and an LSTM forecaster.

The BasicMotions LSTM is tools/quant_accuracy.py; this script does the other two models of the issue,
each trained by a seeded script in tools/ (run here first if its model is not in build/models/),
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

Run:  python tools/quant_accuracy_more.py      (needs keras for training; EDGERNN_DATA or `aeon`)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_airline_lstm as airline  # noqa: E402
import train_vowels_gru as vowels  # noqa: E402
from quant_accuracy import SCHEMES, compare  # noqa: E402

import edgernn  # noqa: E402
from edgernn.quantize import format_report  # noqa: E402


def _model(trainer) -> edgernn.Model:
    if not trainer.OUTPUT.is_file():
        trainer.main()
    return edgernn.convert(str(trainer.OUTPUT))


def evaluate_vowels() -> list[dict]:
    (x_train, _), (x_test, y_test) = vowels.data()
    model = _model(vowels)
    reference = model.predict(x_test)  # (370, 9)
    rows = [{"scheme": "float (edgernn kernels)", "acc": compare(reference, reference, y_test)[0], "agree": 1.0,
             "max_err": 0.0, "mean_err": 0.0}]
    for scheme in SCHEMES:
        qmodel = model.quantize(x_train, scheme)
        if scheme == "int8":
            print("JapaneseVowels int8 calibration report (training data):\n" + format_report(qmodel.report) + "\n")
        y = qmodel.predict(x_test)
        error = np.abs(y.astype(np.float64) - reference)
        acc, agree = compare(y, reference, y_test)
        rows.append({"scheme": scheme, "acc": acc, "agree": agree, "max_err": float(error.max()),
                     "mean_err": float(error.mean())})
    return rows


def evaluate_airline() -> list[dict]:
    x, r, first = airline.data()
    calibration, _ = airline.training_windows()
    model = _model(airline)
    truth = x[first:]
    reference = airline.forecast(model.predict, x, r, first)
    rows = [{"scheme": "float (edgernn kernels)", "rmse": airline.rmse(reference, truth), "max_diff": 0.0}]
    for scheme in SCHEMES:
        qmodel = model.quantize(calibration, scheme)
        if scheme == "int8":
            print("Airline int8 calibration report (training windows):\n" + format_report(qmodel.report) + "\n")
        predicted = airline.forecast(qmodel.predict, x, r, first)
        rows.append({"scheme": scheme, "rmse": airline.rmse(predicted, truth),
                     "max_diff": float(np.abs(predicted - reference).max())})
    return rows


def main() -> None:
    ok = True
    rows = evaluate_vowels()
    print("JapaneseVowels test set (370 utterances, 7-29 frames), Masking -> GRU(24) -> Dense(9, softmax)")
    print(f"{'scheme':<24} {'accuracy':>9} {'agreement':>9} {'max |dp|':>9} {'mean |dp|':>9}")
    for row in rows:
        print(f"{row['scheme']:<24} {100 * row['acc']:>8.2f}% {100 * row['agree']:>8.2f}% "
              f"{row['max_err']:>9.4f} {row['mean_err']:>9.5f}")
    met = rows[0]["acc"] - rows[1]["acc"] <= 0.01 and rows[1]["agree"] >= 0.98
    ok &= met
    print("int8 target (<= 1 point lost, >= 98% argmax agreement):", "met" if met else "NOT met", "\n")

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
