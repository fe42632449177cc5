"""A live sensor loop: one sample in, one prediction out, the network's state carried between samples.

Replays a recorded trace at its real rate (the shipped BasicMotions smartwatch trace, 6-axis IMU
at 10 Hz) or reads CSV rows from stdin, steps a stream once per sample and prints the prediction
and the time the step took; the median and p99 latency at the end. Copy the loop into your product
and replace `samples()` with your sensor.

    python examples/sensor_loop.py                    # the shipped trace at 10 Hz (40 s)
    python examples/sensor_loop.py --speed 0          # as fast as possible
    python examples/sensor_loop.py --ernn model.ernn --trace - --rate 100 < rows.csv
    python examples/sensor_loop.py --ernn examples/daphnet/daphnet_gru.ernn \
        --trace examples/daphnet/daphnet_trace.csv --rate 64 --labels standing,walking
"""

import argparse
import sys
import time

import numpy as np

import edgernn
from edgernn import examples


def samples(source):
    """Yield one float32 row per CSV line; skips '#' comments and a header line."""
    for line in source:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            yield np.array([float(v) for v in line.split(",")], dtype=np.float32)
        except ValueError:
            continue  # the header


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ernn", help="model to run (default: convert the shipped example)")
    parser.add_argument("--trace", help="CSV file of samples, '-' for stdin (default: the shipped trace)")
    parser.add_argument("--rate", type=float, default=10.0, help="samples per second of the recording (Hz)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay N times faster; 0 = no waiting")
    parser.add_argument("--labels", help="comma-separated class names of the outputs: print the argmax's name")
    args = parser.parse_args()

    if args.ernn:
        model = edgernn.load(args.ernn)
        labels = args.labels.split(",") if args.labels else None
    else:  # the shipped Keras example, converted on the fly (no TensorFlow needed)
        model = edgernn.convert(examples.path("basicmotions_lstm.keras"), verify=False)
        labels = examples.ACTIVITIES
    stream = model.stream(batch_size=1)
    x = np.zeros((1, model.input_features), np.float32)  # reused buffers: step allocates nothing
    y = np.zeros((1, model.output_features), np.float32)
    # The step's kernel made ready before the first real sample (the ahead-of-time module that
    # `edgernn warmup` built, or Numba's cache), then back to zero state.
    stream.step(x, out=y)
    stream.reset()
    source = sys.stdin if args.trace == "-" else open(args.trace or examples.path("basicmotions_trace.csv"))
    period = 0.0 if args.speed <= 0 else 1.0 / (args.rate * args.speed)

    latencies = []
    next_tick = time.monotonic()
    for n, sample in enumerate(samples(source)):
        if period:  # a steady clock: wait for the sample's time slot, never drift
            next_tick += period
            time.sleep(max(0.0, next_tick - time.monotonic()))
        x[0] = sample
        start = time.perf_counter()
        stream.step(x, out=y)
        latencies.append(time.perf_counter() - start)
        k = int(y[0].argmax())
        what = f"{labels[k]:<9} p={y[0, k]:.2f}" if labels else " ".join(f"{v:.4g}" for v in y[0])
        print(f"{n:5d}  {what}  {latencies[-1] * 1e6:7.1f} us", flush=True)

    us = np.array(latencies) * 1e6
    if len(us):
        print(f"{len(us)} steps: median {np.median(us):.1f} us, p99 {np.percentile(us, 99):.1f} us per step")


if __name__ == "__main__":
    main()
