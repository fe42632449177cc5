"""One-to-many: one vector in, a whole sequence out (Dense -> RepeatVector -> LSTM -> Dense).

A toy generator: from (frequency, phase) the model draws 20 steps of sin(frequency * t + phase).
Trained briefly in Keras, converted with edgernn; `m.predict` must return what Keras returns.
One-to-many models run in `predict` only (RepeatVector needs the whole output length up front);
`m.stream()` refuses them with NotStreamable.

    python examples/one_to_many.py        # needs keras; a few seconds of CPU
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

import edgernn  # noqa: E402

STEPS = 20


def main():
    import keras

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    params = np.column_stack([rng.uniform(0.2, 0.8, 512), rng.uniform(0, 2 * np.pi, 512)]).astype(np.float32)
    t = np.arange(STEPS, dtype=np.float32)
    waves = np.sin(params[:, :1] * t + params[:, 1:])[..., None]  # (512, 20, 1)

    model = keras.Sequential([
        keras.Input(shape=(2,)),                       # a vector, not a sequence
        keras.layers.Dense(16, activation="tanh"),
        keras.layers.RepeatVector(STEPS),              # (batch, 20, 16): the vector at every step
        keras.layers.LSTM(32, return_sequences=True),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(params, waves, epochs=30, batch_size=32, verbose=0)

    m = edgernn.convert(model)
    x = params[:8]
    ours, theirs = m.predict(x), model.predict(x, verbose=0)
    print(f"{m}\npredict: {ours.shape}, max |edgernn - Keras| = {np.abs(ours - theirs).max():.2e}, "
          f"mse to the true waves {np.mean((ours - waves[:8]) ** 2):.4f}")
    assert np.abs(ours - theirs).max() < 1e-4


if __name__ == "__main__":
    main()
