"""Numba's on-disk cache: a second process finds the kernels the first one compiled, and a process
after any kernel source changed compiles anew."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import edgernn
from edgernn import ir

SCRIPT = """
import json, sys, numpy as np, edgernn
assert edgernn.__file__.startswith(sys.argv[2]), edgernn.__file__  # the copy, not the checkout
from edgernn import kernels
from edgernn.kernels import gru, lstm
model = edgernn.load(sys.argv[1])
model.warmup()
s = model.stream(3)
s.step(np.zeros((3, model.input_features), np.float32))
used = [kernels.chain_step, lstm.lstm_sequence, gru.gru_sequence, kernels.bias_activation]
print(json.dumps({f.py_func.__name__: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
                  for f in used}))
"""


def test_second_process_loads_compiled_kernels_from_cache(tmp_path):
    rng = np.random.default_rng(0)
    w = lambda *shape: ir.as_weight(rng.normal(scale=0.4, size=shape))  # noqa: E731
    nodes = (
        ir.Node(ir.Recurrent("a", "lstm", 4, 2, w(2, 16), w(4, 16), w(16), return_sequences=True), ("x",), ("h1",)),
        ir.Node(ir.Recurrent("b", "gru", 3, 4, w(4, 9), w(3, 9), w(9), recurrent_bias=w(9)), ("h1",), ("h2",)),
        ir.Node(ir.Dense("d", w(3, 2), w(2)), ("h2",), ("y",)),
    )
    path = tmp_path / "m.ernn"
    edgernn.Model(ir.ModelSpec((ir.Input("x", 2),), nodes, ("y",))).save(path)
    # EDGERNN_AOT=0: this is about Numba's cache, so the fused step must not come from an
    # ahead-of-time module another test built (tests/test_aot.py covers that one).
    # A copy of the package, so that the test can edit one of its kernel files.
    package = tmp_path / "package" / "edgernn"
    shutil.copytree(Path(edgernn.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), EDGERNN_AOT="0", PYTHONPATH=str(package.parent))

    def stats():
        # cwd: not the checkout, whose edgernn `python -c` would import first.
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(path), str(package)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    first = stats()
    assert all(misses > 0 for _, misses in first.values()), first  # compiled: nothing cached yet
    second = stats()
    assert all(hits > 0 and misses == 0 for hits, misses in second.values()), second
    # window.py defines none of these kernels, but the fused step inlines its functions: Numba
    # alone keyed chain_step on chain.py and went on loading the old machine code.
    with open(package / "kernels" / "window.py", "a") as source:
        source.write("# edited\n")
    third = stats()
    assert all(misses > 0 for _, misses in third.values()), third
