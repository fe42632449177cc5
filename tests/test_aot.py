"""The ahead-of-time fused step (edgernn.kernels.aot): built here with Numba and the C compiler,
bit for bit the jitted kernel, refusing what Numba's dispatcher refuses, and stepping a fresh
process's stream without importing Numba."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgernn
from edgernn import cli, ir
from edgernn.kernels import aot
from edgernn.kernels.chain import jit_chain_step
from test_stream import assert_steps_allocate_nothing, chain, chain_models, conv_chain, dense, inputs, recurrent

F32 = np.float32


@contextlib.contextmanager
def aot_dir_set(directory):
    """EDGERNN_AOT_DIR set for a while only: left set, this process's first stream (whichever
    test makes it) would pick up the module, and the suite would depend on test order."""
    previous = os.environ.get("EDGERNN_AOT_DIR")
    os.environ["EDGERNN_AOT_DIR"] = str(directory)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("EDGERNN_AOT_DIR")
        else:
            os.environ["EDGERNN_AOT_DIR"] = previous


@pytest.fixture(scope="module")
def aot_dir(tmp_path_factory):
    """A directory holding the module, built once for this module's tests."""
    directory = tmp_path_factory.mktemp("aot")
    with aot_dir_set(directory):
        aot.build_step()
    return directory


@pytest.fixture(scope="module")
def aot_step(aot_dir):
    with aot_dir_set(aot_dir):
        step = aot.load_step()
    assert step is not None, "built, so it must load"
    return step


def test_build_is_keyed_and_idempotent(aot_dir, monkeypatch):
    monkeypatch.setenv("EDGERNN_AOT_DIR", str(aot_dir))
    path = aot.module_path()
    assert path.is_file() and path.parent.parent == aot_dir
    assert path.parent.name.startswith("edgernn_step_")
    stamp = path.stat().st_mtime_ns
    assert aot.build_step() == path and path.stat().st_mtime_ns == stamp  # found, not rebuilt
    assert not [p for p in path.parent.iterdir() if p != path]  # no build leftovers


@given(case=chain_models(), batch=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
def test_ahead_of_time_step_equals_the_jitted_kernel_bit_for_bit(aot_step, case, batch, seed):
    model, mask_value, _ = case
    program = model._chain_program()
    jitted = jit_chain_step()
    memories = [program.new_memory(batch), program.new_memory(batch)]
    ys = [np.zeros((batch, model.output_features), F32) for _ in range(2)]
    x = inputs(np.random.default_rng(seed), batch, 12, model.input_features, mask_value)
    for t in range(x.shape[1]):
        xt = np.ascontiguousarray(x[:, t])
        assert aot_step(program.packed, xt, ys[0], memories[0]) == jitted(program.packed, xt, ys[1], memories[1]) == 0
        np.testing.assert_array_equal(ys[0], ys[1])
        np.testing.assert_array_equal(memories[0], memories[1])


def padded_chain(seed):
    """ZeroPadding1D(2, 0) -> Conv1D(k=3, valid) -> Cropping1D(1, 2) -> LSTM -> Dense, from the IR: a
    padded start and a delay line (kind DELAY of kernels/window.py)."""
    rng = np.random.default_rng(seed)
    ops = [ir.Pad1D("pad", left=2), ir.Conv1D("conv", ir.as_weight(rng.normal(0, 0.5, (3, 3, 4))), padding="valid"),
           ir.Pad1D("crop", left=-1, right=-2), recurrent(rng, "lstm", "lstm", 5, 4, return_sequences=True),
           dense(rng, "head", 5, 3)]
    nodes, current = [], "x"
    for op in ops:
        nodes.append(ir.Node(op, (current,), (op.name,)))
        current = op.name
    return edgernn.Model(ir.ModelSpec((ir.Input("x", 3),), tuple(nodes), (current,)))


@pytest.mark.parametrize("global_pool", [None, "average", "max", "padded"])
def test_a_convolutional_chain_on_the_ahead_of_time_step_equals_the_jitted_kernel(aot_step, global_pool):
    """Conv1D, Affine, pooling and global pooling stages (their rings, counters and the held
    output), and the crops of a Pad1D, are in the same kernel, so the module covers them bit for bit too."""
    model = padded_chain(5) if global_pool == "padded" else conv_chain(5, mask_value=0.0, global_pool=global_pool)
    program = model._chain_program()
    memories = [program.new_memory(3), program.new_memory(3)]
    ys = [np.zeros((3, 3), F32) for _ in range(2)]
    x = inputs(np.random.default_rng(5), 3, 40, 3, mask_value=0.0)
    for t in range(x.shape[1]):
        xt = np.ascontiguousarray(x[:, t])
        assert aot_step(program.packed, xt, ys[0], memories[0]) == jit_chain_step()(program.packed, xt, ys[1],
                                                                                     memories[1]) == 0
        np.testing.assert_array_equal(ys[0], ys[1])
        np.testing.assert_array_equal(memories[0], memories[1])
    s = model.stream(3)
    s._use_kernel(aot_step)
    steps = np.stack([s.step(x[:, t]) for t in range(40)], axis=1)
    expected = model.predict(x)[:, -1] if global_pool in (None, "padded") else model.predict(x)
    np.testing.assert_allclose(steps[:, -1], expected,
                               rtol=1e-5, atol=1e-6)
    assert_steps_allocate_nothing(s, np.ascontiguousarray(x[:, 0]), np.empty((3, 3), F32))


def row_chain(seed):
    """Embedding (mask_zero) -> Standardize -> LayerNorm of each kind -> LSTM reading the codes' mask
    -> Dense, from the IR: every per-row stage of kernels/rowwise.py in one chain."""
    rng = np.random.default_rng(seed)
    dim, vocab = 6, 7
    ops = [ir.Embedding("emb", ir.as_weight(rng.normal(0, 1, (vocab, dim))), mask_zero=True),
           ir.Standardize("std", ir.as_weight(rng.normal(0, 1, dim)), ir.as_weight(rng.uniform(0.5, 2, dim))),
           ir.LayerNorm("ln", "layer", 1e-3, ir.as_weight(rng.normal(1, 0.2, dim)), ir.as_weight(rng.normal(0, 0.2, dim))),
           ir.LayerNorm("rms", "rms", 1e-5, ir.as_weight(rng.normal(1, 0.2, dim))),
           ir.LayerNorm("plain", "rms_scaling", 1e-4),
           recurrent(rng, "lstm", "lstm", 5, dim, return_sequences=True), dense(rng, "head", 5, 3)]
    nodes, current = [ir.Node(ops[0], ("codes",), ("emb", "emb:mask"))], "emb"
    for op in ops[1:]:
        nodes.append(ir.Node(op, (current,), (op.name,), mask="emb:mask" if op.name == "lstm" else None))
        current = op.name
    return edgernn.Model(ir.ModelSpec((ir.Input("codes", 8, rank=2, dtype="int"),), tuple(nodes), (current,)))


def test_the_per_row_stages_on_the_ahead_of_time_step(aot_step):
    """Embedding, Standardize and the LayerNorm kinds are in the same kernel, bit for bit; a bad code
    in any stream is refused (2) before anything is written, by both."""
    model = row_chain(6)
    program = model._chain_program()
    memories = [program.new_memory(3), program.new_memory(3)]
    ys = [np.zeros((3, 3), F32) for _ in range(2)]
    codes = np.random.default_rng(6).integers(0, 7, (3, 30)).astype(F32)
    codes[0, 4:9] = 0
    for t in range(codes.shape[1]):
        xt = np.ascontiguousarray(codes[:, t:t + 1])
        assert aot_step(program.packed, xt, ys[0], memories[0]) == jit_chain_step()(program.packed, xt, ys[1],
                                                                                     memories[1]) == 0
        np.testing.assert_array_equal(ys[0], ys[1])
        np.testing.assert_array_equal(memories[0], memories[1])
    before = memories[0].copy()
    for bad in (7.0, -1.0, 0.5, np.nan):
        xt = np.zeros((3, 1), F32)
        xt[2, 0] = bad
        assert aot_step(program.packed, xt, ys[0], memories[0]) == jit_chain_step()(program.packed, xt, ys[1],
                                                                                     memories[1]) == 2
        np.testing.assert_array_equal(memories[0], before)
    s = model.stream(3)
    s._use_kernel(aot_step)
    steps = np.stack([s.step(np.ascontiguousarray(codes[:, t:t + 1])) for t in range(30)], axis=1)
    np.testing.assert_allclose(steps, model.predict(codes), rtol=1e-5, atol=1e-5)
    state = s.get_state()
    with pytest.raises(edgernn.InvalidInput, match="'emb' \\(Embedding\\)"):  # the C step's fallback reports it
        s.step(np.array([[1.0], [2.0], [7.0]], F32))
    assert all(np.array_equal(value, s.get_state()[name]) for name, value in state.items())
    assert_steps_allocate_nothing(s, np.ascontiguousarray(codes[:, :1]), np.empty((3, 3), F32))


def test_it_refuses_what_the_dispatcher_refuses(aot_step):
    model = chain(0, 3, [("lstm", 5)], head=(2, "linear"))
    program = model._chain_program()
    memory = program.new_memory(1)
    x, y = np.ones((1, 3), F32), np.zeros((1, 2), F32)
    before = memory.copy()
    readonly = y.copy()
    readonly.flags.writeable = False
    unaligned = np.frombuffer(bytearray(4 * 3 + 1), np.float32, 3, offset=1).reshape(1, 3)
    unaligned.flags.writeable = True
    unaligned[:] = x
    assert not unaligned.flags.aligned
    wrong_types = [
        (program.packed, x.astype(np.float64), y, memory),  # dtype
        (program.packed, x.astype(np.int32), y, memory),  # same item size, not float32
        (program.packed, x.reshape(3), y, memory),  # dimensions
        (program.packed, x.reshape(1, 1, 3), y, memory),
        (program.packed, np.ones((3, 2), F32).T[:1], y, memory),  # not C-contiguous
        (program.packed, x.astype(">f4"), y, memory),  # byte order
        (program.packed, x, readonly, memory),  # writeability
        (program.packed, unaligned, y, memory),  # alignment
        (program.packed, x.tolist(), y, memory),  # not an array
    ]
    for args in wrong_types:
        with pytest.raises(TypeError):
            jit_chain_step()(*args)
        with pytest.raises(TypeError):
            aot_step(*args)
    with pytest.raises(TypeError, match="4 arguments"):
        aot_step(program.packed, x, y)
    # Sizes are the kernel's own check: refused with 1, nothing written.
    assert aot_step(program.packed, np.ones((1, 4), F32), y, memory) == 1
    assert aot_step(program.packed, x, np.zeros((2, 2), F32), memory) == 1
    np.testing.assert_array_equal(memory, before)
    np.testing.assert_array_equal(y, 0)


def test_the_build_checks_the_module_against_the_jitted_kernel(aot_dir):
    with aot_dir_set(aot_dir):
        path = aot.module_path()
    jitted = jit_chain_step()
    aot.check_against(path, jitted)  # the module build_step installed passes

    def off_by_one_ulp(model, x, y, memory):  # a kernel that differs in the last bit of one output
        code = jitted(model, x, y, memory)
        y[0, 0] = np.nextafter(y[0, 0], np.float32(np.inf))
        return code

    with pytest.raises(aot.AotUnavailable, match="does not compute what Numba's kernel does"):
        aot.check_against(path, off_by_one_ulp)


def test_a_stream_on_the_ahead_of_time_step_matches_predict(aot_step):
    model = chain(3, 4, [("gru", 6), ("lstm", 5)], head=(3, "softmax"))
    s = model.stream(2)
    s._use_kernel(aot_step)  # this process's streams may use the jitted kernel; this one the module's
    x = inputs(np.random.default_rng(1), 2, 9, 4)
    steps = np.stack([s.step(x[:, t]) for t in range(9)], axis=1)
    np.testing.assert_allclose(steps, model.predict(x), rtol=1e-5, atol=1e-6)
    # wrong dtype, layout: converted by the checked path, as with Numba's kernel
    s.reset()
    odd = np.asfortranarray(x[:, 0].astype(np.float64))
    np.testing.assert_allclose(s.step(odd), steps[:, 0], rtol=0, atol=1e-7)


def test_a_stream_on_the_module_steps_in_c_as_its_python_step_does(aot_step, monkeypatch):
    """On the module's kernel a stream's ``step`` is the C twin of its Python closure (``bind``
    in aot_step.c): the same outputs bit for bit, ``out`` by position or keyword, the closure's
    refusals (state untouched), forecast and reset seeing its steps, and no reference cycle that
    outlives the stream."""
    import gc
    import weakref

    from edgernn.errors import InvalidInput

    model = chain(7, 3, [("lstm", 6)], head=(3, "linear"))  # outputs = inputs: forecast works
    c_stream = model.stream(2)
    c_stream._use_kernel(aot_step)
    with monkeypatch.context() as patch:
        patch.setattr(aot, "bind_step", lambda *args: None)
        py_stream = model.stream(2)
        py_stream._use_kernel(aot_step)
    assert type(c_stream.step).__name__ == "BoundStep" and type(py_stream.step).__name__ == "function"

    with pytest.raises(InvalidInput, match="step or run it on history first"):
        c_stream.forecast(1)
    x = inputs(np.random.default_rng(2), 2, 6, 3)
    y_c, y_py = np.zeros((2, 3), F32), np.zeros((2, 3), F32)
    calls = [lambda s, xt, y: s.step(xt), lambda s, xt, y: s.step(xt, y), lambda s, xt, y: s.step(xt, out=y),
             lambda s, xt, y: s.step(xt.tolist())]  # a list: converted by the closure's checked path
    for t in range(x.shape[1]):
        xt = np.ascontiguousarray(x[:, t])
        call = calls[t % len(calls)]
        got, want = call(c_stream, xt, y_c), call(py_stream, xt, y_py)
        np.testing.assert_array_equal(got, want)
        assert (got is y_c) == (t % len(calls) in (1, 2)) and got is not c_stream._step_y
    before = c_stream.get_state()
    for bad in ({"x_t": np.zeros((2, 4), F32)}, {"x_t": xt, "out": np.zeros((2, 3))}, {"x_t": xt, "out": y_c[:1]}):
        with pytest.raises(InvalidInput):
            c_stream.step(**bad)
    for name, value in c_stream.get_state().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(TypeError):
        c_stream.step(xt, y_c, y_c)  # what the closure's signature refuses, refused the same way
    np.testing.assert_array_equal(c_stream.forecast(3), py_stream.forecast(3))
    c_stream.reset(0)
    c_stream.forecast(1)  # one stream's reset keeps the others' output
    c_stream.reset()
    with pytest.raises(InvalidInput, match="step or run it on history first"):
        c_stream.forecast(1)
    c_stream.step(xt)  # a step of the C path alone gives the stream an output again
    c_stream.forecast(1)

    gone = weakref.ref(c_stream)
    del c_stream
    gc.collect()
    assert gone() is None


def test_the_c_step_allocates_nothing(aot_step):
    """``step(x, out=y)`` on the module's C step leaves no trace in memory."""
    model = chain(4, 6, [("lstm", 16), ("gru", 12)], mask_value=0.0, head=(16, "softmax"))
    s = model.stream(1)
    s._use_kernel(aot_step)
    assert type(s.step).__name__ == "BoundStep"
    assert_steps_allocate_nothing(s, np.ones((1, 6), F32), np.empty((1, 16), F32))


CHILD = r"""
import json, sys
import numpy as np
import edgernn
model = edgernn.load(sys.argv[1])
s = model.stream(1)
x = np.linspace(-1, 1, 5 * model.input_features, dtype=np.float32).reshape(5, 1, model.input_features)
ys = [s.step(xt).tolist() for xt in x]
print(json.dumps({"numba": "numba" in sys.modules, "aot": str(edgernn.kernels.aot.loaded), "ys": ys}))
"""


def test_a_fresh_process_steps_without_importing_numba(aot_dir, tmp_path):
    model = chain(5, 3, [("lstm", 8)], head=(2, "tanh"))
    path = tmp_path / "m.ernn"
    model.save(path)

    def child(**env):
        done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True,
                              env=dict(os.environ, EDGERNN_AOT_DIR=str(aot_dir), **env))
        return json.loads(done.stdout.strip().splitlines()[-1])

    fast, jitted = child(), child(EDGERNN_AOT="0")
    with aot_dir_set(aot_dir):
        assert not fast["numba"] and fast["aot"] == str(aot.module_path())
    assert jitted["numba"] and jitted["aot"] == "None"
    assert fast["ys"] == jitted["ys"]  # bit for bit
    x = np.linspace(-1, 1, 5 * 3, dtype=F32).reshape(5, 1, 3)
    s = model.stream(1)
    assert fast["ys"] == [s.step(xt).tolist() for xt in x]


def test_a_damaged_module_is_ignored_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERNN_AOT_DIR", str(tmp_path))
    path = aot.module_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x7fELF not really")
    with pytest.warns(RuntimeWarning, match="ignoring the ahead-of-time step"):
        assert aot.load_step() is None
    monkeypatch.setenv("EDGERNN_AOT", "0")
    assert aot.load_step() is None  # turned off: not even looked at


def test_keyed_by_the_kernel_sources_the_cpu_the_python_and_numpy(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERNN_AOT_DIR", str(tmp_path))
    path = aot.module_path()
    suffix_of_another_python = {"EXT_SUFFIX": ".cpython-399-x86_64-linux-gnu.so"}
    changes = [  # (object, attribute, value): each must move the module elsewhere
        (aot, "kernel_sources_digest", lambda: "other kernels"),
        (aot, "_cpu_identity", lambda: "model name : another CPU\nflags : fpu"),
        (aot.sysconfig, "get_config_var", suffix_of_another_python.get),
        (aot.np, "__version__", "0.0.1"),
    ]
    seen = {path}
    for target, name, value in changes:
        with monkeypatch.context() as patch:
            patch.setattr(target, name, value)
            other = aot.module_path()
        assert other is not None and other not in seen, name
        seen.add(other)
    assert aot.module_path() == path  # every change undone


def test_warmup_says_why_it_cannot_build_and_still_warms(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERNN_AOT_DIR", str(tmp_path / "aot"))
    monkeypatch.setattr(aot, "_compiler", lambda: None)
    model = chain(7, 2, [("simple", 3)], head=(1, "linear"))
    path = tmp_path / "m.ernn"
    model.save(path)
    result = CliRunner().invoke(cli.main, ["warmup", str(path)])
    assert result.exit_code == 0, result.output
    assert "ahead-of-time step not built: no C compiler" in result.output
    assert "kernels ready" in result.output
    assert not (tmp_path / "aot").exists() or not any((tmp_path / "aot").rglob("*.so"))
    with pytest.raises(aot.AotUnavailable, match="no C compiler"):
        edgernn.load(path).warmup(ahead_of_time=True)


def test_warmup_builds_it(aot_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERNN_AOT_DIR", str(aot_dir))  # already built by the fixture: found, reported
    model = chain(7, 2, [("simple", 3)], head=(1, "linear"))
    path = tmp_path / "m.ernn"
    model.save(path)
    result = CliRunner().invoke(cli.main, ["warmup", str(path)])
    assert result.exit_code == 0, result.output
    assert f"ahead-of-time step: {aot.module_path()}" in result.output
