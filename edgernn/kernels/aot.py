"""The fused step compiled ahead of time: a fresh process's first output without importing Numba.

Numba's on-disk cache saves the compiling, not the loading. A process that loads a cached kernel
first imports numba (about 0.3 s on the development machine) and then Numba's lowering registry
(another 0.15-0.4 s), which together made cold start twice its target. Here Numba's ahead-of-time
compiler turns the same kernel (:mod:`edgernn.kernels.chain`) into an object file, which the C
compiler links with ``aot_step.c`` into an ordinary extension module: importing it takes about a
millisecond, needs no Numba, and calling it skips Numba's dispatcher too (a METH_FASTCALL
function checking four arrays, instead of typing and unboxing them). A stream's ``step`` on it is
a C callable bound to the stream's arrays (:func:`bind_step`), so not even a Python frame stands
between the caller and the kernel.

* **Built by** ``edgernn warmup`` (:func:`build_step`), on the device, for its CPU: the same LLVM
  IR compiled for the same CPU model as Numba's JIT, so its outputs equal the jitted kernel's bit
  for bit (tested). Building needs Numba, a C compiler and Python's headers (``Python.h``), and
  takes seconds; without them warmup says so and streams use Numba's kernel instead.
* **Used by** :func:`edgernn.kernels.compiled_chain_step`, for every stream on the fused path,
  when a module for this CPU and these kernel sources exists. The other paths (``run``, many
  streams, ``predict``) still use Numba's kernels, imported on their first use.
* **Where:** ``<cache>/edgernn_step_<key>/``, ``<cache>`` being ``EDGERNN_AOT_DIR`` when set,
  else ``NUMBA_CACHE_DIR`` (beside Numba's own cache), else ``~/.cache/edgernn``. The key hashes the kernel sources, the
  CPU's identity (``/proc/cpuinfo``), the interpreter's extension suffix and NumPy's version: a
  module built for other kernels, another CPU or another Python is never found, so never loaded.
* ``EDGERNN_AOT=0`` turns it off (Numba's kernel is used).

Like Numba's cache, the directory holds machine code that this process will run: keep it
writable by its user only (docs/SECURITY.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sysconfig
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .. import ir
from ..errors import EdgernnError
from . import _notice
from ._sources import kernel_sources_digest
from .program import ChainProgram

MODULE_NAME = "_edgernn_step"
# /proc/cpuinfo lines that name the CPU and its instruction set (x86 and Arm), not its clock.
_CPU_KEYS = {"vendor_id", "cpu family", "model", "model name", "stepping", "flags", "CPU implementer",
             "CPU architecture", "CPU variant", "CPU part", "CPU revision", "Features", "isa", "uarch"}


class AotUnavailable(EdgernnError):
    """The ahead-of-time step cannot be built here (no C compiler, no Python headers, no pycc)."""


def _cpu_identity() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    first = text.strip().split("\n\n")[0]
    lines = [line for line in first.splitlines() if line.partition(":")[0].strip() in _CPU_KEYS]
    return "\n".join(lines) or None


def module_path() -> Path | None:
    """Where this CPU's module for these kernels is (or would be built); None where the CPU
    cannot be identified (then no module is built or loaded)."""
    cpu = _cpu_identity()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if cpu is None or not suffix:
        return None
    digest = hashlib.sha256(kernel_sources_digest().encode() + b"\0")
    # numpy: the module is compiled against its C API headers.
    digest.update(cpu.encode() + b"\0" + suffix.encode() + b"\0" + np.__version__.encode())
    root = (os.environ.get("EDGERNN_AOT_DIR") or os.environ.get("NUMBA_CACHE_DIR")
            or os.path.join(os.path.expanduser("~"), ".cache", "edgernn"))
    return Path(root) / f"edgernn_step_{digest.hexdigest()[:20]}" / (MODULE_NAME + suffix)


def enabled() -> bool:
    return os.environ.get("EDGERNN_AOT", "1") != "0"


def load_step():
    """The module's ``chain_step`` if it is built for this CPU and these kernels, else None."""
    path = module_path() if enabled() else None
    if path is None or not path.is_file():
        return None
    try:
        module = _import(path)
        step, _ = module.chain_step, module.bind  # a module without either is not used
    except (ImportError, OSError, AttributeError) as error:
        warnings.warn(f"edgernn: ignoring the ahead-of-time step {path} ({error}); using Numba's kernel",
                      RuntimeWarning, stacklevel=3)
        return None
    global loaded
    loaded = path
    return step


def bind_step(kernel, model, y, memory, fallback):
    """A stream's ``step(x_t, out=None)`` as one C callable over its arrays (``bind`` in
    aot_step.c), when ``kernel`` is the ``chain_step`` of a module built here; else None.
    ``fallback`` is the stream's Python step, which takes every call the C one does not (other
    types or shapes). The module is the kernel's own (a C function's ``__self__``): a process may
    have loaded more than one (tests do)."""
    module = getattr(kernel, "__self__", None)
    if getattr(module, "__name__", None) != MODULE_NAME or not hasattr(module, "bind"):
        return None
    return module.bind(model, y, memory, fallback)


# The module this process loaded (None: none, the jitted kernel serves).
loaded: Path | None = None


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_against(path: Path, reference) -> None:
    """Step a small model (LSTM, GRU with and without reset_after, SimpleRNN, Dense heads, a merge
    and a concatenation of branches; a masked timestep) through the module at ``path`` and through
    ``reference`` (the jitted kernel) from the same state: every output and state must be equal bit for bit, or
    :class:`AotUnavailable`. Run by :func:`build_step` before the module is put where streams find
    it: a module that imports but computes anything else -- a calling-convention mismatch on a new
    platform, say -- is never used."""
    rng = np.random.default_rng(0)

    def weight(*shape):
        return ir.as_weight(rng.normal(0.0, 0.5, shape))

    def layer(name, cell, units, inputs, **options):
        width = ir.CELL_GATES[cell] * units
        return ir.Recurrent(name, cell, units, inputs, kernel=weight(inputs, width),
                            recurrent_kernel=weight(units, width), bias=weight(width), return_sequences=True,
                            **options)

    nodes = [ir.Node(ir.Masking("mask", 0.0), ("x",), ("m", "keep")),
             ir.Node(layer("lstm", "lstm", 5, 3), ("m",), ("a",), mask="keep"),
             ir.Node(ir.Dense("side", weight(3, 5), weight(5), "tanh"), ("m",), ("s",)),
             ir.Node(ir.Merge("residual", "average"), ("a", "s", "a"), ("j",)),
             ir.Node(layer("gru", "gru", 4, 5, recurrent_bias=weight(12)), ("j",), ("b",), mask="keep"),
             ir.Node(layer("gru1", "gru", 3, 4, reset_after=False), ("b",), ("c",), mask="keep"),
             ir.Node(layer("rnn", "simple", 4, 3), ("c",), ("d",), mask="keep"),
             ir.Node(ir.Concatenate("both"), ("d", "c"), ("e",)),
             ir.Node(ir.Dense("head", weight(7, 3), weight(3), "softmax"), ("e",), ("y",))]
    program = ChainProgram(nodes, 3)
    memories = [program.new_memory(2), program.new_memory(2)]
    ys = [np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)]
    inputs = rng.normal(0.0, 1.0, (6, 2, 3)).astype(np.float32)
    inputs[2, 1] = 0.0  # a masked timestep of the second stream
    try:
        step = _import(path).chain_step
        for x in inputs:
            codes = step(program.packed, x, ys[0], memories[0]), reference(program.packed, x, ys[1], memories[1])
            if codes != (0, 0) or not (np.array_equal(ys[0], ys[1]) and np.array_equal(memories[0], memories[1])):
                raise AotUnavailable(f"the built {MODULE_NAME} does not compute what Numba's kernel does "
                                     f"(return codes {codes}); not installed")
    except (ImportError, OSError, TypeError, RuntimeError) as error:
        raise AotUnavailable(f"the built {MODULE_NAME} does not work: {type(error).__name__}: {error}") from error


def _compiler() -> list[str] | None:
    """The C compiler: ``$CC`` if set (as setuptools honours it), else the one Python was built
    with, else ``cc``, ``gcc`` or ``clang``, whichever is on PATH."""
    chosen = (os.environ.get("CC") or "").split()
    configured = (sysconfig.get_config_var("CC") or "").split()
    for command in (chosen, configured, ["cc"], ["gcc"], ["clang"]):
        if command and shutil.which(command[0]):
            return command
    return None


def _toolchain_problem() -> str | None:
    include = sysconfig.get_paths().get("include")
    if not include or not os.path.isfile(os.path.join(include, "Python.h")):
        return f"Python's headers are missing (no Python.h in {include}; on Debian: apt install python3-dev)"
    if _compiler() is None:
        return "no C compiler (cc, gcc or clang) on PATH (on Debian: apt install gcc)"
    try:
        with warnings.catch_warnings():
            # pycc is "pending deprecation" since Numba 0.57; its ModuleCompiler is what is used
            # here, and if a Numba without it comes, this is where warmup says so.
            warnings.simplefilter("ignore")
            import numba.pycc.compiler  # noqa: F401
    except ImportError as error:
        hint = " (pip install setuptools)" if "setuptools" in str(error) else ""
        return f"Numba's ahead-of-time compiler (numba.pycc) is not available: {error}{hint}"
    return None


def build_step() -> Path:
    """Build the module for this CPU (unless it exists) and return its path.

    Two parts, linked by the C compiler: the kernel, compiled by Numba's ahead-of-time compiler
    for this CPU into an object file exporting ``edgernn_chain_step`` (Numba's calling
    convention), and ``aot_step.c``, the extension module that checks the arguments and calls it.
    Raises :class:`AotUnavailable` naming what is missing. Built in a temporary directory and
    renamed into place, so a concurrent or interrupted build never leaves a half-written module
    where :func:`load_step` would find it.
    """
    path = module_path()
    if path is None:
        raise AotUnavailable("this machine's CPU cannot be identified (no /proc/cpuinfo)")
    if path.is_file():
        return path
    problem = _toolchain_problem()
    if problem:
        raise AotUnavailable(problem)
    import subprocess

    import llvmlite.binding as llvm
    from numba.pycc.compiler import ExportEntry, ModuleCompiler

    from .chain import CHAIN_STEP_SIGNATURE, jit_chain_step  # lazy: Numba, which loading a built module must not import

    # Compiling below is Numba's ahead-of-time compiler, not its dispatcher (whose compiles are
    # announced by the listener in _notice): say so here, unless the jitted kernel already did.
    _notice.announce()
    kernel = jit_chain_step()

    def exported(model, x, y, memory):
        return kernel(model, x, y, memory)

    path.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
    try:
        # The same IR as the JIT's, for the same CPU model: the same machine code and bits.
        compiler = ModuleCompiler([ExportEntry("edgernn_chain_step", CHAIN_STEP_SIGNATURE, exported)], MODULE_NAME,
                                  use_nrt=False, cpu_name=llvm.get_host_cpu_name())
        compiler.write_native_object(str(build / "kernel.o"), wrap=False)
        built = build / path.name
        command = _compiler() + ["-shared", "-fPIC", "-O2", "-I", sysconfig.get_paths()["include"],
                                 "-I", np.get_include(), str(Path(__file__).with_name("aot_step.c")),
                                 str(build / "kernel.o"), "-o", str(built), "-lm"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise AotUnavailable(f"linking {MODULE_NAME} failed ({' '.join(command)}):\n{done.stderr.strip()}")
        check_against(built, kernel)
        os.replace(built, path)
    except AotUnavailable:
        raise
    except Exception as error:  # Numba's own failure, named
        raise AotUnavailable(f"compiling {MODULE_NAME} failed: {type(error).__name__}: {error}") from error
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return path
