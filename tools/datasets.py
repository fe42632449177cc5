"""Readers for the public UEA/UCR time-series data the training scripts use.

The files come from a folder in the UEA/UCR archive's layout (``<Name>/<Name>_TRAIN.ts`` and so
on) named by the ``EDGERNN_DATA`` environment variable, or else from the copy that ships inside
the ``aeon`` package (``pip install aeon``). Used by the scripts in tools/ only: the package and
its tests never need these files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA = Path(os.environ["EDGERNN_DATA"]) if os.environ.get("EDGERNN_DATA") else None


def _aeon_copy(name: str) -> Path | None:
    """The same file inside an installed `aeon` package."""
    try:
        import aeon  # noqa: F401
    except ImportError:
        return None
    return Path(aeon.__file__).parent / "datasets" / "data" / name


def data_file(folder: str, name: str) -> Path:
    """``<EDGERNN_DATA>/<folder>/<name>``, else aeon's copy; a missing file says where to get it."""
    if DATA is not None and (DATA / folder / name).is_file():
        return DATA / folder / name
    alternative = _aeon_copy(f"{folder}/{name}")
    if alternative is not None and alternative.is_file():
        return alternative
    where = f"{DATA / folder / name} does not exist" if DATA is not None else "EDGERNN_DATA is not set"
    raise SystemExit(f"{folder}/{name}: this script needs the public UEA/UCR data ({where}, and the `aeon` "
                     "package, which ships a copy, is not installed). `pip install aeon`, or set EDGERNN_DATA "
                     "to a folder holding the archive's files.")


def read_ts(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A multivariate, equal-length .ts file -> ``(x (cases, T, channels) float32, labels (cases,) int, class names)``."""
    cases, labels, classes = read_ts_ragged(path)
    return np.stack(cases), labels, classes


def basic_motions():
    """BasicMotions: 6-axis smartwatch IMU at 10 Hz, 100 steps; train (40) and test (40) splits."""
    train = read_ts(data_file("BasicMotions", "BasicMotions_TRAIN.ts"))
    test = read_ts(data_file("BasicMotions", "BasicMotions_TEST.ts"))
    return train, test


def read_ts_ragged(path: Path) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """A multivariate .ts file of unequal lengths -> ``([x (T_i, channels) float32], labels (cases,) int, class names)``."""
    classes: list[str] = []
    cases, labels = [], []
    in_data = False
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if line.lower().startswith("@classlabel"):
                classes = line.split()[2:]
            in_data = line.lower() == "@data"
            continue
        *channels, label = line.split(":")
        cases.append(np.asarray([[float(v) for v in channel.split(",")] for channel in channels], dtype=np.float32).T)
        labels.append(classes.index(label))
    return cases, np.asarray(labels), classes


def pad(cases: list[np.ndarray], steps: int, value: float = 0.0) -> np.ndarray:
    """Post-pad variable-length cases ``(T_i, channels)`` with ``value`` to ``(cases, steps, channels)``."""
    x = np.full((len(cases), steps, cases[0].shape[1]), value, dtype=np.float32)
    for i, case in enumerate(cases):
        x[i, : len(case)] = case[:steps]
    return x


def japanese_vowels():
    """JapaneseVowels: 12 LPC cepstrum coefficients per frame, 7-29 frames, 9 speakers; train (270) and
    test (370) splits, each as a list of ``(T_i, 12)`` arrays (see `pad`)."""
    train = read_ts_ragged(data_file("JapaneseVowels", "JapaneseVowels_TRAIN.ts"))
    test = read_ts_ragged(data_file("JapaneseVowels", "JapaneseVowels_TEST.ts"))
    return train, test


def airline() -> np.ndarray:
    """Airline: monthly international airline passengers (thousands), 1949-01 to 1960-12, 144 values."""
    rows = data_file("Airline", "Airline.csv").read_text().split()[1:]  # skip the "Date,Passengers" header
    return np.array([float(r.split(",")[1]) for r in rows], dtype=np.float32)


DAPHNET_CHANNELS = ("ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral", "leg_horiz_fwd", "leg_vert",
                    "leg_horiz_lateral", "trunk_horiz_fwd", "trunk_vert", "trunk_horiz_lateral")


def daphnet() -> np.ndarray:
    """Daphnet S06R02E0: 3 accelerometers (ankle, thigh, trunk) x 3 axes at 64 Hz, in mg; ``(7040, 9)`` float32.
    Its ``is_anomaly`` (freezing of gait) column is 0 on every row, so it is not returned."""
    path = data_file("Daphnet_S06R02E0", "S06R02E0.csv")
    header = path.read_text().split("\n", 1)[0].split(",")
    assert tuple(header[1:10]) == DAPHNET_CHANNELS, header
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, 10), dtype=np.float32)
