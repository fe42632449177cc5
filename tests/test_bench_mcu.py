"""tools/bench/mcu.py: the exported int8 C on an emulated Cortex-M0+ and Cortex-M4 (unicorn). Its
outputs equal the Python simulation's bit for bit (every cell kind, on each matrix-vector kernel of
ernn_internal.h), the instruction counts are positive integers that the calibration loop and the
per-instruction hook agree with, and a wrong output or a build without its kernel makes the
benchmark fail. Timings (instruction counts) are never asserted."""

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


# Every cell kind with unit and feature counts that are not multiples of 4 (padded tiles), Masking,
# both GRU candidate forms: test_firmware.py's models, on each kernel of ernn_internal.h -- the DSP one
# (M4), the ARMv6-M one with 4 rows a pass (M0+ -O2) and with 2 (M0+ -Os, where gcc leaves the high
# registers unused).
@pytest.mark.parametrize("core, opt", [("cortex-m4", "-O2"), ("cortex-m0plus", "-O2"), ("cortex-m0plus", "-Os")])
@pytest.mark.parametrize("key", ["stacked", "masked", "gru_reset_after"])
def test_every_cell_kind_bit_exact_on_each_kernel(mcu, key, core, opt, tmp_path):
    from test_firmware import MODELS, chain, data

    features, layers = MODELS[key]
    qmodel = chain(layers, features, seed=len(key)).quantize(data(features, seed=1), "int8")
    x = data(features, seed=7, steps=40, batch=1)[0]
    model = mcu.BenchModel(key, key, qmodel, x)
    mcu.export_model(model, tmp_path / key)
    expected = qmodel.stream(1).run_int8(qmodel.quantize_input(x)[None])[0]
    assert len(np.unique(expected)) > 10  # outputs that move, not a constant a broken step could also give
    result = mcu.measure(model, core, opt, tmp_path, expected)
    assert np.array_equal(result["outputs"], expected)


def test_a_build_without_its_kernel_fails_the_benchmark(mcu):
    """The kernel check can fail: a Cortex-M4 build without SMLAD, a Cortex-M0+ build without ernn_dot4."""
    class Built:
        mnemonics, symbols = {"ldr", "mla", "uxtb16"}, {"ernn_step_int8": 0}

    with pytest.raises(mcu.BenchError, match="not the DSP kernel"):
        mcu.check_kernel(Built(), "cortex-m4", "-O2")
    with pytest.raises(mcu.BenchError, match="not the ARMv6-M kernel"):
        mcu.check_kernel(Built(), "cortex-m0plus", "-O2")
    Built.mnemonics, Built.symbols = {"smlad", "uxtb16"}, {"ernn_dot4": 1}
    mcu.check_kernel(Built(), "cortex-m4", "-O2")
    mcu.check_kernel(Built(), "cortex-m0plus", "-Os")


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m0plus"])
def test_cnn_lstm_model_bit_exact(mcu, core):
    """Model (f), two causal Conv1D(16, 5) before an LSTM(32): built and run as the table runs it, on
    each core's kernel; its outputs equal the simulation's, stepped here on its own (the convolutions'
    windows filling over the first steps included)."""
    [result] = mcu.bench(("f",), (core,), ("-Os",), steps=6)
    model = mcu.load_model("f", 6)
    assert [layer.kind for layer in model.qmodel.spec.layers] == ["conv", "conv", "lstm", "dense"]
    expected = model.qmodel.stream(1).run_int8(model.qmodel.quantize_input(model.x)[None])[0]
    assert len(np.unique(expected)) > 6  # outputs that move
    assert result["outputs"].shape == (6, 4) and np.array_equal(result["outputs"], expected)
    assert result["step_min"] <= result["instructions_per_step"] <= result["step_max"]


def test_per_function_counts_of_the_cnn_lstm(mcu):
    """--per-function on model (f) at -Os on the Cortex-M0+, where gcc's switch tables call libgcc's
    __gnu_thumb1_case_uqi (a BL that does not return to the link register): the functions' own counts
    add up to ernn_step_int8's (checked by the benchmark), which is the step's count less the harness
    loop around the call; each convolution is one call of ernn_conv_step_q, the second (16 channels
    in) costing more than the first (6 in); a leaf function's own count is its entry-to-return count."""
    [result] = mcu.bench(("f",), ("cortex-m0plus",), ("-Os",), steps=4, per_function=True)
    rows = {row["function"]: row for row in result["functions"]}
    step = rows["ernn_step_int8"]
    per_step = result["instructions_per_step"]
    assert step["calls"] == 1 and per_step - 40 < step["inclusive"] < per_step
    assert sum(row["own"] for row in rows.values()) == step["inclusive"]
    conv = rows["ernn_conv_step_q"]
    assert conv["calls"] == 2 and 0 < conv["per_call"][0] < conv["per_call"][1]
    assert sum(conv["per_call"]) == conv["inclusive"] < step["inclusive"]
    assert rows["ernn_dot4"]["own"] == rows["ernn_dot4"]["inclusive"] > 0
    assert rows["__gnu_thumb1_case_uqi"]["calls"] == 0 and rows["__gnu_thumb1_case_uqi"]["own"] > 0
    assert "| `ernn_conv_step_q` | 2 |" in mcu.function_markdown(result)
