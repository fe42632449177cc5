"""The C runtime against bad arguments and hostile input (issue "Hostile files, bad input").

* ``firmware_export/tests/test_status.c`` calls every public function of ``ernn.h`` with each bad
  argument (NULL pointers, short, misaligned and overlapping buffers, wrong input and output
  lengths, inconsistent models, the wrong scheme) and checks the exact status, that a refused call
  writes nothing, and that a stream interleaved with refused calls ends bit for bit where a clean
  one ends; built with gcc and clang under ASan/UBSan for a model of every scheme.
* ``firmware_export/tests/fuzz_testbench.c`` runs libFuzzer (clang
  ``-fsanitize=fuzzer,address,undefined``) on the testbench's input path, bounded in time, from a
  seed corpus made here from seeded test vectors.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_firmware import SCHEMES, WARN, c_sources, expected, exported, run_testbench, sanitized_testbench, segments

__all__ = ["exported"]  # the fixture, shared with test_firmware.py

C_TESTS = Path(__file__).resolve().parents[1] / "firmware_export" / "tests"
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
# Per model, in CI too: some 20 000 to 50 000 inputs each. EDGERNN_FUZZ_SECONDS=300 for a long run by hand.
FUZZ_SECONDS = int(os.environ.get("EDGERNN_FUZZ_SECONDS", "10"))


def compile_c(compiler, folder, source, binary, *flags):
    result = subprocess.run([compiler, *WARN, *flags, "-I", str(folder), "-o", str(binary), str(source),
                             *c_sources(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


STATUS_CASES = [pytest.param("stacked", s, c, (), id=f"stacked-{s}-{c}") for s in SCHEMES for c in ("gcc", "clang")] + [
    pytest.param("masked", "int8", "gcc", (), id="masked-int8-gcc"),
    *[pytest.param("cnn_lstm", s, "gcc", (), id=f"cnn_lstm-{s}-gcc") for s in SCHEMES],
    pytest.param("cnn_depthwise", "int8", "clang", (), id="cnn_depthwise-int8-clang"),
    pytest.param("cnn_depthwise", "float32", "gcc", (), id="cnn_depthwise-float32-gcc"),
    pytest.param("cnn_global_max", "int8", "gcc", ("-DERNN_NO_FLOAT",), id="cnn_global_max-int8-gcc-ERNN_NO_FLOAT"),
    pytest.param("stacked", "int8", "gcc", ("-DERNN_NO_FLOAT",), id="stacked-int8-gcc-ERNN_NO_FLOAT"),
    pytest.param("embedding_masked", "int8", "gcc", ("-DERNN_NO_FLOAT",), id="embedding_masked-int8-gcc-ERNN_NO_FLOAT"),
    pytest.param("embedding_masked", "int8-weights", "clang", (), id="embedding_masked-int8-weights-clang"),
    *[pytest.param("branches_concat", s, "gcc", (), id=f"branches_concat-{s}-gcc") for s in SCHEMES],
    pytest.param("residual_lstm", "int8", "clang", ("-DERNN_NO_FLOAT",), id="residual_lstm-int8-clang-ERNN_NO_FLOAT"),
    pytest.param("merge_modes", "float32", "clang", (), id="merge_modes-float32-clang"),
    pytest.param("merge_products", "int8", "gcc", ("-DERNN_NO_FLOAT",), id="merge_products-int8-gcc-ERNN_NO_FLOAT")]


@pytest.mark.parametrize("key, scheme, compiler, defines", STATUS_CASES)
def test_every_bad_argument_has_its_status(exported, key, scheme, compiler, defines, tmp_path):
    _, folder = exported(key, scheme)
    binary = tmp_path / "test_status"
    compile_c(compiler, folder, C_TESTS / "test_status.c", binary, *SANITIZE, *defines)
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "0 failed\n", result.stdout + result.stderr
    assert result.stderr == ""  # sanitizers report on stderr


@pytest.mark.parametrize("scheme", ["int8-weights", "float32"])
def test_nan_input_reaching_softmax_is_defined_and_bit_exact(exported, scheme, tmp_path):
    """The fuzzer's first find: a NaN feature made ernn_exp_f convert NaN to int32 (undefined in C).
    Now NaN flows through as in the simulation, bit for bit, with UBSan watching."""
    qmodel, folder = exported("lstm_softmax", scheme)
    rows = np.array([[np.nan, 1.0, 2.0], [1.0, -np.inf, 3.0], [np.inf, 0.5, -1.0]], np.float32)
    got = np.frombuffer(run_testbench(sanitized_testbench(folder, tmp_path), rows), "<f4")
    want = expected(qmodel, [rows], int8=False).reshape(-1)
    assert np.isnan(got).all()
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def seed_corpus(folder, features, int8, vocab=0):
    """A few testbench inputs from the seeded test vectors: mode byte, then rows (with a reset row)."""
    folder.mkdir()
    _, rows = segments(features, seed=4, vocab=vocab)
    data = rows.astype("<f4").tobytes()
    row = 4 * features
    starts = [0, 129 * row]  # the second one takes in the all-NaN reset row
    for i, start in enumerate(starts):
        for mode in (b"\0", b"\1") if int8 else (b"\0",):
            (folder / f"seed{i}{mode[0]}").write_bytes(mode + data[start:start + 8 * row])


# lstm_softmax: NaN and Inf reach a softmax (float schemes); stacked: every cell kind; masked: Masking;
# cnn_*: Conv1D, pooling, BatchNormalization, a folded Normalization (NaN through max pooling, a ring);
# embedding_masked: the code path (codes out of range, NaN and fractions refused); branches_concat,
# residual_lstm, merge_products: graphs (branches kept in slots, merged)
@pytest.mark.parametrize("key, scheme", [("lstm_softmax", s) for s in SCHEMES]
                         + [("stacked", "int8"), ("stacked", "float32"), ("masked", "int8"), ("cnn_depthwise", "int8"),
                            ("cnn_lstm", "float32"), ("embedding_masked", "int8"), ("embedding_masked", "float32"),
                            ("branches_concat", "int8"), ("residual_lstm", "float32"), ("merge_products", "int8")])
def test_fuzz_testbench_input_path(exported, key, scheme, tmp_path):
    qmodel, folder = exported(key, scheme)
    fuzzer = tmp_path / "fuzz"
    compile_c("clang", folder, C_TESTS / "fuzz_testbench.c", fuzzer, "-O1", "-g",
              "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all")
    corpus = tmp_path / "corpus"
    seed_corpus(corpus, qmodel.spec.features, scheme == "int8", qmodel.spec.vocab)
    result = subprocess.run([str(fuzzer), f"-max_total_time={FUZZ_SECONDS}", "-seed=1", "-timeout=10",
                             f"-max_len={1 + 4 * qmodel.spec.features * 64}", "-print_final_stats=1",
                             f"-artifact_prefix={tmp_path}/", str(corpus)],
                            capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    crashes = sorted(p.name for p in tmp_path.iterdir() if re.match(r"(crash|leak|timeout|oom)-", p.name))
    assert result.returncode == 0 and not crashes, result.stderr[-4000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", result.stderr).group(1))
    assert runs > 1000, result.stderr[-2000:]  # the fuzzer ran, not just the seeds
