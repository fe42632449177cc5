"""Instructions per timestep of the exported int8 C on emulated Cortex-M4 and Cortex-M0+, with flash and RAM.

``python tools/bench/mcu.py`` prints a markdown table (docs/benchmarks.md, "On a microcontroller");
``--quick`` is the CI smoke (one small model, one core, one optimization level).

For each model and core:

1. ``edgernn export`` (int8) of the model, with the harness ``mcu_harness.c`` beside it, is
   cross-compiled with arm-none-eabi-gcc (the core's flags of ``edgernn.export.MCU_TARGETS``, as
   ``edgernn export`` sizes it: ``-mthumb -mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16`` or
   ``-mthumb -mcpu=cortex-m0plus``; ``-DERNN_NO_FLOAT``, ``-Os`` and/or ``-O2``) and linked by
   ``mcu_harness.ld`` (flash at 0x08000000, RAM at 0x20000000) with ``-nostartfiles``.
2. The ELF runs in the unicorn CPU emulator (``UC_MODE_THUMB | UC_MODE_MCLASS``, CPU model
   ``UC_CPU_ARM_CORTEX_M4`` or ``UC_CPU_ARM_CORTEX_M0``: unicorn has no M0+ model; the M0 and M0+
   share the ARMv6-M instruction set) from ``Reset_Handler`` to ``bench_done``, once with N steps and
   once with 0 steps (same inputs). unicorn 2.1's M0 model does not refuse Thumb-2 instructions (an
   M4 build runs on it), so the M0+ build's disassembly is checked instead: no IT block, and no
   32-bit instruction but BL, MRS, MSR, DMB, DSB, ISB.
3. Instructions are counted with a ``UC_HOOK_BLOCK`` hook: each executed basic block adds the number
   of instructions that arm-none-eabi-objdump lists in its address range. ``--check-count`` also
   counts with ``UC_HOOK_CODE`` (a callback per executed instruction) and requires the same total.
   Calibration: the harness's mode 1 runs a loop of exactly 2 instructions per iteration (subs,
   bne); its count with n = 1000 minus its count with n = 0 must be exactly 2000, on every build.
   Each build must hold the matrix-vector kernel of ``ernn_internal.h`` meant for its core: SMLAD
   and UXTB16 on the Cortex-M4 (the DSP kernel), the function ``ernn_dot4`` on the Cortex-M0+ (the
   ARMv6-M loop), so that both kernels are the ones measured and checked bit for bit below.
4. Instructions per step = (count with N steps - count with 0 steps) / N: startup, ``ernn_init``
   and the harness cancel out. The min and max over single steps are the counts between successive
   entries into ``ernn_step_int8`` (they include the harness loop around the call, a few instructions).
5. The emulated outputs must equal, bit for bit, the Python simulation's
   (``qmodel.stream(1).run_int8(qmodel.quantize_input(x))``) and the host testbench's
   (``testbench --int8``, the export's Makefile target, built with the host's gcc); any difference is an error.
6. Flash = .isr_vector + .text (with .rodata) + .data of the linked ELF: the runtime, the model's
   weights, the harness's startup (~100 bytes) and the libc routines linked (memcpy, memset);
   the model's own share (the ``net_model.c`` object) is given beside it. RAM = .data + .bss (the
   stream's state and the scratch buffer, static in the harness) + the peak stack depth, measured
   by filling the stack with a pattern before the run and finding the deepest word overwritten.
7. ``--per-function``: the N-step run also follows the calls inside ``ernn_step_int8`` (a call starts
   at the block at a function's entry, ``arm-none-eabi-nm``'s symbols, and ends at the first block at
   the link register's address then) and prints, per function and step, its own instructions (blocks
   in its address range) and those from entry to return (callees included), per call in call order:
   each layer's share of a step (model (f)'s two ``ernn_conv_step_q`` calls). The own counts must add
   up to ``ernn_step_int8``'s.

Instructions are not cycles: a real core adds flash wait states (at tens of MHz most parts run
flash with 0-5 wait states, partly hidden by prefetch buffers or caches), pipeline refills after
taken branches, multi-cycle loads, stores and multiplies. No cycle figures are given here.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgernn.export import MCU_TARGETS

if __package__ in (None, ""):  # run as a script: make `bench` (this folder) importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

HERE = Path(__file__).resolve().parent
HARNESS, LINKER_SCRIPT = HERE / "mcu_harness.c", HERE / "mcu_harness.ld"
FLASH, FLASH_SIZE = 0x08000000, 1 << 20
RAM, RAM_SIZE = 0x20000000, 128 << 10
STACK_PATTERN = 0xA5
CORES = ("cortex-m4", "cortex-m0plus")  # keys of MCU_TARGETS: each build uses `edgernn export`'s flags for its core
OPT_LEVELS = ("-O2", "-Os")
MAX_STEPS = 64  # BENCH_MAX_STEPS of the harness
CALIBRATION_LOOPS = 1000


class BenchError(RuntimeError):
    """The benchmark's own checks failed (build, calibration, or outputs not bit-exact)."""


# ---------------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------------
@dataclass
class BenchModel:
    key: str
    label: str
    qmodel: object  # edgernn QuantizedModel, int8
    x: np.ndarray  # (T, features) float32 inputs stepped through
    sizes: dict | None = None  # what export returned: weight_bytes, state_bytes, scratch_bytes


def basicmotions(steps: int) -> BenchModel:
    """The shipped example, LSTM(16) on 6 features -> Dense(4, softmax), calibrated on the shipped trace."""
    import edgernn
    from edgernn import examples

    trace = np.loadtxt(examples.path("basicmotions_trace.csv"), delimiter=",", skiprows=6, dtype=np.float32)
    model = edgernn.convert(str(examples.path("basicmotions_lstm.keras")), verify=False)
    qmodel = model.quantize(trace.reshape(4, 100, trace.shape[1]), "int8")
    rows = np.r_[0:steps // 2, 100:100 + steps - steps // 2]  # standing, then running
    return BenchModel("basicmotions", "BasicMotions LSTM(16) on 6 + Dense(4, softmax)", qmodel, trace[rows])


def bench_model(key: str, steps: int) -> BenchModel:
    """(a) LSTM(64) on 8 + Dense(1), (d) GRU(64) on 8 + Dense(1), (f) 2 x Conv1D(16, 5) causal relu +
    LSTM(32) on 6 + Dense(4) or (g) LSTM(32) on 16 + Dense(4): the weights of tools/bench/models.py,
    built as edgernn IR directly (no framework), calibrated on seeded normal inputs."""
    import edgernn
    from edgernn import ir

    from .models import MODELS, make_weights

    definition = make_weights(MODELS[key])
    (kernel, recurrent, bias), (dense_w, dense_b) = definition.weights
    units = definition.units[0]
    nodes, previous = [], "x"
    for number, (conv_kernel, conv_bias) in enumerate(definition.conv_weights, 1):
        conv = ir.Conv1D(f"conv{number}", ir.as_weight(conv_kernel), ir.as_weight(conv_bias), padding="causal",
                         activation="relu")
        nodes.append(ir.Node(conv, (previous,), (conv.name,)))
        previous = conv.name
    extra = {"bias": bias[0], "recurrent_bias": bias[1]} if definition.cell == "gru" else {"bias": bias}
    cell = ir.Recurrent("rnn", definition.cell, units, definition.recurrent_features, ir.as_weight(kernel),
                        ir.as_weight(recurrent), return_sequences=True, **{k: ir.as_weight(v) for k, v in extra.items()})
    dense = ir.Dense("head", ir.as_weight(dense_w), ir.as_weight(dense_b), "linear")
    nodes += [ir.Node(cell, (previous,), ("rnn",)), ir.Node(dense, ("rnn",), ("y",))]
    spec = ir.ModelSpec((ir.Input("x", definition.features),), tuple(nodes), ("y",), {"format": "bench"})
    rng = np.random.default_rng(1234 + ord(key))
    calibration = rng.normal(size=(8, 100, definition.features)).astype(np.float32)
    qmodel = edgernn.Model(spec).quantize(calibration, "int8")
    x = rng.normal(size=(steps, definition.features)).astype(np.float32)
    return BenchModel(key, definition.label, qmodel, x)


def load_model(key: str, steps: int) -> BenchModel:
    return basicmotions(steps) if key == "basicmotions" else bench_model(key, steps)


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def _run(command, **kwargs) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise BenchError(f"{' '.join(str(c) for c in command)} failed:\n{result.stderr}{result.stdout}")
    return result.stdout


def compiler_version() -> str:
    return _run(["arm-none-eabi-gcc", "--version"]).splitlines()[0]


def export_model(model: BenchModel, folder: Path) -> Path:
    from edgernn.export import export

    model.sizes = export(model.qmodel, folder, name="net", testbench=True)
    return folder


def build_elf(folder: Path, core: str, opt: str, out: Path) -> Path:
    """Cross-compiles the runtime, the model and the harness; returns the ELF."""
    from edgernn.export import RUNTIME_SOURCES

    out.mkdir(parents=True, exist_ok=True)
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", opt, *MCU_TARGETS[core], "-DERNN_NO_FLOAT", "-ffp-contract=off",
             "-ffunction-sections", "-fdata-sections", f"-DBENCH_MAX_STEPS={MAX_STEPS}", "-I", folder]
    sources = [folder / s for s in RUNTIME_SOURCES if s.endswith(".c")] + [folder / "net_model.c", HARNESS]
    objects = []
    for source in sources:
        obj = out / (source.stem + ".o")
        _run(["arm-none-eabi-gcc", *flags, "-c", source, "-o", obj])
        objects.append(obj)
    elf = out / "bench.elf"
    _run(["arm-none-eabi-gcc", *MCU_TARGETS[core], "-nostartfiles", "-Wl,--gc-sections", "-T", LINKER_SCRIPT,
          "-o", elf, *objects])
    return elf


def symbols(elf: Path) -> dict:
    table = {}
    for line in _run(["arm-none-eabi-nm", elf]).splitlines():
        parts = line.split()
        if len(parts) == 3:
            table[parts[2]] = int(parts[0], 16)
    return table


def function_table(elf: Path) -> tuple[list, list, list]:
    """The ELF's functions sorted by address: entry addresses (Thumb bit cleared), end addresses and names."""
    functions = []
    for line in _run(["arm-none-eabi-nm", "-S", "--defined-only", elf]).splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            start = int(parts[0], 16) & ~1
            functions.append((start, start + int(parts[1], 16), parts[3]))
    functions.sort()
    return [f[0] for f in functions], [f[1] for f in functions], [f[2] for f in functions]


ARMV6M_WIDE = {"bl", "mrs", "msr", "dmb", "dsb", "isb"}  # the only 32-bit instructions ARMv6-M has


def disassemble(elf: Path) -> tuple[list, set, set, set]:
    """The address of every instruction in the ELF's code, from arm-none-eabi-objdump (literal pools,
    which objdump marks as data with the ELF's mapping symbols, are not instructions), and the set of
    addresses of the instructions inside IT blocks (Thumb-2's conditional execution: ``it``, ``ite``,
    ``itt``... make the next 1-4 instructions conditional), the mnemonics of the 32-bit ones, and
    every mnemonic (without its ``.w``/``.n`` suffix)."""
    addresses, in_it, wide, mnemonics = [], set(), set(), set()
    pending = 0
    for line in _run(["arm-none-eabi-objdump", "-d", elf]).splitlines():
        # an instruction: "address:<TAB>hhhh[ hhhh] <TAB>mnemonic<TAB>operands" (data dumps have no 2nd tab)
        parts = line.split("\t")
        if len(parts) < 3 or not re.fullmatch(r"\s*[0-9a-f]+:", parts[0]):
            continue
        halfwords = parts[1].split()
        if not (1 <= len(halfwords) <= 2 and all(re.fullmatch(r"[0-9a-f]{4}", h) for h in halfwords)):
            continue
        address, mnemonic = int(parts[0].strip()[:-1], 16), parts[2].strip()
        if mnemonic.startswith("."):  # .word, .short, .byte: a literal pool
            continue
        addresses.append(address)
        mnemonics.add(mnemonic.split(".")[0])
        if len(halfwords) == 2:
            wide.add(mnemonic.split(".")[0])
        if pending:
            in_it.add(address)
            pending -= 1
        elif re.fullmatch(r"it[te]{0,3}", mnemonic):
            pending = len(mnemonic) - 1
    return sorted(addresses), in_it, wide, mnemonics


def section_sizes(elf: Path) -> dict:
    sizes = {}
    for line in _run(["arm-none-eabi-size", "-A", elf]).splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("."):
            sizes[parts[0]] = int(parts[1])
    return sizes


def object_flash(obj: Path) -> int:
    text, data = (int(v) for v in _run(["arm-none-eabi-size", obj]).splitlines()[1].split()[:2])
    return text + data


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    instructions: int
    code_hook_instructions: int | None  # with check_count
    it_skipped: int  # with check_count: instructions the code hook did not see, all inside IT blocks
    step_entries: list  # instruction count at each entry of ernn_step_int8
    outputs: np.ndarray | None
    status: int
    stack_bytes: int
    profile: "Profile | None" = None  # with per_function


@dataclass
class Profile:
    """What ran inside ``ernn_step_int8``, function by function. ``own[name]``: the instructions of the
    function's own code (its callees' not included); ``calls[name]``: one (step index, instructions)
    per call, in the order of the calls, the instructions from its entry to its return, callees
    included. The own counts add up to the sum of ``ernn_step_int8``'s calls."""
    own: dict
    calls: dict


class Emulator:
    """One linked ELF in unicorn: its flash image (``objcopy -O binary``, which starts at the vector
    table at 0x08000000), run from Reset_Handler to bench_done."""

    def __init__(self, elf: Path, core: str, work: Path):
        image = work / (elf.stem + ".bin")
        _run(["arm-none-eabi-objcopy", "-O", "binary", elf, image])
        self.image = image.read_bytes()
        self.elf, self.core = elf, core
        self.symbols = symbols(elf)
        if self.symbols.get("bench_vectors") != FLASH:
            raise BenchError("the vector table is not at the start of flash")
        self.addresses, self.in_it, wide, self.mnemonics = disassemble(elf)
        if core == "cortex-m0plus" and (wide - ARMV6M_WIDE or self.in_it):
            raise BenchError(f"the {core} build has instructions ARMv6-M lacks: {sorted(wide - ARMV6M_WIDE)}")
        self._block_sizes: dict = {}

    def _instructions_in(self, address: int, size: int) -> int:
        key = (address, size)
        count = self._block_sizes.get(key)
        if count is None:
            count = bisect.bisect_left(self.addresses, address + size) - bisect.bisect_left(self.addresses, address)
            if count <= 0:
                raise BenchError(f"an executed block at {address:#x} has no instruction in the disassembly")
            self._block_sizes[key] = count
        return count

    def run(self, mode: int, n: int, x_q: np.ndarray | None = None, outputs: int = 0,
            check_count: bool = False, per_function: bool = False) -> Run:
        import unicorn
        from unicorn import arm_const

        uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        model = arm_const.UC_CPU_ARM_CORTEX_M4 if self.core == "cortex-m4" else arm_const.UC_CPU_ARM_CORTEX_M0
        uc.ctl_set_cpu_model(model)
        uc.mem_map(FLASH, FLASH_SIZE, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
        uc.mem_map(RAM, RAM_SIZE, unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE)
        uc.mem_write(FLASH, self.image)
        stack_top = RAM + RAM_SIZE
        ebss = self.symbols["_ebss"]
        io = self.symbols["bench_io"]
        stack_floor = max(ebss, io + 16 + MAX_STEPS * 64)  # bench_io is below the stack; generous bound
        uc.mem_write(stack_floor, bytes([STACK_PATTERN]) * (stack_top - stack_floor))
        uc.mem_write(io, np.array([mode, n, -99, 0], np.int32).tobytes())
        if x_q is not None:
            uc.mem_write(io + 16, np.ascontiguousarray(x_q, np.int8).tobytes())
        uc.reg_write(arm_const.UC_ARM_REG_SP, int.from_bytes(self.image[0:4], "little"))

        counter = [0, 0]
        entries = []
        blocks: dict = {}
        executed: dict = {}
        step_entry = self.symbols["ernn_step_int8"] & ~1
        instructions_in = self._instructions_in

        def on_block(_uc, address, size, _data):
            if address == step_entry:
                entries.append(counter[0])
            counter[0] += instructions_in(address, size)
            if check_count:
                blocks[address, size] = blocks.get((address, size), 0) + 1

        uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
        profile = self._profile_hook(uc, step_entry) if per_function else None
        if check_count:
            def on_code(_uc, address, _size, _data):
                executed[address] = executed.get(address, 0) + 1
            uc.hook_add(unicorn.UC_HOOK_CODE, on_code)
        reset = int.from_bytes(self.image[4:8], "little")
        done = self.symbols["bench_done"] & ~1
        try:
            uc.emu_start(reset, done, count=2_000_000_000)
        except unicorn.UcError as error:
            pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
            raise BenchError(f"{self.core}: emulation stopped at {pc:#x}: {error}") from error
        if uc.reg_read(arm_const.UC_ARM_REG_PC) & ~1 != done:
            raise BenchError(f"{self.core}: emulation did not reach bench_done")
        status = int(np.frombuffer(bytes(uc.mem_read(io + 8, 4)), np.int32)[0])
        y = None
        if outputs:
            offset = io + 16 + MAX_STEPS * int(x_q.shape[1])
            y = np.frombuffer(bytes(uc.mem_read(offset, n * outputs)), np.int8).reshape(n, outputs).copy()
        stack = bytes(uc.mem_read(stack_floor, stack_top - stack_floor))
        untouched = len(stack) - len(stack.lstrip(bytes([STACK_PATTERN])))
        it_skipped = self._compare_counts(blocks, executed) if check_count else 0
        return Run(counter[0], sum(executed.values()) if check_count else None, it_skipped, entries, y, status,
                   stack_top - stack_floor - untouched, profile)

    # libgcc's switch-table helpers of Thumb-1 code (gcc -Os on the Cortex-M0+): called with BL, they jump
    # to a case, not back to the link register; their instructions count as theirs, but not as calls
    NOT_CALLS = ("__gnu_thumb1_case_",)

    def _profile_hook(self, uc, step_entry: int) -> Profile:
        """Adds a basic-block hook that fills the returned Profile while the emulation runs. A call is
        seen at the block that starts at a function's entry address (a call or a tail call: the
        return address is the link register there) and ends at the first block that starts at its
        return address (a tail-called function returns to its caller's return address: both end
        there; a call above them that never came back to its own return address ends with them). A
        branch back to the entry of the function on top of the call stack is a loop, not a call (the
        runtime has no recursion)."""
        import unicorn
        from unicorn import arm_const

        starts, ends, names = function_table(self.elf)
        entries = dict(zip(starts, names))
        profile = Profile({}, {})
        frames = []  # the calls under way inside a step: (name, return address, count at entry, step index)
        returns: dict = {}  # return address -> frames that return there
        count, steps = [0], [-1]
        instructions_in = self._instructions_in

        def on_block(_uc, address, size, _data):
            while address in returns:  # the return of the innermost call to return here, and of its tail calls
                name, back, start, step = frames.pop()
                returns[back] -= 1
                if not returns[back]:
                    del returns[back]
                profile.calls.setdefault(name, []).append((step, count[0] - start))
                if back == address and (not frames or frames[-1][1] != address):
                    break
            name = entries.get(address)
            if (name is not None and (address == step_entry or frames) and not (frames and frames[-1][0] == name)
                    and not name.startswith(self.NOT_CALLS)):
                if address == step_entry:  # calls outside the steps (start-up, ernn_init) are not followed
                    steps[0] += 1
                back = _uc.reg_read(arm_const.UC_ARM_REG_LR) & ~1
                frames.append((name, back, count[0], steps[0]))
                returns[back] = returns.get(back, 0) + 1
            instructions = instructions_in(address, size)
            if frames:
                at = bisect.bisect_right(starts, address) - 1
                owner = names[at] if at >= 0 and address < ends[at] else f"{address:#x}"
                profile.own[owner] = profile.own.get(owner, 0) + instructions
            count[0] += instructions

        uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
        return profile

    def _compare_counts(self, blocks: dict, executed: dict) -> int:
        """The block counter against the per-instruction one, address by address. unicorn's UC_HOOK_CODE
        does not fire for an instruction of an IT block whose condition fails; the core still issues it
        (on a Cortex-M4 it takes its cycle as a no-op), and the block count includes it. Any other
        difference is an error. Returns the number of such IT-skipped instructions."""
        from_blocks: dict = {}
        for (address, size), times in blocks.items():
            lo, hi = bisect.bisect_left(self.addresses, address), bisect.bisect_left(self.addresses, address + size)
            for a in self.addresses[lo:hi]:
                from_blocks[a] = from_blocks.get(a, 0) + times
        skipped = 0
        for address in set(from_blocks) | set(executed):
            missing = from_blocks.get(address, 0) - executed.get(address, 0)
            if missing < 0 or (missing > 0 and address not in self.in_it):
                raise BenchError(f"{self.core}: the instruction at {address:#x} counted {from_blocks.get(address, 0)} "
                                 f"times by blocks, {executed.get(address, 0)} times by UC_HOOK_CODE")
            skipped += missing
        return skipped


# ---------------------------------------------------------------------------------------------
# One model on one core
# ---------------------------------------------------------------------------------------------
def host_testbench(folder: Path, x: np.ndarray, work: Path) -> np.ndarray:
    """The export's testbench (its Makefile's ``testbench`` target) built with the host's C compiler:
    raw int8 outputs of x (T, features)."""
    compiler = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if compiler is None:
        raise BenchError("no host C compiler (gcc, cc or clang) for the testbench")
    shutil.copytree(folder, work, dirs_exist_ok=True)  # make builds in place: the copy keeps host objects out
    _run(["make", "-s", "-C", work, "testbench", f"CC={compiler}", "CFLAGS=-O1"])
    result = subprocess.run([str(work / "testbench"), "--int8"], input=np.ascontiguousarray(x, "<f4").tobytes(),
                            capture_output=True)
    if result.returncode != 0:
        raise BenchError(f"the testbench failed: {result.stderr.decode(errors='replace')}")
    return np.frombuffer(result.stdout, np.int8).reshape(len(x), -1)


def check_kernel(emulator: Emulator, core: str, opt: str) -> None:
    """The build runs the matrix-vector kernel of ernn_internal.h meant for its core: on the
    Cortex-M4 the DSP one (SMLAD, UXTB16), on the Cortex-M0+ the Thumb-1 loop (the function
    ernn_dot4, not inlined there; the plain C one is inlined everywhere)."""
    if core == "cortex-m4" and not {"smlad", "uxtb16"} <= emulator.mnemonics:
        raise BenchError(f"{core} {opt}: no SMLAD and UXTB16 in the build: not the DSP kernel")
    if core == "cortex-m0plus" and "ernn_dot4" not in emulator.symbols:
        raise BenchError(f"{core} {opt}: no ernn_dot4 in the build: not the ARMv6-M kernel")


def measure(model: BenchModel, core: str, opt: str, work: Path, expected: np.ndarray,
            check_count: bool = False, per_function: bool = False) -> dict:
    """Builds and runs the model on one core at one optimization level; checks the calibration and
    the outputs; returns the figures (with per_function, also "functions": function_rows' rows)."""
    folder = work / model.key
    build = work / f"{model.key}-{core}{opt}"
    elf = build_elf(folder, core, opt, build)
    emulator = Emulator(elf, core, build)
    if any(layer.recurrent for layer in model.qmodel.spec.layers):
        check_kernel(emulator, core, opt)

    calibration = [emulator.run(1, n, check_count=check_count) for n in (0, CALIBRATION_LOOPS)]
    if calibration[1].instructions - calibration[0].instructions != 2 * CALIBRATION_LOOPS:
        raise BenchError(f"{core} {opt}: the calibration loop counted "
                         f"{calibration[1].instructions - calibration[0].instructions} instructions, not "
                         f"{2 * CALIBRATION_LOOPS}")

    x_q = model.qmodel.quantize_input(model.x)
    steps, outputs = x_q.shape[0], model.qmodel.output_features
    empty = emulator.run(0, 0, x_q, outputs, check_count)
    full = emulator.run(0, steps, x_q, outputs, check_count, per_function)
    for run in (*calibration, empty, full):
        if run.status != 0:
            raise BenchError(f"{core} {opt}: ernn returned status {run.status}")
        if check_count and run.code_hook_instructions + run.it_skipped != run.instructions:
            raise BenchError(f"{core} {opt}: UC_HOOK_CODE counted {run.code_hook_instructions} instructions "
                             f"(+ {run.it_skipped} skipped in IT blocks), UC_HOOK_BLOCK {run.instructions}")
        if run.it_skipped and core == "cortex-m0plus":
            raise BenchError(f"{core} {opt}: IT blocks on an ARMv6-M core")
    if not np.array_equal(full.outputs, expected):
        bad = np.argwhere(full.outputs != expected)
        raise BenchError(f"{model.key} on {core} {opt}: the emulated outputs differ from the simulation's at "
                         f"(step, output) {bad[:5].tolist()} ({len(bad)} values)")
    if len(full.step_entries) != steps:
        raise BenchError(f"{core} {opt}: ernn_step_int8 was entered {len(full.step_entries)} times, not {steps}")
    per_step = np.diff(full.step_entries) if steps > 1 else np.array([full.instructions - empty.instructions])
    functions = function_rows(full.profile, steps, f"{core} {opt}") if per_function else None
    sections = section_sizes(elf)
    flash = sum(sections.get(s, 0) for s in (".isr_vector", ".text", ".ARM.exidx", ".data"))
    static_ram = sections.get(".data", 0) + sections.get(".bss", 0)
    return {
        "model": model.label, "key": model.key, "core": core, "opt": opt, "steps": steps,
        "instructions_per_step": (full.instructions - empty.instructions) / steps,
        "step_min": int(per_step.min()), "step_max": int(per_step.max()),
        "total_instructions": full.instructions, "overhead_instructions": empty.instructions,
        "calibration": calibration[1].instructions - calibration[0].instructions,
        "flash": flash, "model_flash": object_flash(build / "net_model.o"),
        "static_ram": static_ram, "stack": full.stack_bytes, "ram": static_ram + full.stack_bytes,
        "state_scratch": model.sizes["state_bytes"] + model.sizes["scratch_bytes"],
        "outputs": full.outputs, "code_hook_checked": check_count, "functions": functions,
    }


def function_rows(profile: Profile, steps: int, build: str) -> list:
    """Per function called inside ernn_step_int8, per step: calls, own instructions, instructions
    from entry to return (callees included), and those of each call in the order of the calls within
    a step when every step makes the same number of them; the most instructions first. Checks that
    the own counts add up to ernn_step_int8's."""
    step_calls = profile.calls.get("ernn_step_int8", [])
    if len(step_calls) != steps or sum(profile.own.values()) != sum(n for _, n in step_calls):
        raise BenchError(f"{build}: the per-function counts do not add up to ernn_step_int8's "
                         f"({sum(profile.own.values())} against {sum(n for _, n in step_calls)})")
    rows = []
    for name in set(profile.own) | set(profile.calls):
        calls = profile.calls.get(name, [])
        per_step = [[n for step, n in calls if step == s] for s in range(steps)]
        by_order = ([sum(column) / steps for column in zip(*per_step)]
                    if calls and all(len(p) == len(per_step[0]) for p in per_step) else None)
        rows.append({"function": name, "calls": len(calls) / steps, "own": profile.own.get(name, 0) / steps,
                     "inclusive": sum(n for _, n in calls) / steps if calls else None, "per_call": by_order})
    return sorted(rows, key=lambda r: -(r["inclusive"] if r["inclusive"] is not None else r["own"]))


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
DEFAULT_MODELS = ("basicmotions", "a", "d", "f")
MODEL_KEYS = (*DEFAULT_MODELS, "g")  # (g): (f)'s LSTM(32) + Dense(4) alone, to compare with (f)


def bench(models=DEFAULT_MODELS, cores=tuple(CORES), opts=OPT_LEVELS, steps: int = 16, check_count: bool = False,
          log=lambda message: None, per_function: bool = False) -> list:
    """Every model on every core at every optimization level; raises BenchError when a check fails."""
    if not 1 <= steps <= MAX_STEPS:
        raise BenchError(f"--steps must be 1..{MAX_STEPS}")
    results = []
    with tempfile.TemporaryDirectory(prefix="edgernn-mcu-") as tmp:
        work = Path(tmp)
        for key in models:
            log(f"{key}: quantizing and exporting")
            model = load_model(key, steps)
            export_model(model, work / key)
            expected = model.qmodel.stream(1).run_int8(model.qmodel.quantize_input(model.x)[None])[0]
            testbench = host_testbench(work / key, model.x, work / f"{key}-host")
            if not np.array_equal(testbench, expected):
                raise BenchError(f"{key}: the host testbench's outputs differ from the simulation's")
            for core in cores:
                for opt in opts:
                    log(f"{key}: {core} {opt}")
                    results.append(measure(model, core, opt, work, expected, check_count, per_function))
    return results


def _group(n) -> str:
    return f"{n:,}"


def markdown(results, compiler: str) -> str:
    from edgernn.bench import markdown_table

    headers = ["model", "core", "opt", "instructions / step (min-max)", "flash B (model)",
               "RAM B (state+scratch, stack)"]
    rows = []
    for r in results:
        rows.append([r["model"], r["core"], r["opt"],
                     f"{r['instructions_per_step']:,.0f} ({_group(r['step_min'])}-{_group(r['step_max'])})",
                     f"{_group(r['flash'])} ({_group(r['model_flash'])})",
                     f"{_group(r['ram'])} ({_group(r['state_scratch'])}, {_group(r['stack'])})"])
    import unicorn

    steps = results[0]["steps"] if results else 0
    return (markdown_table(headers, rows) + "\n\n"
            f"{compiler}; unicorn {unicorn.__version__} (M0+ run on its Cortex-M0 model, its binary checked to hold "
            f"ARMv6-M instructions only); {steps} steps per run; every run's outputs equal the Python "
            f"simulation's and the host testbench's bit for bit; each build held its core's matrix-vector kernel "
            f"(SMLAD on the M4, ernn_dot4 on the M0+); the calibration loop counted exactly 2 "
            f"instructions per iteration on every build. Instructions, not cycles.")


def function_markdown(result) -> str:
    """One build's per-function table (--per-function)."""
    from edgernn.bench import markdown_table

    def figure(value):
        return "" if value is None else f"{value:,.0f}" if value == int(value) or value >= 100 else f"{value:,.2f}"

    rows = [[f"`{r['function']}`", figure(r["calls"]), figure(r["own"]), figure(r["inclusive"]),
             " / ".join(figure(v) for v in r["per_call"]) if r["per_call"] and 1 < len(r["per_call"]) <= 8 else ""]
            for r in result["functions"]]
    headers = ["function", "calls", "own instructions", "entry to return", "each call, in order (up to 8)"]
    return (f"{result['model']}, {result['core']} {result['opt']}: per step, inside `ernn_step_int8` "
            f"(own: the function's own code; entry to return: callees included)\n\n" + markdown_table(headers, rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: the BasicMotions model on cortex-m0plus at -O2, 4 steps, both counters")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"any of {','.join(MODEL_KEYS)}")
    parser.add_argument("--cores", default=",".join(CORES), help=f"any of {','.join(CORES)}")
    parser.add_argument("--opts", default=",".join(OPT_LEVELS), help="any of -O2,-Os (and other gcc -O levels)")
    parser.add_argument("--steps", type=int, default=16, help=f"timesteps per run, 1..{MAX_STEPS}")
    parser.add_argument("--check-count", action="store_true",
                        help="also count with a per-instruction hook (UC_HOOK_CODE) and require the same totals")
    parser.add_argument("--per-function", action="store_true",
                        help="also print, for each build, the instructions per step of each function ernn_step_int8 "
                             "runs: its own and from entry to return (callees included), per call")
    args = parser.parse_args(argv)
    if shutil.which("arm-none-eabi-gcc") is None:
        print("arm-none-eabi-gcc is not installed (apt install gcc-arm-none-eabi libnewlib-arm-none-eabi)",
              file=sys.stderr)
        return 2
    if args.quick:
        models, cores, opts, steps, check = ("basicmotions",), ("cortex-m0plus",), ("-O2",), 4, True
    else:
        models, cores = args.models.split(","), args.cores.split(",")
        opts, steps, check = args.opts.split(","), args.steps, args.check_count
    unknown = [m for m in models if m not in MODEL_KEYS] + [c for c in cores if c not in CORES]
    if unknown:
        parser.error(f"unknown model or core: {', '.join(unknown)}")
    try:
        results = bench(models, cores, opts, steps, check, log=lambda m: print(m, file=sys.stderr, flush=True),
                        per_function=args.per_function)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(markdown(results, compiler_version()))
    for result in results if args.per_function else ():
        print("\n" + function_markdown(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
