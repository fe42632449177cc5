"""The top-level ``firmware_export/`` folder: its C tests pass on their own, their stored fixtures are
what the committed generator writes today, a built wheel carries the runtime so that
``edgernn export`` works from the installed package alone (no checkout), and the export lays the
int8 recurrent weights out as ernn_internal.h describes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware_export"
sys.path.insert(0, str(ROOT / "tools"))
import make_c_fixtures  # noqa: E402


def test_fixtures_are_what_the_generator_writes(tmp_path):
    """A change to the quantizer or the exporter that changes the C fixtures must come with them
    regenerated (python tools/make_c_fixtures.py), so `make test` tests today's arithmetic."""
    for path in make_c_fixtures.generate(tmp_path):
        committed = FIRMWARE / "tests" / "fixtures" / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run python tools/make_c_fixtures.py"


def test_make_test_runs_the_c_tests_with_gcc_and_clang(tmp_path):
    """`make -C firmware_export test`: every C test against every fixture, gcc and clang, sanitizers on."""
    copy = tmp_path / "firmware_export"  # a copy: the run must not leave build/ in the checkout
    shutil.copytree(FIRMWARE, copy, ignore=shutil.ignore_patterns("build", "__pycache__"))
    result = subprocess.run(["make", "-s", "-j2", "-C", str(copy), "test"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    # 2 compilers x (3 schemes + int8 without float) x 2 tests, each ending "0 failed"
    assert len(lines) == 16 and all(line.endswith(" 0 failed") for line in lines), result.stdout
    assert {line.split()[0] for line in lines} == {"gcc", "clang"}
    assert result.stderr == ""  # the sanitizers report on stderr


def test_every_package_is_listed_in_pyproject():
    """pyproject.toml lists its packages (firmware_export/ is mapped in): a new package under
    edgernn/ that is not listed would be missing from the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgernn").rglob("__init__.py")}
    assert set(config["packages"]) == found | {"edgernn.firmware_export", "edgernn.firmware_export.templates"}
    assert config["package-dir"] == {"edgernn.firmware_export": "firmware_export"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the checkout (the build writes build/ and egg-info beside it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                 ".pytest_cache", ".hypothesis", "dist"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             "-w", str(tmp / "dist"), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = (tmp / "dist").glob("edgernn-*.whl")
    return built


def test_wheel_ships_the_runtime_and_not_its_tests(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    runtime = {n.split("/")[-1] for n in names if n.startswith("edgernn/firmware_export/") and n.count("/") == 2}
    assert {"ernn.h", "ernn_internal.h", "ernn_lstm.c", "ernn_gru.c", "ernn_model.c", "README.md"} <= runtime
    assert {"edgernn/firmware_export/templates/Makefile.in", "edgernn/firmware_export/templates/testbench.c.in",
            "edgernn/firmware_export/templates/CMakeLists.txt.in"} <= names
    assert not [n for n in names if n.startswith("edgernn/firmware_export/tests/")]  # C tests stay in the source


def test_export_works_from_the_wheel_alone(wheel, tmp_path):
    """The wheel in a fresh venv (its dependencies taken from this one, but no edgernn from the
    checkout): convert the shipped example, export int8 firmware with its testbench, build it."""
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    # numpy, numba, click, h5py from this venv's site-packages: a .pth line adds the folder, but not
    # the editable install of the checkout (a .pth inside it is not processed from there).
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import edgernn.export as e; print(e.__file__); print(e.runtime_folder())"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(fresh)) for line in where.stdout.split()), where.stdout

    examples = ROOT / "edgernn" / "examples"
    edgernn_cli = fresh / "bin" / "edgernn"
    model = tmp_path / "m.ernn"
    for command in ([str(edgernn_cli), "convert", str(examples / "basicmotions_lstm.keras"), "-o", str(model),
                     "--no-verify"],
                    [str(edgernn_cli), "export", str(model), "--quant", "int8", "--calibration",
                     str(examples / "basicmotions_trace.csv"), "-o", str(tmp_path / "fw"), "--name", "net", "--testbench"]):
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    build = subprocess.run(["make", "-s", "-C", str(tmp_path / "fw"), "testbench"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    assert (tmp_path / "fw" / "testbench").is_file()


def test_tiles_are_the_layout_ernn_internal_h_describes():
    """Row r of gate g, column k of an int8 matrix (2 gates of 3 units, 5 columns) is at byte
    16 (b C + c) + 4 i + j, b = (4 g + r) // 4 (each gate padded to 4 rows), i = its row in the
    block, c = k // 4, j = k % 4, C = 2 column blocks; the value is w + 128; padding is 128 (w = 0)."""
    from edgernn.export import padded_rows, tiles

    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, size=(6, 5)).astype(np.int8)
    got = tiles(w, gates=2)
    expected = np.full(2 * 4 * 8, 128, np.uint8)
    for g in range(2):
        for r in range(3):
            for k in range(5):
                row = 4 * g + r
                expected[16 * ((row // 4) * 2 + k // 4) + 4 * (row % 4) + k % 4] = int(w[3 * g + r, k]) + 128
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert padded_rows(np.arange(6, dtype=np.int32), 2, fill=1).tolist() == [0, 1, 2, 1, 3, 4, 5, 1]
