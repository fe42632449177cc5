"""The line before edgernn's kernels compile (edgernn.kernels._notice): said once, before the wait,
on stderr without any logging set up; not said when the kernels load from Numba's cache; silenced
by the "edgernn" logger's level; ``edgernn: <message>`` from the command.

One process compiles the fused step from an empty cache (10-20 s); the others load it, or compile
only the masking kernel (a fraction of a second), each in a cache directory of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgernn
from edgernn import ir
from edgernn.kernels._notice import MESSAGE

KERNELS = Path(edgernn.__file__).parent / "kernels"

# A first step from an empty cache. A filter on the logger (it does not change what is printed)
# notes whether the fused step's compiled code was in the cache yet when the line was logged:
# Numba writes it when the compile ends, so it must not be.
FIRST_STEP = """
import glob, json, logging, os, sys
import numpy as np
import edgernn
from edgernn import kernels

cache = os.environ["NUMBA_CACHE_DIR"]
seen = []

def note(record):
    seen.append(bool(glob.glob(os.path.join(cache, "**", "chain._chain_step-*.nbc"), recursive=True)))
    return True

logging.getLogger("edgernn.kernels").addFilter(note)
model = edgernn.load(sys.argv[1])
s = model.stream(1)
s.step(np.zeros((1, model.input_features), np.float32))
x = np.zeros((2, 3), np.float32)
kernels.masking_forward(x, np.float32(0.0), np.empty_like(x), np.empty(2, np.bool_))  # a second compile
step = kernels.chain_step
print(json.dumps({"compiled_when_logged": seen, "misses": sum(step.stats.cache_misses.values()),
                  "hits": sum(step.stats.cache_hits.values()), "cache_path": step.stats.cache_path}))
"""

# Only the masking kernel (compiles in well under a second), after ``SETUP``.
MASKING_ONLY = """
import json, logging, sys
import numpy as np
{setup}
from edgernn import kernels
x = np.zeros((2, 3), np.float32)
kernels.masking_forward(x, np.float32(0.0), np.empty_like(x), np.empty(2, np.bool_))
print(json.dumps({{"misses": sum(kernels.masking_forward.stats.cache_misses.values())}}))
"""


def _python(code, *args, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), EDGERNN_AOT="0")  # Numba's kernel, not a built module
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _chain_step_files(directory):
    return sorted((p.name, p.stat().st_mtime_ns) for p in directory.glob("chain._chain_step-*"))


def _notices(stderr):
    return [line for line in stderr.splitlines() if MESSAGE in line]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    w = lambda *shape: ir.as_weight(rng.normal(scale=0.4, size=shape))  # noqa: E731
    nodes = (ir.Node(ir.Recurrent("a", "lstm", 4, 3, w(3, 16), w(4, 16), w(16)), ("x",), ("h",)),
             ir.Node(ir.Dense("d", w(4, 2), w(2)), ("h",), ("y",)))
    path = tmp_path_factory.mktemp("notice") / "m.ernn"
    edgernn.Model(ir.ModelSpec((ir.Input("x", 3),), nodes, ("y",))).save(path)
    return path


def test_first_step_says_once_before_compiling_and_a_warm_cache_says_nothing(model_path, tmp_path):
    cache = tmp_path / "numba"
    package_cache = _chain_step_files(KERNELS / "__pycache__")
    first, stderr = _python(FIRST_STEP, model_path, cache=cache)
    # Numba really compiled, into NUMBA_CACHE_DIR (it comes before the package's own __pycache__).
    assert first["misses"] == 1 and first["hits"] == 0, first
    assert Path(first["cache_path"]).parent == cache, first
    assert _chain_step_files(KERNELS / "__pycache__") == package_cache
    # Once, as the whole line (no logging set up: Python's last-resort handler), for two compiles.
    assert stderr.splitlines().count(MESSAGE) == 1 and len(_notices(stderr)) == 1, stderr
    assert first["compiled_when_logged"] == [False], "logged after the compile, not before it"

    warm, stderr = _python(FIRST_STEP, model_path, cache=cache)
    assert warm["misses"] == 0 and warm["hits"] == 1, warm
    assert stderr == "", stderr

    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), EDGERNN_AOT="0")
    done = subprocess.run([sys.executable, "-m", "edgernn.cli", "run", str(model_path)], input="1,2,3\n4,5,6\n",
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2, done.stderr
    assert done.stderr == "", done.stderr


def test_silenced_by_the_edgernn_logger_level(tmp_path):
    setup = 'logging.getLogger("edgernn").setLevel(logging.ERROR)'
    silenced, stderr = _python(MASKING_ONLY.format(setup=setup), cache=tmp_path / "silenced")
    assert silenced["misses"] == 1  # it did compile
    assert stderr == "", stderr
    said, stderr = _python(MASKING_ONLY.format(setup=""), cache=tmp_path / "said")
    assert said["misses"] == 1 and stderr.splitlines() == [MESSAGE], stderr


def test_the_command_prints_it_with_its_prefix(model_path, tmp_path):
    """The command's handler (set up by the ``edgernn`` group, here through ``info``, which
    compiles nothing) prints ``edgernn: <message>``, once, and nothing else of it."""
    setup = ("from edgernn import cli\n"
             f"cli.main(['info', {str(model_path)!r}], standalone_mode=False)")
    said, stderr = _python(MASKING_ONLY.format(setup=setup), cache=tmp_path / "cli")
    assert said["misses"] == 1 and stderr.splitlines() == [f"edgernn: {MESSAGE}"], stderr
