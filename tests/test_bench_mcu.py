"""tools/bench/mcu.py: the exported int8 C on an emulated Cortex-M0+ (unicorn). Its outputs equal the
Python simulation's bit for bit, the instruction counts are positive integers that the calibration
loop and the per-instruction hook agree with, and a wrong output makes the benchmark fail. Timings
(instruction counts) are never asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("unicorn")  # the test extra installs it; with EDGERNN_NO_SKIPS=1 (CI) a skip fails
pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc is not installed (CI installs it)")


@pytest.fixture
def mcu(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    from bench import mcu

    return mcu


def test_quick_command_prints_the_table():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench" / "mcu.py"), "--quick"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| BasicMotions")]
    assert len(rows) == 1, done.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:3] == ["cortex-m0plus", "-O2"]
    per_step, low, high = re.fullmatch(r"([\d,]+) \(([\d,]+)-([\d,]+)\)", cells[3]).groups()
    assert all(int(v.replace(",", "")) > 0 for v in (per_step, low, high))
    assert "arm-none-eabi-gcc" in done.stdout and "Instructions, not cycles" in done.stdout


def test_emulated_outputs_equal_the_simulation(mcu):
    import edgernn
    from edgernn import examples

    [result] = mcu.bench(("basicmotions",), ("cortex-m0plus",), ("-O2",), steps=4, check_count=True)
    # the simulation, computed here on its own from the same inputs the benchmark stepped
    trace = np.loadtxt(examples.path("basicmotions_trace.csv"), delimiter=",", skiprows=6, dtype=np.float32)
    qmodel = edgernn.convert(str(examples.path("basicmotions_lstm.keras")), verify=False).quantize(
        trace.reshape(4, 100, 6), "int8")
    x = trace[[0, 1, 100, 101]]
    expected = qmodel.stream(1).run_int8(qmodel.quantize_input(x)[None])[0]
    assert result["outputs"].dtype == np.int8 and np.array_equal(result["outputs"], expected)
    assert result["code_hook_checked"] and result["calibration"] == 2 * mcu.CALIBRATION_LOOPS
    for key in ("total_instructions", "overhead_instructions", "step_min", "step_max", "flash", "model_flash",
                "ram", "stack", "state_scratch"):
        assert isinstance(result[key], int) and result[key] > 0, (key, result[key])
    assert result["total_instructions"] > result["overhead_instructions"]
    assert result["step_min"] <= result["instructions_per_step"] <= result["step_max"]


def test_a_wrong_output_fails_the_benchmark(mcu, tmp_path):
    """The bit-exact check can fail: one output off by one is reported."""
    model = mcu.load_model("basicmotions", 2)
    mcu.export_model(model, tmp_path / model.key)
    expected = model.qmodel.stream(1).run_int8(model.qmodel.quantize_input(model.x)[None])[0].copy()
    expected[1, 0] += 1
    with pytest.raises(mcu.BenchError, match=r"differ from the simulation's at \(step, output\) \[\[1, 0\]\]"):
        mcu.measure(model, "cortex-m0plus", "-O2", tmp_path, expected)
