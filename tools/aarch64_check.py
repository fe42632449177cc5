"""The Python half of tools/aarch64_check.sh (see there).

  aarch64_check.py make DIR      host: convert the shipped example to DIR/model.ernn, write the
                                 inputs and the host's outputs (x86_*.npy)
  aarch64_check.py run DIR       emulated aarch64: load DIR/model.ernn, write aarch64_*.npy
  aarch64_check.py compare DIR   host: PASS if every output agrees within 1e-5, else FAIL (exit 1)
  aarch64_check.py aot DIR       aarch64, a fresh process after the ahead-of-time step was built:
                                 PASS if a stream steps the trace without importing Numba, equal
                                 bit for bit to DIR/aarch64_step.npy (Numba's kernel), else exit 1

Outputs: ``predict`` of the four recordings of the shipped trace (4, 100, 4), a stream stepped
one sample at a time over the whole trace (400, 4), and ``run`` over it in blocks of 50.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np

TOLERANCE = 1e-5
OUTPUTS = ("predict", "step", "run")


def stepped(model, trace: np.ndarray) -> tuple:
    """A fresh stream of ``model`` stepped one row of ``trace`` at a time: (stream, outputs (T, O))."""
    s = model.stream(batch_size=1)
    y = np.zeros((1, model.output_features), np.float32)
    steps = []
    for row in trace:
        s.step(row[None, :], out=y)
        steps.append(y[0].copy())
    return s, np.array(steps)


def outputs(model_path: Path, trace: np.ndarray) -> dict:
    import edgernn

    m = edgernn.load(model_path)
    result = {"predict": m.predict(trace.reshape(4, 100, -1))}
    s, result["step"] = stepped(m, trace)
    s.reset()
    result["run"] = np.concatenate([s.run(trace[None, k : k + 50])[0] for k in range(0, len(trace), 50)])
    return result


def main(argv) -> int:
    if len(argv) != 3 or argv[1] not in ("make", "run", "compare", "aot"):
        print(__doc__)
        return 2
    command, folder = argv[1], Path(argv[2])
    if command == "aot":
        return stepped_ahead_of_time(folder)
    if command == "make":
        import edgernn
        from edgernn import examples

        folder.mkdir(parents=True, exist_ok=True)
        edgernn.convert(examples.path("basicmotions_lstm.keras"), verify=False).save(folder / "model.ernn")
        trace = np.loadtxt(examples.path("basicmotions_trace.csv"), delimiter=",", comments="#", skiprows=6,
                           dtype=np.float32)
        np.save(folder / "trace.npy", trace)
        prefix = "x86"
    elif command == "run":
        trace = np.load(folder / "trace.npy")
        prefix = "aarch64"
    else:
        worst = 0.0
        for name in OUTPUTS:
            a, b = np.load(folder / f"x86_{name}.npy"), np.load(folder / f"aarch64_{name}.npy")
            difference = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
            worst = max(worst, difference)
            print(f"  {name:<8} {str(a.shape):<14} max |x86 - aarch64| = {difference:.2e}")
        verdict = "PASS" if worst <= TOLERANCE else "FAIL"
        print(f"{verdict}: aarch64 outputs equal x86's within {TOLERANCE:g} (worst {worst:.2e})")
        return 0 if verdict == "PASS" else 1
    if prefix == "aarch64" and platform.machine() != "aarch64":
        print(f"warning: 'run' is meant for aarch64, this is {platform.machine()}", file=sys.stderr)
    for name, array in outputs(folder / "model.ernn", trace).items():
        np.save(folder / f"{prefix}_{name}.npy", array)
    print(f"{platform.machine()}: wrote {prefix}_*.npy to {folder}")
    return 0


def stepped_ahead_of_time(folder: Path) -> int:
    """Check 3 of aarch64_check.sh: this process steps on the ahead-of-time module, never Numba."""
    import edgernn
    from edgernn.kernels import aot

    _, steps = stepped(edgernn.load(folder / "model.ernn"), np.load(folder / "trace.npy"))
    equal = np.array_equal(steps, np.load(folder / "aarch64_step.npy"))
    numba_imported = "numba" in sys.modules
    print(f"[aarch64_check] fresh process on {aot.loaded}: numba imported: {numba_imported}; "
          f"stream over the trace equal bit for bit to Numba's: {equal}")
    return 0 if equal and aot.loaded is not None and not numba_imported else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
