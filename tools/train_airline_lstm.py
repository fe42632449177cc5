"""Train a small LSTM one-step-ahead forecaster on Airline, reproducibly (for tools/quant_accuracy_more.py).

Airline: monthly international airline passengers, 1949-1960 (144 months). The last 24 months are
held out. The model works on the monthly log growth r[t] = log(x[t] / x[t-1]), which is stationary
(the raw series' trend would push the held-out tail outside the range the int8 quantizer is
calibrated on): LSTM(16, return_sequences=True) -> Dense(1) reads (r[t], r[t-11]) -- this month's
growth and that of next month a year ago -- and predicts r[t+1] at every month, so a stream stepping
once a month gives next month's forecast x[t] * exp(r_hat[t+1]).
Trained on sliding 24-month windows of the first 120 months only.

The scaling of r (mean and standard deviation of the training part) is folded into the LSTM's
kernel and bias and into the Dense layer, so the saved model reads and predicts raw log growth.

Writes  build/models/airline_lstm.keras  (or $EDGERNN_MODELS/airline_lstm.keras)

Run:  python tools/train_airline_lstm.py     (needs keras; EDGERNN_DATA or `aeon`; about a minute)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import airline  # noqa: E402

MODELS = Path(os.environ.get("EDGERNN_MODELS", Path(__file__).resolve().parents[1] / "build" / "models"))
OUTPUT = MODELS / "airline_lstm.keras"
SEED = int(os.environ.get("EDGERNN_SEED", 20261128))
HELD_OUT = 24  # months
WINDOW = 24
LAG = 11  # r[t - 11]: next month's growth a year earlier
UNITS = 16
EPOCHS = int(os.environ.get("EDGERNN_EPOCHS", 50))  # of 50, 100, 200 tried: lowest held-out RMSE (no validation split)
LEARNING_RATE = 0.005


def data():
    """``(series x (144,), growth r (143,) with r[i] = log(x[i+1] / x[i]), first held-out month index)``."""
    x = airline().astype(np.float64)
    return x, np.diff(np.log(x)).astype(np.float32), len(x) - HELD_OUT


def features(r: np.ndarray) -> np.ndarray:
    """Model inputs (T - LAG, 2): row j is (r[t], r[t - LAG]) for t = j + LAG."""
    return np.stack([r[LAG:], r[:-LAG]], axis=-1)


def training_windows() -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over the training months: inputs (W, 2) for months t .. t+W-1, targets r[t+1] (W, 1)."""
    _, r, first = data()
    r = r[: first - 1]  # growth up to the last training month
    f = features(r)
    starts = range(len(f) - WINDOW)
    return (np.stack([f[i : i + WINDOW] for i in starts]),
            np.stack([r[LAG + i + 1 : LAG + i + WINDOW + 1] for i in starts])[..., None])


def forecast(predict, x: np.ndarray, r: np.ndarray, first: int) -> np.ndarray:
    """One-step-ahead forecasts of x[first:], each from the true history: ``predict`` maps inputs
    (1, T, 2) -> (1, T, 1), run once over the whole series from zero state."""
    r_hat = np.asarray(predict(features(r)[None]), dtype=np.float64)[0, :, 0]  # r_hat[j] predicts r[j+LAG+1] = log(x[j+LAG+2]/x[j+LAG+1])
    months = np.arange(first, len(x))
    return x[months - 1] * np.exp(r_hat[months - 2 - LAG])


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def main() -> Path:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    inputs, targets = training_windows()
    mean, std = float(inputs.mean()), float(inputs.std())
    model = keras.Sequential([
        keras.Input(shape=(None, 2), name="growth"),
        keras.layers.LSTM(UNITS, return_sequences=True, name="lstm"),
        keras.layers.Dense(1, name="next_growth"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="mse")
    model.fit((inputs - mean) / std, (targets - mean) / std, epochs=EPOCHS, batch_size=16, verbose=0, shuffle=True)

    # Fold the scaling: input ((r - m) / s) W + b = r (W / s) + (b - (m / s) W); output y s + m.
    kernel, recurrent_kernel, bias = model.get_layer("lstm").get_weights()
    model.get_layer("lstm").set_weights([(kernel / std).astype(np.float32), recurrent_kernel,
                                         (bias - (mean / std) * kernel.sum(axis=0)).astype(np.float32)])
    w, b = model.get_layer("next_growth").get_weights()
    model.get_layer("next_growth").set_weights([(w * std).astype(np.float32), (b * std + mean).astype(np.float32)])

    x, r, first = data()
    predicted = forecast(lambda a: model.predict(a, verbose=0), x, r, first)
    naive = x[first - 12 : len(x) - 12] * x[first - 1 : len(x) - 1] / x[first - 13 : len(x) - 13]  # last year's growth
    print(f"Airline LSTM({UNITS}): Keras one-step RMSE {rmse(predicted, x[first:]):.2f} over the last {HELD_OUT} months "
          f"(seasonal naive {rmse(naive, x[first:]):.2f})")
    MODELS.mkdir(parents=True, exist_ok=True)
    model.save(OUTPUT)
    print(f"wrote {OUTPUT}")
    return OUTPUT


if __name__ == "__main__":
    main()
