"""Soak: a sensor loop that runs for a long time keeps flat memory and gives the same answers.

The shipped example model (LSTM(16) -> Dense(4) on 6 features) streams 10^6 steps (10^7 with
``-m slow``), one ``step`` at a time with batch 1 as a sensor loop does, in chunks of 10^5 whose
inputs are drawn from a seeded generator. Checked:

* memory is flat: the Python heap (``sys.getallocatedblocks``: every live Python object) and the
  process RSS, sampled after every chunk, do not grow from the first chunk to the last beyond a
  small bound; and tracemalloc, switched on for one whole chunk (it slows each step several fold,
  so not for all of them), sees no net allocation left behind by 10^5 steps;
* the answers are deterministic: the same inputs through ``run`` in blocks of 10^4 on two fresh
  streams give bit-identical outputs, and the step-by-step outputs agree with them to float32
  rounding (the two paths sum in different orders) at every one of the 10^6 steps, with no drift;
  replaying a chunk from a ``get_state`` snapshot into a fresh stream gives that chunk's outputs
  bit for bit.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import edgernn

MODEL = Path(edgernn.__file__).parent / "examples" / "basicmotions_lstm.keras"
CHUNK = 100_000
BLOCK = 10_000
BLOCKS_GROWTH = 1000     # Python memory blocks the heap may grow from the first chunk to the last
TRACED_GROWTH = 64 << 10  # bytes a traced chunk of 10^5 steps may leave behind
RSS_GROWTH = 16 << 20


def _inputs(k: int, features: int) -> np.ndarray:
    """Chunk ``k`` of the input stream: (CHUNK, 1, features), the same on every call."""
    return np.random.default_rng(k).normal(0.0, 1.0, (CHUNK, 1, features)).astype(np.float32)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _run_in_blocks(model, chunks: int, features: int) -> list[np.ndarray]:
    """Every chunk's outputs (CHUNK, outputs), through ``run`` on blocks of BLOCK steps."""
    stream = model.stream(1)
    out = []
    for k in range(chunks):
        x = _inputs(k, features)[:, 0][None]  # (1, CHUNK, features)
        out.append(np.concatenate([stream.run(x[:, a:a + BLOCK]) for a in range(0, CHUNK, BLOCK)], axis=1)[0])
    return out


@pytest.fixture(scope="module")
def model():
    return edgernn.convert(MODEL, verify=False).warmup()


@pytest.mark.parametrize("steps", [10**6, pytest.param(10**7, marks=pytest.mark.slow)])
def test_soak(model, steps):
    features, outputs = model.input_features, model.output_features
    chunks = steps // CHUNK
    reference = _run_in_blocks(model, chunks, features)
    again = _run_in_blocks(model, chunks, features)
    for k in range(chunks):
        np.testing.assert_array_equal(again[k], reference[k], err_msg=f"run, chunk {k}")
    del again

    stream = model.stream(1)
    ys = np.empty((CHUNK, 1, outputs), np.float32)
    blocks, rss, snapshot, digest, traced = [], [], None, None, None
    middle = chunks // 2
    elapsed = 0.0
    for k in range(chunks):
        x = _inputs(k, features)
        if k == middle:
            snapshot = stream.get_state()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        for t in range(CHUNK):
            stream.step(x[t], out=ys[t])
        if k == middle:
            traced = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
        else:
            elapsed += time.perf_counter() - start
        if k == middle:
            digest = hashlib.sha256(ys.tobytes()).hexdigest()
        np.testing.assert_allclose(ys[:, 0], reference[k], rtol=1e-5, atol=1e-6, err_msg=f"step vs run, chunk {k}")
        del x
        blocks.append(sys.getallocatedblocks())
        rss.append(_rss())
    timed = steps - CHUNK
    print(f"\n{steps} steps; {elapsed / timed * 1e6:.1f} us a step; Python blocks {blocks[0]} -> {blocks[-1]}, "
          f"RSS {rss[0] >> 20} -> {rss[-1] >> 20} MiB, {traced} bytes left by a traced chunk")
    assert blocks[-1] - blocks[0] < BLOCKS_GROWTH, blocks
    assert max(rss) - rss[0] < RSS_GROWTH, [r >> 20 for r in rss]
    assert traced < TRACED_GROWTH, traced
    assert np.isfinite(ys).all()

    replay = model.stream(1)
    replay.set_state(snapshot)
    x = _inputs(middle, features)
    for t in range(CHUNK):
        replay.step(x[t], out=ys[t])
    assert hashlib.sha256(ys.tobytes()).hexdigest() == digest
