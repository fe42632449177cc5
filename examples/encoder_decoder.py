"""Encoder-decoder (seq2seq): the encoder's final state starts the decoder (return_state -> initial_state).

A toy forecaster: the encoder reads 30 steps of a noisy sine, the decoder is told the 10 future
time positions and writes the 10 future values. Trained briefly in Keras, converted with edgernn;
`m.predict([past, future_t])` must return what Keras returns. Models whose layers start from
another layer's state run in `predict` only (`m.stream()` refuses them with NotStreamable).

    python examples/encoder_decoder.py    # needs keras; a few seconds of CPU
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

import edgernn  # noqa: E402

PAST, AHEAD = 30, 10


def main():
    import keras

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    n = 512
    freq = rng.uniform(0.1, 0.5, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    t = np.arange(PAST + AHEAD)
    series = np.sin(freq * t + phase) + 0.05 * rng.standard_normal((n, PAST + AHEAD))
    past = series[:, :PAST, None].astype(np.float32)
    future = series[:, PAST:, None].astype(np.float32)
    future_t = np.broadcast_to((np.arange(AHEAD, dtype=np.float32) / AHEAD)[None, :, None], (n, AHEAD, 1)).copy()

    encoder_in = keras.Input(shape=(PAST, 1), name="past")
    decoder_in = keras.Input(shape=(AHEAD, 1), name="future_t")
    _, h, c = keras.layers.LSTM(32, return_state=True, name="encoder")(encoder_in)
    decoded = keras.layers.LSTM(32, return_sequences=True, name="decoder")(decoder_in, initial_state=[h, c])
    out = keras.layers.Dense(1, name="value")(decoded)
    model = keras.Model([encoder_in, decoder_in], out)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit([past, future_t], future, epochs=20, batch_size=32, verbose=0)

    m = edgernn.convert(model)
    ours = m.predict([past[:8], future_t[:8]])
    theirs = model.predict([past[:8], future_t[:8]], verbose=0)
    print(f"{m}\npredict: {ours.shape}, max |edgernn - Keras| = {np.abs(ours - theirs).max():.2e}, "
          f"mse to the true future {np.mean((ours - future[:8]) ** 2):.4f}")
    assert np.abs(ours - theirs).max() < 1e-4


if __name__ == "__main__":
    main()
