"""Train the CNN-LSTM example (examples/cnn_lstm/), reproducibly, on real smartwatch data.

BasicMotions (UEA archive, EDGERNN_DATA or `pip install aeon`): a 6-axis smartwatch IMU
(accelerometer + gyroscope) at 10 Hz, four activities (Standing, Running, Walking, Badminton),
40 training and 40 test recordings of 10 s.

The model is the DeepConvLSTM shape used in activity recognition, kept causal so that it streams:

    BatchNormalization (fixed: the training set's per-channel mean and variance, so the model
    takes raw sensor values; not trained)
    -> Conv1D(16, 5, causal) -> BatchNormalization -> ReLU      (edgernn folds this BN into the conv)
    -> Conv1D(16, 5, causal, relu)
    -> LSTM(32, return_sequences) -> Dense(4, softmax)

trained to name the activity at *every* timestep, so a stream stepped one sample at a time gives a
prediction after each sample (the convolutions keep the last 4 samples each as stream state).

Prints the test accuracy of the converted model at the end of each recording and over every
timestep, and checks that a stream stepped sample by sample gives predict's answers.

Writes (small, committed):
  examples/cnn_lstm/basicmotions_cnn_lstm.ernn    the trained model, converted (Keras's own file is
                                                  not kept: the .ernn holds every weight, 40 KB)

Run:  python tools/train_cnn_lstm.py     (needs the `keras` extra; about a minute of CPU)
      EDGERNN_CNN_LSTM_OUT=DIR writes them to DIR instead (to compare with the committed files).
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

OUT = Path(os.environ.get("EDGERNN_CNN_LSTM_OUT", Path(__file__).resolve().parents[1] / "examples" / "cnn_lstm"))
SEED = 20261204
FILTERS, KERNEL, UNITS = 16, 5, 32
EPOCHS = int(os.environ.get("EDGERNN_EPOCHS", 120))
NOISE = 0.1  # on the standardised input, training only (40 recordings are few)


def build(keras, mean: np.ndarray, variance: np.ndarray, classes: int):
    """The causal DeepConvLSTM above for ``len(mean)`` input features (also tools/train_daphnet.py's
    CNN-LSTM), its first layer standardising with the fixed per-feature ``mean`` and ``variance``."""
    features = len(mean)
    inputs = keras.Input(shape=(None, features), name="imu")
    standardise = keras.layers.BatchNormalization(epsilon=1e-6, name="standardise")
    x = standardise(inputs)
    x = keras.layers.GaussianNoise(NOISE, name="noise")(x)
    x = keras.layers.Conv1D(FILTERS, KERNEL, padding="causal", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.Conv1D(FILTERS, KERNEL, padding="causal", activation="relu", name="conv2")(x)
    x = keras.layers.LSTM(UNITS, return_sequences=True, name="lstm")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="activity")(x)
    model = keras.Model(inputs, outputs)
    # The first BatchNormalization is the input standardisation: its statistics set, not learned
    # (trainable=False also makes Keras use them while training).
    standardise.set_weights([np.ones(features, np.float32), np.zeros(features, np.float32), mean.astype(np.float32),
                             variance.astype(np.float32)])
    standardise.trainable = False
    return model


def main() -> None:
    import keras
    import tensorflow as tf

    import edgernn

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    (x_train, y_train, classes), (x_test, y_test, _) = basic_motions()
    steps = x_train.shape[1]
    flat = x_train.reshape(-1, 6).astype(np.float64)
    model = build(keras, flat.mean(axis=0), flat.var(axis=0), len(classes))

    def per_step(labels):  # the recording's activity at every timestep
        return np.repeat(labels[:, None], steps, axis=1)

    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy")
    model.fit(x_train, per_step(y_train), epochs=EPOCHS, batch_size=8, verbose=0, shuffle=True)

    m = edgernn.convert(model)  # verified against Keras while converting
    probabilities = m.predict(x_test)
    final = probabilities[:, -1].argmax(axis=1)
    every_step = (probabilities.argmax(axis=2) == per_step(y_test)).mean()
    keras_final = model.predict(x_test, verbose=0)[:, -1].argmax(axis=1)
    print(f"test accuracy: {np.mean(final == y_test):.3f} at the end of each 10 s recording "
          f"(Keras: {np.mean(keras_final == y_test):.3f}), {every_step:.3f} over every timestep")
    for k, name in enumerate(classes):
        rows = y_test == k
        print(f"  {name:<10} end-of-recording accuracy {np.mean(final[rows] == k):.2f}")

    OUT.mkdir(parents=True, exist_ok=True)
    m.save(OUT / "basicmotions_cnn_lstm.ernn")
    print(f"wrote {OUT / 'basicmotions_cnn_lstm.ernn'}")

    stream = m.stream(batch_size=len(x_test))
    stepped = np.stack([stream.step(x_test[:, t]) for t in range(steps)], axis=1)
    print(f"stream stepped sample by sample vs predict: largest difference {np.abs(stepped - probabilities).max():.2e}")


if __name__ == "__main__":
    main()
