"""The main job, on the example that ships inside edgernn: convert a Keras model, then stream
sensor samples through it one at a time, as a device's sensor loop would.

1. Converts ``basicmotions_lstm.keras`` (LSTM(16) -> Dense(4, softmax), trained on a 6-axis
   smartwatch IMU) to ``.ernn`` -- read with h5py; TensorFlow is not needed, nor imported.
2. Loads it, warms the kernels up (Numba compiles once, then caches on disk).
3. Replays the shipped trace (one test recording of each activity, 10 Hz) through a stateful
   stream, one ``step`` per sample, and prints the predicted activity each second next to the
   recorded one, with the measured time per step.

Run:  python tools/demo.py   (after ``pip install .``)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgernn
from edgernn import examples


def read_trace(path: Path) -> np.ndarray:
    rows = [line for line in path.read_text().splitlines() if line and line[0] not in "#a"]
    return np.array([[float(v) for v in row.split(",")] for row in rows], dtype=np.float32)


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "basicmotions.ernn"
        # verify=False: this shows conversion without TensorFlow (with it installed, convert would
        # also run the Keras model to check itself; `edgernn verify` does that on demand)
        edgernn.convert(examples.path("basicmotions_lstm.keras"), verify=False).save(target)
        model = edgernn.load(target)
    print(f"converted and loaded: {model}  (tensorflow imported: {'tensorflow' in sys.modules})")
    start = time.perf_counter()
    model.warmup()
    print(f"warm-up (compile or load cached kernels): {time.perf_counter() - start:.2f} s")

    trace = read_trace(examples.path("basicmotions_trace.csv"))
    stream = model.stream(batch_size=1)
    x = np.empty((1, trace.shape[1]), np.float32)
    y = np.empty((1, len(examples.ACTIVITIES)), np.float32)
    timings, correct = [], 0
    print(f"\n{'second':>6}  {'recorded':<10} {'predicted':<10} confidence")
    for t, sample in enumerate(trace):
        x[0] = sample
        begin = time.perf_counter_ns()
        stream.step(x, out=y)
        timings.append(time.perf_counter_ns() - begin)
        recorded = examples.ACTIVITIES[t // 100]
        predicted = examples.ACTIVITIES[int(y.argmax())]
        correct += predicted == recorded
        if t % 10 == 9:
            print(f"{(t + 1) / 10:6.0f}  {recorded:<10} {predicted:<10} {y.max():.2f}")
    print(f"\n{len(trace)} samples, one stateful step each: predicted activity right at {correct / len(trace):.0%} "
          f"of samples; median {np.median(timings) / 1000:.1f} µs per step on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
