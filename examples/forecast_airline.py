"""Predict the future: a closed-loop forecast of monthly airline passengers (1949-1960).

Trains a small LSTM in Keras to predict next month from every month of a sliding window
(many-to-many, so a stream's every step is a next-month prediction), converts it with edgernn,
warms a stream's state on the whole history with `s.run`, then lets it forecast the 24 held-out
months closed loop with `s.forecast(n)`: each prediction fed back as the next input. Keras runs
the same feedback loop (the growing sequence, re-run from zero state each month) and must agree.

    python examples/forecast_airline.py                  # needs keras; user CPU time about 45 s
    python examples/forecast_airline.py --plot out.png   # and matplotlib
    python examples/forecast_airline.py --epochs 5       # a quick run (a poor forecast, same check)

Data: the UEA/UCR archive's Airline/Airline.csv, from the folder EDGERNN_DATA names or from the
copy inside the `aeon` package (`pip install aeon`).
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

import edgernn  # noqa: E402

SEED = 20261128
HELD_OUT = 24  # months to forecast
WINDOW = 24  # training windows: 24 months in, the next month after each one out
UNITS = 16
EPOCHS = 100


def airline_series() -> np.ndarray:
    """Monthly passengers (thousands), 144 values, from the UEA/UCR copy (or aeon's)."""
    path = Path(os.environ.get("EDGERNN_DATA", "")) / "Airline" / "Airline.csv"
    if not os.environ.get("EDGERNN_DATA") or not path.is_file():
        try:
            import aeon  # the same file ships inside the aeon package
        except ImportError:
            sys.exit("forecast_airline.py needs the Airline series: `pip install aeon` (which ships it), or set "
                     "EDGERNN_DATA to a folder holding Airline/Airline.csv (the UEA/UCR archive's layout)")
        path = Path(aeon.__file__).parent / "datasets" / "data" / "Airline" / "Airline.csv"
    rows = path.read_text().split()[1:]  # skip the "Date,Passengers" header
    return np.array([float(r.split(",")[1]) for r in rows], dtype=np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="PNG", help="plot history, truth and forecast (needs matplotlib)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs (default {EPOCHS})")
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(SEED)

    passengers = airline_series()
    history, truth = passengers[:-HELD_OUT], passengers[-HELD_OUT:]
    # Scale: log (the seasonal swing grows with the level), then the change from the same month
    # a year before (lag-12 difference: the yearly pattern and the trend drop out), standardised.
    # All fitted on the history only; the held-out months are never seen.
    log = np.log(history)
    change = log[12:] - log[:-12]
    mean, std = change.mean(), change.std()
    z = ((change - mean) / std).astype(np.float32)

    def unscale(v):  # forecast z of the months after the history -> passengers
        levels = list(log)
        for value in np.asarray(v, np.float64) * std + mean:
            levels.append(levels[-12] + value)  # this month = same month last year + the change
        return np.exp(levels[len(log):])

    # Sliding windows: inputs z[t : t+W], targets z[t+1 : t+W+1] (next month at every step).
    starts = range(len(z) - WINDOW)
    x = np.stack([z[t : t + WINDOW] for t in starts])[..., None]
    y = np.stack([z[t + 1 : t + WINDOW + 1] for t in starts])[..., None]

    model = keras.Sequential([
        keras.Input(shape=(None, 1)),
        keras.layers.LSTM(UNITS, return_sequences=True),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0, shuffle=True)

    # --- edgernn: convert, warm the state on the history, forecast closed loop ---------------
    m = edgernn.convert(model)  # verified against Keras on a random batch while converting
    s = m.stream(batch_size=1)
    warm = s.run(z[None, :, None])  # (1, T, 1): the state now holds all of the history
    # The last output of the history is the first forecast month; forecast(n) feeds it back first.
    ours = np.concatenate([warm[0, -1:, 0], s.forecast(HELD_OUT - 1)[0, :, 0]])

    # --- Keras, the same feedback loop: the growing sequence from zero state, each month ------
    sequence = list(z)
    theirs = []
    for _ in range(HELD_OUT):
        nxt = float(model(np.array(sequence, np.float32)[None, :, None], training=False)[0, -1, 0])
        theirs.append(nxt)
        sequence.append(nxt)
    theirs = np.array(theirs, np.float32)

    difference = np.abs(ours - theirs).max()
    print(f"edgernn vs Keras, {HELD_OUT}-month closed loop: max |difference| {difference:.2e} (scaled units), "
          f"{np.abs(unscale(ours) - unscale(theirs)).max():.4f} passengers (thousands)")
    forecast = unscale(ours)
    rmse = np.sqrt(np.mean((forecast - truth) ** 2))
    naive = np.sqrt(np.mean((history[-12:][np.arange(HELD_OUT) % 12] - truth) ** 2))
    print(f"forecast RMSE {rmse:.1f} thousand passengers over {HELD_OUT} months "
          f"(seasonal naive, last year repeated: {naive:.1f})")
    if difference > 1e-4:
        sys.exit("edgernn and Keras disagree by more than 1e-4")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        months = np.arange(len(passengers))
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot(months[:-HELD_OUT], history, color="black", label="history (state warmed on it)")
        ax.plot(months[-HELD_OUT:], truth, color="gray", linestyle="--", label="truth (held out)")
        ax.plot(months[-HELD_OUT:], forecast, color="tab:red", label=f"edgernn forecast, RMSE {rmse:.1f}")
        ax.set_xticks(months[::12], [str(1949 + k) for k in range(len(months[::12]))])
        ax.set_ylabel("passengers (thousands)")
        ax.set_title("Airline passengers: LSTM(16) closed-loop forecast with s.forecast()")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
