"""Train a small GRU speaker classifier on JapaneseVowels, reproducibly (for tools/quant_accuracy_more.py).

JapaneseVowels (UEA archive): nine male speakers each uttering /ae/; every frame is 12 LPC cepstrum
coefficients, 7-29 frames per utterance; 270 training and 370 test utterances. The utterances are
post-padded with 0.0 to 29 frames and the model starts with a Masking(0.0) layer (the int8 quantizer
supports Masking as the first layer): Masking -> GRU(24) -> Dense(9, softmax), the speaker read from
the GRU's state at the last real frame. No real frame has all 12 coefficients near 0 (every frame
has one of magnitude >= 0.33), so the mask only ever hides padding, also in int8.

The input normalisation (per-coefficient mean and standard deviation of the training frames) is
folded into the GRU's kernel and input bias after training, so the saved model takes raw values.

Writes  build/models/vowels_gru.keras  (or $EDGERNN_MODELS/vowels_gru.keras)

Run:  python tools/train_vowels_gru.py     (needs keras; EDGERNN_DATA or `aeon`; about a minute)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import japanese_vowels, pad  # noqa: E402

MODELS = Path(os.environ.get("EDGERNN_MODELS", Path(__file__).resolve().parents[1] / "build" / "models"))
OUTPUT = MODELS / "vowels_gru.keras"
SEED = int(os.environ.get("EDGERNN_SEED", 20261128))
STEPS = 29  # the longest utterance
MASK = 0.0
UNITS = 24
EPOCHS = int(os.environ.get("EDGERNN_EPOCHS", 60))
LEARNING_RATE = 0.005


def data():
    """``(x_train, y_train), (x_test, y_test)``: raw coefficients, post-padded with MASK to STEPS frames."""
    (train, y_train, _), (test, y_test, _) = japanese_vowels()
    return (pad(train, STEPS, MASK), y_train), (pad(test, STEPS, MASK), y_test)


def main() -> Path:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    (train, y_train, classes), _ = japanese_vowels()
    (x_train, _), (x_test, y_test) = data()
    frames = np.concatenate(train)
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    real = np.any(x_train != MASK, axis=-1, keepdims=True)
    x_norm = np.where(real, (x_train - mean) / std, MASK).astype(np.float32)  # padding stays the mask value

    model = keras.Sequential([
        keras.Input(shape=(None, 12), name="cepstrum"),
        keras.layers.Masking(MASK, name="mask"),
        keras.layers.GRU(UNITS, name="gru"),
        keras.layers.Dense(len(classes), activation="softmax", name="speaker"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_norm, y_train, epochs=EPOCHS, batch_size=16, verbose=0, shuffle=True)

    # Fold the normalisation into the GRU: ((x - m) / s) W + b = x (W / s) + (b - (m / s) W).
    kernel, recurrent_kernel, bias = model.get_layer("gru").get_weights()  # bias (2, 3 units): input, recurrent
    bias = bias.copy()
    bias[0] -= (mean / std) @ kernel
    model.get_layer("gru").set_weights([(kernel / std[:, None]).astype(np.float32), recurrent_kernel, bias.astype(np.float32)])

    accuracy = np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test)
    print(f"JapaneseVowels GRU({UNITS}): Keras test accuracy {accuracy:.4f} on {len(y_test)} utterances")
    MODELS.mkdir(parents=True, exist_ok=True)
    model.save(OUTPUT)
    print(f"wrote {OUTPUT}")
    return OUTPUT


if __name__ == "__main__":
    main()
