"""Train the Daphnet gait example (examples/daphnet/), reproducibly, on the Daphnet recording.

Daphnet S06R02E0 (the UEA/UCR copy: EDGERNN_DATA, or `pip install aeon`): three 3-axis
accelerometers (ankle, thigh, trunk) at 64 Hz, in mg, on a Parkinson's patient, 110 s. Its
freezing-of-gait label is 0 on every row of this recording, so there is nothing to learn from it;
instead each sample gets a label derived from the signal itself: *walking* when the ankle's
acceleration magnitude has a standard deviation above 100 mg over the centred 1 s around the
sample, else *standing*. The subject stands for the first ~24 s and then walks. The model sees
only the raw samples up to now (causal), the label rule also looks half a second ahead.

Two models (``--model``), both trained per timestep on the same 4 s windows, so a stream stepped one
sample at a time names the activity after every sample; both take raw sensor values:

  gru       GRU(16, return_sequences=True) -> Dense(2, softmax); the input standardisation is
            folded into the GRU's input weights.
  cnn-lstm  the DeepConvLSTM shape of tools/train_cnn_lstm.py (its `build`), causal so it streams:
            fixed standardisation (BatchNormalization holding the training set's statistics)
            -> Conv1D(16, 5, causal) -> BN -> ReLU -> Conv1D(16, 5, causal, relu)
            -> LSTM(32, return_sequences) -> Dense(2, softmax).

Split by time (one recording of one subject: a split by subject is impossible here):
  test   12-36 s (standing, the start of walking, and the transition between them) and 88-110 s
  train  the rest (0-12 s standing, 36-88 s walking)
Test accuracy is measured by streaming each test segment from zero state, every step counted.

Writes (small, committed):
  examples/daphnet/daphnet_gru.ernn        the converted GRU model (--model gru, the default)
  examples/daphnet/daphnet_trace.csv       16-32 s of the test segment: 1024 raw samples, 9 columns (gru)
  examples/daphnet/daphnet_cnn_lstm.ernn   the converted CNN-LSTM (--model cnn-lstm)

Run:  python tools/train_daphnet.py [--model cnn-lstm]   (needs the `keras` extra; ~1 min of CPU each)
      EDGERNN_DAPHNET_OUT=DIR writes them to DIR instead (to compare with the committed files).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import DAPHNET_CHANNELS, daphnet  # noqa: E402

OUT = Path(os.environ.get("EDGERNN_DAPHNET_OUT", Path(__file__).resolve().parents[1] / "examples" / "daphnet"))
SEED = 20261128
RATE = 64  # Hz
LABELS = ("standing", "walking")
THRESHOLD = 100.0  # mg: standard deviation of the ankle's magnitude over 1 s
UNITS = 16
WINDOW, STRIDE = 4 * RATE, 16  # training windows: 4 s, a new one every 0.25 s
EPOCHS = 30
CNN_EPOCHS = 20
TEST = [(12 * RATE, 36 * RATE), (88 * RATE, None)]
TRAIN = [(0, 12 * RATE), (36 * RATE, 88 * RATE)]
TRACE = (16 * RATE, 32 * RATE)


def derived_labels(x: np.ndarray) -> np.ndarray:
    """1 (walking) where the ankle magnitude's std over the centred 1 s window exceeds THRESHOLD."""
    magnitude = np.linalg.norm(x[:, 0:3].astype(np.float64), axis=1)
    half = RATE // 2
    padded = np.pad(magnitude, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half)[: len(magnitude)]
    return (windows.std(axis=1) > THRESHOLD).astype(np.int64)


def data():
    """The recording, its derived labels, the split, and the training windows.

    ``(x (7040, 9) raw mg, y (7040,) labels, train [(x, y) segment], test [(x, y) segment],
    train_x (samples, 9): the training segments joined, windows_x (226, WINDOW, 9) raw, windows_y (226, WINDOW))``."""
    x = daphnet()
    y = derived_labels(x)
    train = [(x[a:b], y[a:b]) for a, b in TRAIN]
    test = [(x[a:b], y[a:b]) for a, b in TEST]
    train_x = np.concatenate([part for part, _ in train])
    windows = [(px[k : k + WINDOW], py[k : k + WINDOW]) for px, py in train for k in range(0, len(px) - WINDOW + 1, STRIDE)]
    return x, y, train, test, train_x, np.stack([w for w, _ in windows]), np.stack([t for _, t in windows])


def train_gru(keras, train_x, windows_x, windows_y):
    """GRU(16) -> Dense(2, softmax) on standardised windows, the standardisation then folded into the GRU."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    wx = (windows_x - mean) / std
    model = keras.Sequential([
        keras.Input(shape=(None, len(DAPHNET_CHANNELS)), name="accelerometers"),
        keras.layers.GRU(UNITS, return_sequences=True, name="gru"),
        keras.layers.Dense(len(LABELS), activation="softmax", name="activity"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(wx, windows_y, epochs=EPOCHS, batch_size=16, verbose=0, shuffle=True)

    # Fold the normalisation into the GRU's input weights: ((x - m) / s) W + b = x (W / s) + (b - (m / s) W).
    # Keras GRU (reset_after=True): bias (2, 3H), row 0 added to x W, row 1 to h U.
    kernel, recurrent_kernel, bias = model.get_layer("gru").get_weights()
    bias = bias.copy()
    bias[0] -= (mean / std) @ kernel
    model.get_layer("gru").set_weights([(kernel / std[:, None]).astype(np.float32), recurrent_kernel, bias.astype(np.float32)])
    return model


def train_cnn_lstm(keras, train_x, windows_x, windows_y):
    """tools/train_cnn_lstm.py's causal DeepConvLSTM with 2 classes, on raw windows (its first layer
    standardises with the training set's fixed statistics)."""
    import train_cnn_lstm

    flat = train_x.astype(np.float64)
    model = train_cnn_lstm.build(keras, flat.mean(axis=0), flat.var(axis=0), len(LABELS))
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy")
    model.fit(windows_x, windows_y, epochs=CNN_EPOCHS, batch_size=16, verbose=0, shuffle=True)
    return model


def test_accuracy(m, test, verbose: bool = True) -> float:
    """Per-step accuracy of ``m`` over the test segments, each streamed whole from zero state; prints each
    segment's accuracy and how long the model takes to follow each label change."""
    correct = total = 0
    for (a, b), (px, py) in zip(TEST, test):
        guess = m.predict(px[None])[0].argmax(axis=1)  # the whole segment as one stream, from zero state
        correct, total = correct + int((guess == py).sum()), total + len(py)
        if not verbose:
            continue
        print(f"test {a / RATE:.0f}-{(a + len(py)) / RATE:.0f} s: accuracy {np.mean(guess == py):.3f} per step "
              f"({np.mean(py):.2f} of it walking)")
        changes = np.flatnonzero(np.diff(py)) + 1
        for t, end in zip(changes, [*changes[1:], len(py)]):  # label changes: how long the model takes to follow
            later = np.flatnonzero(guess[t:end] == py[t])
            delay = f"after {later[0] / RATE:.2f} s" if len(later) else f"not within the {(end - t) / RATE:.2f} s it lasts"
            print(f"  {LABELS[py[t - 1]]} -> {LABELS[py[t]]} at {(a + t) / RATE:.2f} s: the model follows {delay}")
    return correct / total


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("gru", "cnn-lstm"), default="gru")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    import edgernn

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    x, y, train, test, train_x, windows_x, windows_y = data()
    trainer = train_gru if args.model == "gru" else train_cnn_lstm
    m = edgernn.convert(trainer(keras, train_x, windows_x, windows_y))  # verified against Keras while converting
    accuracy = test_accuracy(m, test)
    total = sum(len(py) for _, py in test)
    majority = max(np.mean(np.concatenate([py for _, py in test]) == k) for k in (0, 1))
    print(f"test accuracy {accuracy:.3f} over {total} steps (always the majority class: {majority:.3f})")

    OUT.mkdir(parents=True, exist_ok=True)
    if args.model == "cnn-lstm":
        m.save(OUT / "daphnet_cnn_lstm.ernn")
        print(f"wrote {OUT / 'daphnet_cnn_lstm.ernn'}")
        return
    m.save(OUT / "daphnet_gru.ernn")
    a, b = TRACE
    trace, labels = x[a:b], y[a:b]
    change = int(np.flatnonzero(np.diff(labels))[0]) + 1
    with open(OUT / "daphnet_trace.csv", "w") as f:
        f.write(f"# Daphnet S06R02E0, {a / RATE:.0f}-{b / RATE:.0f} s (held out from training): 64 Hz, mg, one row per sample\n")
        f.write(f"# derived label (tools/train_daphnet.py): rows 1-{change} standing, rows {change + 1}-{len(trace)} walking\n")
        f.write(",".join(DAPHNET_CHANNELS) + "\n")
        for row in trace:
            f.write(",".join(f"{v:.0f}" for v in row) + "\n")
    print(f"wrote {OUT / 'daphnet_gru.ernn'} and {OUT / 'daphnet_trace.csv'}")


if __name__ == "__main__":
    main()
