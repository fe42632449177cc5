"""Train the example model that ships inside edgernn, reproducibly, on real smartwatch data.

BasicMotions (UEA archive): a 6-axis smartwatch IMU (accelerometer + gyroscope) at 10 Hz, four
activities (Standing, Running, Walking, Badminton), 40 training and 40 test recordings of 10 s.
The model, LSTM(16, return_sequences=True) -> Dense(4, softmax), is trained to name the activity
at *every* timestep, so that a stateful stream stepping one sample at a time gives a useful
prediction after each sample -- the sensor-loop use edgernn is for.

The input normalisation (per-channel mean and standard deviation of the training set) is folded
into the LSTM's kernel and bias after training, so the saved model takes raw sensor values.

Writes (both shipped in the package):
  edgernn/examples/basicmotions_lstm.keras   the trained Keras model
  edgernn/examples/basicmotions_trace.csv    one test recording of each activity, 400 rows x 6

Run:  python tools/train_example.py     (needs the `keras` extra; EDGERNN_DATA or `aeon`)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import basic_motions  # noqa: E402

EXAMPLES = Path(os.environ.get("EDGERNN_EXAMPLES", Path(__file__).resolve().parents[1] / "edgernn" / "examples"))
SEED = int(os.environ.get("EDGERNN_SEED", 20261128))
UNITS = 16
EPOCHS = int(os.environ.get("EDGERNN_EPOCHS", 150))
NOISE = float(os.environ.get("EDGERNN_NOISE", 0.1))
LEARNING_RATE = float(os.environ.get("EDGERNN_LR", 0.01))


def main() -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    (x_train, y_train, classes), (x_test, y_test, _) = basic_motions()
    mean = x_train.reshape(-1, 6).mean(axis=0)
    std = x_train.reshape(-1, 6).std(axis=0)
    steps = x_train.shape[1]

    def per_step(labels):  # the recording's activity at every timestep
        return np.repeat(labels[:, None], steps, axis=1)

    model = keras.Sequential([
        keras.Input(shape=(None, 6), name="imu"),
        # Noise on the standardised input during training only (identity at inference): 40
        # recordings are few, and this keeps the model from memorising them.
        keras.layers.GaussianNoise(NOISE, name="noise"),
        keras.layers.LSTM(UNITS, return_sequences=True, name="lstm"),
        keras.layers.Dense(len(classes), activation="softmax", name="activity"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit((x_train - mean) / std, per_step(y_train), epochs=EPOCHS, batch_size=8, verbose=0, shuffle=True)

    # Fold the normalisation into the first layer: ((x - m) / s) W + b = x (W / s) + (b - (m / s) W).
    kernel, recurrent_kernel, bias = model.get_layer("lstm").get_weights()
    folded_kernel = kernel / std[:, None]
    folded_bias = bias - (mean / std) @ kernel
    model.get_layer("lstm").set_weights([folded_kernel.astype(np.float32), recurrent_kernel, folded_bias.astype(np.float32)])

    probabilities = model.predict(x_test, verbose=0)
    final = probabilities[:, -1].argmax(axis=1)
    every_step = (probabilities.argmax(axis=2) == per_step(y_test)).mean()
    print(f"test accuracy: {np.mean(final == y_test):.3f} at the end of each 10 s recording, "
          f"{every_step:.3f} over every timestep")
    for k, name in enumerate(classes):
        rows = y_test == k
        print(f"  {name:<10} end-of-recording accuracy {np.mean(final[rows] == k):.2f}")

    EXAMPLES.mkdir(parents=True, exist_ok=True)
    model.save(EXAMPLES / "basicmotions_lstm.keras")
    # One test recording of each activity, back to back: what a watch would stream.
    picks = [int(np.flatnonzero(y_test == k)[0]) for k in range(len(classes))]
    with open(EXAMPLES / "basicmotions_trace.csv", "w") as f:
        f.write("# BasicMotions test recordings (10 Hz smartwatch IMU), raw sensor units, one row per sample\n")
        for k, case in zip(range(len(classes)), picks):
            f.write(f"# rows {100 * k + 1}-{100 * k + 100}: {classes[k]} (test case {case})\n")
        f.write("acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z\n")
        for case in picks:
            for row in x_test[case]:
                f.write(",".join(f"{v:.6g}" for v in row) + "\n")
    print(f"wrote {EXAMPLES / 'basicmotions_lstm.keras'} and {EXAMPLES / 'basicmotions_trace.csv'}")


if __name__ == "__main__":
    main()
