"""The same samples through the exported C and through Python's int8 simulation: equal outputs.

Converts the shipped BasicMotions example, exports it as int8 C (`edgernn export`, calibrated on
the shipped trace), compiles examples/firmware/main.c against the folder with the host's C
compiler, pipes the trace through it, and compares every int8 output with `m.quantize(...)`
stepped in Python. Needs a C compiler (cc/gcc/clang).

    python examples/firmware_loop.py [--out DIR]     # DIR default: a temporary folder
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

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for the model, the firmware and the program")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="edgernn-fw-"))
    out.mkdir(parents=True, exist_ok=True)

    trace_csv = examples.path("basicmotions_trace.csv")
    trace = np.loadtxt(trace_csv, delimiter=",", comments="#", skiprows=6, dtype=np.float32)  # (400, 6)
    calibration = trace.reshape(4, 100, 6)  # 4 recordings; use your own recordings of the device
    np.save(out / "calib.npy", calibration)
    m = edgernn.convert(examples.path("basicmotions_lstm.keras"), verify=False)
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
    c_out = np.array([[int(v) for v in line.split(",")] for line in c_lines])  # (400, outputs + 1)

    qm = m.quantize(calibration, scheme="int8")
    s = qm.stream(batch_size=1)
    py_out = np.array([s.step_int8(qm.quantize_input(row[None]))[0] for row in trace])

    same = np.array_equal(c_out[:, :-1], py_out)
    labels = c_out[:, -1]
    print(f"C program: {out / 'loop'} ({len(c_out)} steps)")
    for k, name in enumerate(examples.ACTIVITIES):  # the trace is 100 samples of each activity
        print(f"  {name:<10} recording: C says {examples.ACTIVITIES[labels[100 * k + 99]]} at its last sample")
    print(f"int8 outputs, C vs Python simulation: {'identical' if same else 'DIFFERENT'} at every step")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
