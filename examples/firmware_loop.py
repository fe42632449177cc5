"""The same samples through the exported C and through Python's int8 simulation: equal outputs.

Converts the shipped BasicMotions example (or takes `--ernn`), exports it as int8 C (`edgernn
export`, calibrated on the trace), compiles examples/firmware/main.c against the folder with the
host's C compiler, pipes the trace through it, and compares every int8 output with
`m.quantize(...)` stepped in Python. Needs a C compiler (cc/gcc/clang).

    python examples/firmware_loop.py [--out DIR]     # DIR default: a temporary folder
    python examples/firmware_loop.py --ernn examples/daphnet/daphnet_gru.ernn \
        --trace examples/daphnet/daphnet_trace.csv --labels standing,walking
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import edgernn
from edgernn import examples
from sensor_loop import samples  # examples/sensor_loop.py: CSV rows -> float32 samples

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for the model, the firmware and the program")
    parser.add_argument("--ernn", help="model to export (default: convert the shipped example)")
    parser.add_argument("--trace", help="CSV file of samples, also the calibration (default: the shipped trace)")
    parser.add_argument("--labels", help="comma-separated class names of the outputs")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="edgernn-fw-"))
    out.mkdir(parents=True, exist_ok=True)

    trace_csv = args.trace or examples.path("basicmotions_trace.csv")
    with open(trace_csv) as f:
        trace = np.array(list(samples(f)))  # (steps, features)
    # Calibration: the trace as one recording. On a product, use your own recordings of the device.
    np.save(out / "calib.npy", trace[None])
    if args.ernn:
        m = edgernn.load(args.ernn)
        labels = args.labels.split(",") if args.labels else [str(k) for k in range(m.output_features)]
        if len(labels) != m.output_features:
            parser.error(f"--labels names {len(labels)} classes, the model has {m.output_features} outputs")
    else:
        m = edgernn.convert(examples.path("basicmotions_lstm.keras"), verify=False)
        labels = examples.ACTIVITIES
    m.save(out / "model.ernn")

    edgernn_cli = [sys.executable, "-m", "edgernn.cli"] if shutil.which("edgernn") is None else ["edgernn"]
    subprocess.run(edgernn_cli + ["export", str(out / "model.ernn"), "--quant", "int8", "--calibration",
                                  str(out / "calib.npy"), "-o", str(out / "fw"), "--name", "imu"], check=True)
    fw = out / "fw"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    sources = [str(p) for p in sorted(fw.glob("ernn_*.c"))] + [str(fw / "imu_model.c"), str(HERE / "firmware" / "main.c")]
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(fw), "-o", str(out / "loop"),
                    *sources], check=True)

    with open(trace_csv) as f:
        c_lines = subprocess.run([str(out / "loop")], stdin=f, capture_output=True, text=True, check=True).stdout.split()
    c_out = np.array([[int(v) for v in line.split(",")] for line in c_lines])  # (steps, outputs + 1)

    qm = m.quantize(trace[None], scheme="int8")
    s = qm.stream(batch_size=1)
    py_out = np.array([s.step_int8(qm.quantize_input(row[None]))[0] for row in trace])

    same = np.array_equal(c_out[:, :-1], py_out)
    said = c_out[:, -1]
    print(f"C program: {out / 'loop'} ({len(c_out)} steps)")
    changes = [0, *(np.flatnonzero(np.diff(said)) + 1), len(said)]
    for a, b in zip(changes[:-1], changes[1:]):  # what the C said, run by run
        print(f"  rows {a + 1:4d}-{b:4d}: C says {labels[said[a]]}")
    print(f"int8 outputs, C vs Python simulation: {'identical' if same else 'DIFFERENT'} at every step")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
