"""The exported C runtime: it compiles cleanly with gcc and clang, runs clean under ASan/UBSan, and
computes bit for bit what the Python simulation (``Model.quantize``) computes, for every cell type,
option and scheme, over stateful runs with resets; it cross-compiles for Cortex-M0+ (soft float,
no floating-point routine linked in int8) and Cortex-M4 (hard float). Bad arguments and the fuzzer:
tests/test_firmware_hostile.py."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

import edgernn
from edgernn import examples, ir
from edgernn.errors import InvalidInput
from edgernn.export import RUNTIME_SOURCES, export

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off"]
HAVE_CLANG = shutil.which("clang") is not None
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None
SCHEMES = ("int8", "int8-weights", "float32")


def _w(rng, *shape, scale=0.5):
    return ir.as_weight(rng.normal(scale=scale, size=shape))


def _recurrent(rng, name, cell, units, features, **options):
    gates = ir.CELL_GATES[cell]
    extra = {}
    if cell == "gru" and options.get("reset_after", True):
        extra["recurrent_bias"] = _w(rng, gates * units, scale=0.2)
    return ir.Recurrent(name, cell, units, features, _w(rng, features, gates * units), _w(rng, units, gates * units),
                        _w(rng, gates * units, scale=0.2), return_sequences=True, **extra, **options)


def chain(layers, features, seed=0, return_sequences=True):
    """A chain model: ``layers`` = [("lstm", units, options) | ("dense", units, activation) | ("act", activation)
    | ("mask", mask_value) | ("conv", filters, kernel_size, options) | ("pool", kind, pool_size, strides)
    | ("gpool", kind) | ("bn",) | ("norm",) | ("embed", vocab, dim, mask_zero)]; recurrent layers after a
    Masking (or an Embedding with mask_zero, first: a model of integer codes) read its mask. A graph:
    ("from", i) makes the next layer read entry i's output (-1: the model's input), and ("merge", mode, i, j)
    joins entries i and j (mode "add", "subtract", "average", ... or "concat": Concatenate over features)."""
    rng = np.random.default_rng(seed)
    nodes, current, width, mask = [], "x", features, None
    model_input = ir.Input("x", features)
    widths = {"x": features}
    for index, layer in enumerate(layers):
        name = f"l{index}"
        widths[current] = width
        if layer[0] == "from":
            current = "x" if layer[1] < 0 else f"l{layer[1]}"
            width = widths[current]
            continue
        if layer[0] == "merge":
            reads = tuple("x" if i < 0 else f"l{i}" for i in layer[2:])
            op = ir.Concatenate(name) if layer[1] == "concat" else ir.Merge(name, layer[1])
            nodes.append(ir.Node(op, reads, (name,)))
            current = name
            width = sum(widths[r] for r in reads) if layer[1] == "concat" else widths[reads[0]]
            continue
        if layer[0] == "embed":  # codes (batch, T) of any T
            model_input = ir.Input("x", 24, rank=2, dtype="int")
            mask = name + "_keep" if layer[3] else None
            nodes.append(ir.Node(ir.Embedding(name, _w(rng, layer[1], layer[2], scale=1.0), layer[3]), (current,),
                                 (name, mask) if mask else (name,)))
            current, width = name, layer[2]
            continue
        if layer[0] == "mask":
            mask = name + "_keep"
            nodes.append(ir.Node(ir.Masking(name, layer[1]), (current,), (name, mask)))
            current = name
            continue
        if layer[0] == "dense":
            op = ir.Dense(name, _w(rng, width, layer[1]), _w(rng, layer[1], scale=0.3), layer[2])
        elif layer[0] == "act":
            op = ir.Activation(name, layer[1])
        elif layer[0] == "conv":
            groups = layer[3].get("groups", 1)
            op = ir.Conv1D(name, _w(rng, layer[2], width // groups, layer[1]), _w(rng, layer[1], scale=0.3), **layer[3])
        elif layer[0] in ("pool", "gpool"):
            op = ir.Pooling1D(name, layer[1], *layer[2:], global_pool=layer[0] == "gpool")
        elif layer[0] == "bn":  # not folded: BatchNormalization after a Conv1D with an activation
            op = ir.Affine(name, ir.as_weight(rng.uniform(0.5, 2.0, width)), _w(rng, width, scale=0.5))
        elif layer[0] == "norm":  # a Normalization of off-centre, spread-out inputs
            op = ir.Standardize(name, ir.as_weight(rng.normal(size=width)), ir.as_weight(rng.uniform(0.5, 3.0, width)))
        else:
            op = _recurrent(rng, name, layer[0], layer[1], width, **layer[2])
        width = getattr(op, "output_size", width)
        if isinstance(op, (ir.Conv1D, ir.Pooling1D)):
            mask = None  # a Masking's mask is not read past another time axis: the Conv1D reads its zeros
        reads_mask = mask if isinstance(op, ir.Recurrent) else None
        nodes.append(ir.Node(op, (current,), (name,), mask=reads_mask))
        current = name
    if not return_sequences:  # the last recurrent layer returns its last step only
        last = max(i for i, n in enumerate(nodes) if isinstance(n.op, ir.Recurrent))
        op = nodes[last].op
        import dataclasses

        nodes[last] = ir.Node(dataclasses.replace(op, return_sequences=False), nodes[last].inputs, nodes[last].outputs)
    return edgernn.Model(ir.ModelSpec((model_input,), tuple(nodes), (current,), {"format": "test"}))


# Every cell type and option the export supports, small enough to build and run in a second each.
MODELS = {
    "lstm_softmax": (3, [("lstm", 8, {}), ("dense", 4, "softmax")]),
    "lstm_hard_sigmoid": (4, [("lstm", 6, {"recurrent_activation": "hard_sigmoid", "activation": "softsign"}),
                              ("dense", 3, "linear")]),
    "gru_reset_after": (5, [("gru", 7, {"reset_after": True}), ("dense", 2, "sigmoid")]),
    "gru_reset_before": (5, [("gru", 7, {"reset_after": False}), ("dense", 3, "tanh")]),
    "simple_tanh": (3, [("simple", 9, {}), ("dense", 2, "relu")]),
    "simple_relu": (3, [("simple", 5, {"activation": "relu"}), ("dense", 2, "linear")]),
    "stacked": (6, [("lstm", 8, {}), ("gru", 6, {"reset_after": False}), ("simple", 5, {}),
                    ("dense", 7, "relu"), ("dense", 4, "linear"), ("act", "softmax")]),
    "heads": (4, [("gru", 6, {}), ("dense", 5, "tanh"), ("act", "relu"), ("dense", 3, "hard_sigmoid"),
                  ("act", "sigmoid")]),
    "masked": (3, [("mask", 0.0), ("lstm", 6, {}), ("gru", 5, {"zero_output_for_mask": True}),
                   ("simple", 4, {}), ("dense", 2, "linear")]),
    # convolutional front-ends: steps that emit no row return the last one again
    "cnn_lstm": (3, [("conv", 8, 3, {"padding": "causal", "activation": "relu"}),
                     ("conv", 8, 3, {"padding": "valid", "strides": 2}), ("pool", "max", 2, 2), ("lstm", 8, {}),
                     ("dense", 3, "linear")]),
    "cnn_depthwise": (4, [("norm",), ("conv", 4, 3, {"padding": "causal", "dilation_rate": 2, "groups": 4,
                                                     "activation": "tanh"}), ("bn",),
                          ("conv", 6, 2, {"padding": "valid", "groups": 2, "activation": "relu"}),
                          ("pool", "average", 3, 2), ("gru", 6, {}), ("gpool", "average"), ("dense", 3, "softmax")]),
    "cnn_global_max": (3, [("mask", 0.0), ("conv", 5, 1, {"activation": "sigmoid"}), ("simple", 5, {}),
                           ("gpool", "max"), ("dense", 2, "linear")]),
    # graphs that fork and merge: a residual LSTM stack; two causal Conv1D branches concatenated;
    # Subtract and Average, and a Concatenate of inputs at one scale (a copy in the int8 C); Multiply,
    # Maximum and Minimum
    "residual_lstm": (3, [("lstm", 16, {}), ("lstm", 16, {}), ("merge", "add", 0, 1), ("dense", 3, "linear")]),
    "branches_concat": (3, [("conv", 6, 3, {"padding": "causal", "activation": "relu"}), ("from", -1),
                            ("conv", 4, 2, {"padding": "causal", "dilation_rate": 2}), ("merge", "concat", 0, 2),
                            ("lstm", 8, {}), ("dense", 3, "linear")]),
    "strided_branches": (3, [("conv", 6, 3, {"padding": "valid", "strides": 2, "activation": "relu"}), ("from", -1),
                             ("pool", "max", 3, 2), ("merge", "concat", 0, 2), ("gru", 6, {}), ("dense", 3, "linear")]),
    "merge_modes": (4, [("gru", 6, {}), ("dense", 6, "tanh"), ("merge", "subtract", 1, 0), ("simple", 6, {}),
                        ("merge", "average", 3, 2), ("merge", "concat", 4, 4), ("dense", 2, "linear")]),
    "merge_products": (4, [("gru", 6, {}), ("dense", 6, "tanh"), ("merge", "multiply", 1, 0), ("simple", 6, {}),
                           ("merge", "maximum", 3, 2), ("merge", "minimum", 4, 1), ("dense", 2, "linear")]),
    # integer codes, one a step (features 1): code 0 masks the recurrent layers' step
    "embedding_masked": (1, [("embed", 11, 6, True), ("lstm", 6, {}), ("gru", 5, {"zero_output_for_mask": True}),
                             ("dense", 3, "linear")]),
}


def vocab_of(key):
    """The vocabulary of a model of integer codes in MODELS (an Embedding first), else 0."""
    first = MODELS[key][1][0]
    return first[1] if first[0] == "embed" else 0


def data(features, seed, steps=120, batch=6, vocab=0):
    """Inputs (batch, steps, features); with ``vocab``, integer codes (batch, steps), one in ten 0."""
    rng = np.random.default_rng(seed)
    if vocab:
        codes = rng.integers(1, vocab, size=(batch, steps))
        codes[rng.random((batch, steps)) < 0.1] = 0
        return codes.astype(np.int32)
    offset = rng.normal(size=features)  # inputs not centred on 0: zero points matter
    x = (rng.normal(size=(batch, steps, features)) * 1.5 + offset).astype(np.float32)
    x[rng.random((batch, steps)) < 0.1] = 0.0  # rows a Masking(0.0) masks
    return x


def build(folder, compiler="gcc", sanitize=False):
    flags = " ".join(WARN + (["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
                             if sanitize else ["-O2"]))
    result = subprocess.run(["make", "-s", "-C", str(folder), "testbench", f"CC={compiler}", f"CFLAGS={flags}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "testbench"


def sanitized_testbench(folder, tmp_path):
    """The testbench built with clang -fsanitize=address,undefined in a copy of ``folder`` (which other
    tests build with gcc)."""
    copy = tmp_path / "src"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.o", "testbench"))
    return build(copy, "clang", sanitize=True)


def c_sources(folder):
    """The .c files of an exported folder (runtime and model, no testbench) as compiler arguments."""
    return [str(folder / s) for s in RUNTIME_SOURCES if s.endswith(".c")] + [str(folder / "net_model.c")]


def run_testbench(binary, rows, int8=False):
    result = subprocess.run([str(binary)] + (["--int8"] if int8 else []), input=rows.astype("<f4").tobytes(),
                            capture_output=True, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()  # sanitizers report on stderr
    return result.stdout


def segments(features, seed, vocab=0):
    """Three stateful runs (130, 250 and 60 steps) separated by resets, as testbench rows and as arrays;
    with ``vocab``, codes (the testbench's one float per row)."""
    rng = np.random.default_rng(seed + 100)
    offset = rng.normal(size=features)
    parts = [(rng.normal(size=(n, features)) * 2.0 + offset).astype(np.float32) for n in (130, 250, 60)]
    if vocab:
        parts = [rng.integers(1, vocab, size=(n, 1)).astype(np.float32) for n in (130, 250, 60)]
    for part in parts:
        part[rng.random(len(part)) < 0.1] = 0.0  # masked by Masking(0.0)
    reset = np.full((1, features), np.nan, np.float32)
    rows = np.concatenate([parts[0], reset, parts[1], reset, parts[2]])
    return parts, rows


def expected(qmodel, parts, int8):
    stream = qmodel.stream(1)
    outputs = []
    for part in parts:
        stream.reset()
        if qmodel.spec.vocab:  # codes: (T, 1) -> (1, T)
            outputs.append((stream.run_int8 if int8 else stream.run)(part.T)[0])
        elif int8:
            outputs.append(stream.run_int8(qmodel.quantize_input(part[None]))[0])
        else:
            outputs.append(stream.run(part[None])[0])
    return np.concatenate(outputs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{(model, scheme): (qmodel, folder)}, each exported with its testbench (built lazily)."""
    made = {}

    def get(key, scheme):
        if (key, scheme) not in made:
            features, layers = MODELS[key]
            model = chain(layers, features, seed=len(key))
            qmodel = model.quantize(data(features, seed=1, vocab=vocab_of(key)), scheme)
            folder = tmp_path_factory.mktemp(f"{key}_{scheme}")
            export(qmodel, folder, name="net", testbench=True)
            made[key, scheme] = qmodel, folder
        return made[key, scheme]

    return get


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", sorted(MODELS))
def test_testbench_bit_exact_with_simulation(exported, key, scheme):
    qmodel, folder = exported(key, scheme)
    binary = build(folder, "gcc")
    features = qmodel.spec.features
    parts, rows = segments(features, seed=len(key), vocab=qmodel.spec.vocab)
    out = np.frombuffer(run_testbench(binary, rows), "<f4").reshape(-1, qmodel.spec.outputs)
    want = expected(qmodel, parts, int8=False)
    assert out.shape == want.shape
    np.testing.assert_array_equal(out.view(np.int32), want.view(np.int32))  # every bit
    if scheme == "int8":
        raw = np.frombuffer(run_testbench(binary, rows, int8=True), np.int8).reshape(-1, qmodel.spec.outputs)
        np.testing.assert_array_equal(raw, expected(qmodel, parts, int8=True))
        assert len(np.unique(raw)) > 3  # the comparison is not between constant outputs


@pytest.mark.skipif(not HAVE_CLANG, reason="clang is not installed (CI installs it)")
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", ["stacked", "heads", "gru_reset_after", "masked", "cnn_lstm", "cnn_depthwise",
                                 "embedding_masked", "residual_lstm", "branches_concat", "strided_branches", "merge_modes",
                                 "merge_products"])
def test_clang_sanitized_testbench_bit_exact(exported, key, scheme, tmp_path):
    qmodel, folder = exported(key, scheme)
    binary = sanitized_testbench(folder, tmp_path)
    parts, rows = segments(qmodel.spec.features, seed=3, vocab=qmodel.spec.vocab)
    int8 = scheme == "int8"
    out = run_testbench(binary, rows, int8=int8)
    got = np.frombuffer(out, np.int8 if int8 else "<f4").reshape(-1, qmodel.spec.outputs)
    want = expected(qmodel, parts, int8=int8)
    np.testing.assert_array_equal(got.view(np.int8 if int8 else np.int32), want.view(np.int8 if int8 else np.int32))


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_every_source_compiles_without_warnings(exported, compiler, tmp_path):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed (CI installs it)")
    for scheme in SCHEMES:
        _, folder = exported("stacked", scheme)
        for source in sorted(folder.glob("*.c")):
            for extra in ([], ["-DERNN_NO_FLOAT"]) if scheme == "int8" else ([],):
                if extra and source.name == "testbench.c":
                    continue
                result = subprocess.run([compiler, *WARN, "-O2", *extra, "-c", str(source), "-o", str(tmp_path / "x.o")],
                                        capture_output=True, text=True)
                assert result.returncode == 0, f"{source.name} {extra}: {result.stderr}"


def test_testbench_refuses_truncated_rows(exported):
    qmodel, folder = exported("lstm_softmax", "int8")
    binary = build(folder, "gcc")
    result = subprocess.run([str(binary)], input=b"\0" * (4 * (qmodel.spec.features + 1)), capture_output=True)
    assert result.returncode == 2 and b"truncated" in result.stderr


def test_export_refuses_bad_names(exported, tmp_path):
    qmodel, _ = exported("lstm_softmax", "int8")
    with pytest.raises(InvalidInput, match="C identifier"):
        export(qmodel, tmp_path, name="my-net")


# -- cross-compilation for Cortex-M ---------------------------------------------------------------

MCU_MAIN = r"""
#include "net_model.h"
static int32_t state[NET_STATE_WORDS], scratch[NET_SCRATCH_WORDS];
volatile int8_t sink;
int main(void)
{
    int8_t x[NET_INPUT_FEATURES] = {1}, y[NET_OUTPUT_FEATURES];
    ernn_init(&net_model, state, sizeof state);
    ernn_step_int8(&net_model, state, sizeof state, scratch, sizeof scratch, x, sizeof x, y, sizeof y);
    sink = y[0];
    return 0;
}
"""
MCU_MAIN_FLOAT = MCU_MAIN.replace("int8_t x[", "float x[").replace("int8_t y[", "float y[").replace(
    "ernn_step_int8", "ernn_step_float").replace("volatile int8_t sink", "volatile float sink")


def cross_link(folder, tmp_path, cpu_flags, main, defines=()):
    (tmp_path / "main.c").write_text(main)
    sources = c_sources(folder)
    elf = tmp_path / "fw.elf"
    result = subprocess.run(["arm-none-eabi-gcc", *WARN, "-Os", *cpu_flags, *defines, "-ffunction-sections",
                             "-fdata-sections", "-Wl,--gc-sections", "--specs=nosys.specs", "-I", str(folder),
                             "-o", str(elf), str(tmp_path / "main.c"), *sources], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return elf


M0PLUS = ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"]
M4F = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc is not installed (CI installs it)")
@pytest.mark.parametrize("key, op", [("stacked", "ernn_gru_step_q"), ("cnn_depthwise", "ernn_conv_step_q"),
                                     ("cnn_lstm", "ernn_pool_step_q"), ("embedding_masked", "ernn_embed_step_q"),
                                     ("residual_lstm", "ernn_merge_step_q"), ("branches_concat", "ernn_merge_step_q"),
                                     ("merge_products", "ernn_merge_step_q")])
def test_int8_cortex_m0plus_links_no_floating_point(exported, key, op, tmp_path):
    _, folder = exported(key, "int8")
    elf = cross_link(folder, tmp_path, M0PLUS, MCU_MAIN, ["-DERNN_NO_FLOAT"])
    symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    floating = [line for line in symbols.splitlines() if "__aeabi_f" in line or "__aeabi_d" in line]
    assert not floating, floating
    assert " ernn_step_int8" in symbols and f" {op}" in symbols
    assert " ernn_dot4" in symbols  # the ARMv6-M kernel of ernn_internal.h (its own function there)


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc is not installed (CI installs it)")
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", ["stacked", "cnn_lstm", "embedding_masked", "branches_concat"])
def test_cortex_m4_hard_float_builds(exported, key, scheme, tmp_path):
    _, folder = exported(key, scheme)
    elf = cross_link(folder, tmp_path, M4F, MCU_MAIN if scheme == "int8" else MCU_MAIN_FLOAT)
    symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    assert " ernn_step_" in symbols
    code = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    assert "\tsmlad\t" in code  # the int8 steps (ernn_step_float runs them too) use the DSP kernel of ernn_internal.h


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc is not installed (CI installs it)")
def test_example_model_cortex_m0plus(tmp_path):
    """The shipped example (LSTM(16) -> Dense(4, softmax)) in int8 on a Cortex-M0+: no float routine."""
    model = edgernn.convert(str(examples.path()))
    trace = np.loadtxt(examples.path("basicmotions_trace.csv"), delimiter=",", skiprows=6, dtype=np.float32)
    export(model.quantize(trace.reshape(4, 100, 6)), tmp_path / "fw", name="net")
    elf = cross_link(tmp_path / "fw", tmp_path, M0PLUS, MCU_MAIN, ["-DERNN_NO_FLOAT"])
    symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    assert not [s for s in symbols.splitlines() if "__aeabi_f" in s or "__aeabi_d" in s]


# -- the export command ---------------------------------------------------------------------------

def test_export_command_writes_a_folder_that_builds(tmp_path):
    from click.testing import CliRunner

    from edgernn.cli import main

    model = chain(MODELS["stacked"][1], 6, seed=5)
    model.save(tmp_path / "m.ernn")
    np.save(tmp_path / "calib.npy", data(6, seed=2))
    result = CliRunner().invoke(main, ["export", str(tmp_path / "m.ernn"), "--quant", "int8", "--calibration",
                                       str(tmp_path / "calib.npy"), "-o", str(tmp_path / "fw"), "--name", "net",
                                       "--testbench"])
    assert result.exit_code == 0, result.output
    assert "state" in result.output and "scratch" in result.output and "max abs err" in result.output
    if HAVE_ARM:
        assert "cortex-m4" in result.output and "flash" in result.output
    for name in ("net_model.h", "net_model.c", "Makefile", "CMakeLists.txt", "testbench.c", "ernn.h", "ernn_gru.c"):
        assert (tmp_path / "fw" / name).is_file(), name
    binary = build(tmp_path / "fw")
    qmodel = model.quantize(data(6, seed=2))
    parts, rows = segments(6, seed=9)
    got = np.frombuffer(run_testbench(binary, rows, int8=True), np.int8).reshape(-1, 4)
    np.testing.assert_array_equal(got, expected(qmodel, parts, int8=True))  # the CLI made the same model
    if shutil.which("cmake"):
        build_dir = tmp_path / "cmake"
        for command in (["cmake", "-S", str(tmp_path / "fw"), "-B", str(build_dir)], ["cmake", "--build", str(build_dir)]):
            done = subprocess.run(command, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr


def test_export_command_refusals(tmp_path):
    from click.testing import CliRunner

    from edgernn.cli import main

    chain([("lstm", 4, {}), ("dense", 2, "linear")], 3).save(tmp_path / "m.ernn")
    runner = CliRunner()
    no_data = runner.invoke(main, ["export", str(tmp_path / "m.ernn"), "-o", str(tmp_path / "fw")])
    assert no_data.exit_code == 1 and "calibration" in no_data.output
    np.save(tmp_path / "bad.npy", np.zeros((10, 5), np.float32))
    wrong = runner.invoke(main, ["export", str(tmp_path / "m.ernn"), "--calibration", str(tmp_path / "bad.npy"),
                                 "-o", str(tmp_path / "fw")])
    assert wrong.exit_code == 1 and "shape" in wrong.output
    floats = runner.invoke(main, ["export", str(tmp_path / "m.ernn"), "--quant", "float32", "-o", str(tmp_path / "f")])
    assert floats.exit_code == 0, floats.output
