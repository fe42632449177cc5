"""The small example that ships with edgernn: an activity classifier trained on real smartwatch data.

``basicmotions_lstm.keras``: LSTM(16) -> Dense(4, softmax) over a 6-axis IMU at 10 Hz, naming the
activity (Standing, Running, Walking, Badminton) at every timestep; trained by
``tools/train_example.py`` on the BasicMotions data set. ``basicmotions_trace.csv``: one test
recording of each activity, 400 rows of raw sensor values.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
ACTIVITIES = ("Standing", "Running", "Walking", "Badminton")


def path(name: str = "basicmotions_lstm.keras") -> Path:
    """The path of a shipped example file."""
    return FOLDER / name
