"""Check that the command outputs and size figures quoted in README.md and docs/*.md are what the
commands print now (tests/test_docs.py runs it).

Quoted output is marked in the Markdown by an HTML comment before it (invisible when rendered)::

    <!-- setup: edgernn convert edgernn/examples/basicmotions_lstm.keras -o basicmotions.ernn --no-verify -->
    <!-- output of: edgernn export basicmotions.ernn --quant int8 ... -o imu_fw --name imu -->
    ```
    wrote imu_fw: imu_model.h/.c (int8), ...
    ```

* ``output of: COMMAND``: the fenced block (or Markdown table) after it is COMMAND's standard
  output, line for line;
* ``setup: COMMAND``: run, its output not shown (the model the next command reads, say).

A file's commands run in its order, in a temporary directory where ``edgernn/examples`` is the
package's shipped examples, so they read as run from the checkout. Two kinds are understood:
``edgernn ...`` (run in this process, through the click command) and
``python tools/check_doc_outputs.py --sizes MODEL CALIBRATION`` (this tool's table of firmware
sizes, docs/firmware.md). Anything else is an error: a marker must be checkable.

Figures in prose ("about 5.0 KB of runtime code") are in :data:`FIGURES`: a pattern in a file
whose numbers must equal, to the precision they are written with, the sizes the same run of the
sizes table measures (``5.0 KB``: within 50 bytes; ``48 bytes``: exactly). A sentence reworded so
that its pattern no longer matches is an error too: update the pattern with the sentence.

Not covered: timings (machine-dependent: docs/benchmarks.md, written by tools/bench/run.py) and
accuracy on the public data sets (tools/quant_accuracy.py and tools/quant_accuracy_more.py, which
need the data and minutes of training). The flash sizes are arm-none-eabi-gcc's: without it the
check cannot run, and another version of it may print other sizes.

    python tools/check_doc_outputs.py                 # check all; exit 1 listing every drift
    python tools/check_doc_outputs.py --write         # rewrite the marked blocks (prose: listed, not rewritten)
    python tools/check_doc_outputs.py docs/firmware.md
    python tools/check_doc_outputs.py --sizes MODEL CALIBRATION
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/*.md")
TOOL = "python tools/check_doc_outputs.py"
MARKER = re.compile(r"^<!-- (setup|output of): (.+?) -->\s*$")

# The firmware sizes table (docs/firmware.md): scheme, target, and how the table names them.
SIZE_ROWS = (("int8", "cortex-m0plus", "int8 (`ERNN_NO_FLOAT`)", "Cortex-M0+ soft float"),
             ("int8", "cortex-m4", "int8 (`ERNN_NO_FLOAT`)", "Cortex-M4"),
             ("int8-weights", "cortex-m4", "int8-weights", "Cortex-M4 hard float"),
             ("float32", "cortex-m4", "float32", "Cortex-M4 hard float"),
             ("float32", "cortex-m0plus", "float32", "Cortex-M0+ soft float"))
# The model and calibration whose sizes the prose figures quote: the shipped example.
EXAMPLE = ("edgernn/examples/basicmotions_lstm.keras", "edgernn/examples/basicmotions_trace.csv")


@dataclass(frozen=True)
class Figure:
    """Numbers in a sentence of ``file``: ``pattern`` (matched with runs of white space as one
    space) captures each; ``sizes`` maps a group to the size keys (``scheme/target/field``, fields
    as :func:`measure_sizes` gives them) it must equal, in ``unit`` bytes (1000: KB); ``bounds``,
    to the keys it must be at least (a claim such as "fits in 16 KB")."""

    file: str
    pattern: str
    sizes: dict[str, tuple[tuple[str, ...], int]]
    bounds: dict[str, tuple[tuple[str, ...], int]] | None = None


M4, M0 = "int8/cortex-m4", "int8/cortex-m0plus"
FLOAT_RUNTIMES_M4 = ("float32/cortex-m4/runtime_flash", "int8-weights/cortex-m4/runtime_flash")
FIGURES = (
    Figure("README.md", r"about (?P<runtime>[\d.]+) KB of runtime code and (?P<model>[\d.]+) KB of model in a "
                        r"Cortex-M4's flash and (?P<state>\d+) bytes of state per stream",
           {"runtime": ((f"{M4}/runtime_flash",), 1000), "model": ((f"{M4}/model_flash",), 1000),
            "state": ((f"{M4}/state_bytes",), 1)}),
    Figure("docs/microcontrollers.md", r"flash (?P<flash>[\d.]+) KB \((?P<runtime>\d+) runtime \+ (?P<model>\d+) "
                                       r"model\), RAM (?P<state>\d+) \+ (?P<scratch>\d+) bytes",
           {"flash": ((f"{M4}/flash",), 1000), "runtime": ((f"{M4}/runtime_flash",), 1),
            "model": ((f"{M4}/model_flash",), 1), "state": ((f"{M4}/state_bytes",), 1),
            "scratch": ((f"{M4}/scratch_bytes",), 1)}),
    Figure("docs/microcontrollers.md", r"~(?P<int8_m4>[\d.]+) KB \(Cortex-M4\) to ~(?P<int8_m0>[\d.]+) KB "
                                       r"\(Cortex-M0\+\) int8 .*?, ~(?P<float_m4>[\d.]+) KB "
                                       r"\(Cortex-M4\) to ~(?P<float_m0>[\d.]+) KB \(Cortex-M0\+\) for float schemes",
           {"int8_m4": ((f"{M4}/runtime_flash",), 1000), "int8_m0": ((f"{M0}/runtime_flash",), 1000),
            "float_m4": (FLOAT_RUNTIMES_M4, 1000),
            "float_m0": (("float32/cortex-m0plus/runtime_flash",), 1000)}),
    Figure("docs/microcontrollers.md", r"fits a Cortex-M0\+ with (?P<flash>\d+) KB flash", {},
           {"flash": ((f"{M0}/flash",), 1024)}),
    Figure("docs/firmware.md", r"Of the int8 model's (?P<weights>\d+) bytes, ", {"weights": ((f"{M4}/weight_bytes",), 1)}),
)


# -- the sizes ----------------------------------------------------------------------------------

def measure_sizes(model_path, calibration) -> dict[str, int]:
    """Export ``model_path`` quantized on ``calibration`` in every scheme of :data:`SIZE_ROWS` and
    build it for its target: ``{"scheme/target/field": bytes}``, fields those of ``export``'s and
    :func:`edgernn.export.mcu_sizes`'s results, and ``flash`` (runtime + model)."""
    import edgernn
    from edgernn.export import export, load_calibration, mcu_sizes

    model = edgernn.load(model_path)
    data = load_calibration(str(calibration), model.input_features)
    sizes, quantized = {}, {}
    for scheme, target, _, _ in SIZE_ROWS:
        if scheme not in quantized:
            quantized[scheme] = model.quantize(data, scheme=scheme)
        with tempfile.TemporaryDirectory() as folder:
            exported = export(quantized[scheme], folder, name="model")
            built = mcu_sizes(folder, "model", scheme, target)
        if built is None:
            raise SystemExit("arm-none-eabi-gcc (and arm-none-eabi-size) are needed to measure flash sizes")
        built["flash"] = built["runtime_flash"] + built["model_flash"]
        for field, value in {**exported, **built}.items():
            sizes[f"{scheme}/{target}/{field}"] = value
    return sizes


def sizes_table(sizes: dict[str, int]) -> list[str]:
    lines = ["| scheme | target | runtime flash | model flash | weights (arrays) | state / stream | scratch | static RAM |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for scheme, target, scheme_name, target_name in SIZE_ROWS:
        key = f"{scheme}/{target}/"
        runtime = str(sizes[key + "runtime_flash"])
        if scheme != "int8" and target == "cortex-m0plus":
            runtime += " (+ libgcc soft-float routines)"
        cells = [scheme_name, target_name, runtime] + [str(sizes[key + f]) for f in (
            "model_flash", "weight_bytes", "state_bytes", "scratch_bytes", "static_ram")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _contents(path) -> str:
    """A digest of a file's contents; of a zip's (an .ernn's) members, not its members' timestamps."""
    digest = hashlib.sha256()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in sorted(archive.namelist()):
                digest.update(member.encode() + b"\0" + archive.read(member) + b"\0")
    else:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def sizes_of(model_path, calibration, cache: dict) -> dict[str, int]:
    """:func:`measure_sizes`, once per model and calibration contents in ``cache``."""
    key = (_contents(model_path), _contents(calibration))
    if key not in cache:
        cache[key] = measure_sizes(model_path, calibration)
    return cache[key]


# -- running the marked commands ----------------------------------------------------------------

@contextlib.contextmanager
def workdir():
    """A temporary working directory holding ``edgernn/examples`` (the package's examples)."""
    import edgernn

    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="edgernn-doc-outputs-") as directory:
        (Path(directory) / "edgernn").mkdir()
        (Path(directory) / "edgernn" / "examples").symlink_to(Path(edgernn.__file__).parent / "examples")
        os.chdir(directory)
        try:
            yield Path(directory)
        finally:
            os.chdir(previous)


def run(command: str, cache: dict) -> list[str]:
    """What ``command`` prints on stdout, as lines (trailing blanks dropped)."""
    words = shlex.split(command)
    if words[:1] == ["edgernn"]:
        from click.testing import CliRunner

        from edgernn import cli

        result = CliRunner().invoke(cli.main, words[1:], prog_name="edgernn")
        if result.exit_code != 0:
            raise SystemExit(f"`{command}` failed (exit status {result.exit_code}):\n{result.output}"
                             + (f"\n{result.exception!r}" if result.exception else ""))
        text = result.stdout
    elif words[:-3] == shlex.split(TOOL) and words[-3] == "--sizes":
        text = "\n".join(sizes_table(sizes_of(words[-2], words[-1], cache)))
    else:
        raise SystemExit(f"cannot check the output of `{command}`: only `edgernn ...` and `{TOOL} --sizes` are run")
    return [line.rstrip() for line in text.rstrip("\n").split("\n")]


@dataclass
class Block:
    command: str
    start: int  # index of its first line in the file
    end: int  # index after its last line
    lines: list[str]


def marked(lines: list[str], name: str) -> list[tuple[str, str, Block | None]]:
    """The markers of a file, in order: ``(kind, command, block or None)``."""
    found = []
    for index, line in enumerate(lines):
        match = MARKER.match(line)
        if not match:
            continue
        kind, command = match.groups()
        if kind == "setup":
            found.append((kind, command, None))
            continue
        start = index + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        if start < len(lines) and lines[start].startswith("```"):
            end = start + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            block = Block(command, start + 1, end, lines[start + 1 : end])
        elif start < len(lines) and lines[start].startswith("|"):
            end = start
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            block = Block(command, start, end, lines[start:end])
        else:
            raise SystemExit(f"{name}:{index + 1}: no fenced block or table after the marker")
        found.append((kind, command, block))
    return found


def check_file(path: Path, name: str, cache: dict, write: bool) -> list[str]:
    """Run the markers of one file; the drifts, as messages (a diff each)."""
    lines = path.read_text().split("\n")
    problems, replacements = [], []
    with workdir():
        for kind, command, block in marked(lines, name):
            printed = run(command, cache)
            if block is None or [line.rstrip() for line in block.lines] == printed:
                continue
            diff = "\n".join(difflib.unified_diff(block.lines, printed, f"{name} (line {block.start + 1})",
                                                  f"`{command}` now", lineterm=""))
            problems.append(f"{name}: the block at line {block.start + 1} is not what `{command}` prints:\n{diff}")
            replacements.append((block, printed))
    if write and replacements:
        for block, printed in sorted(replacements, key=lambda r: -r[0].start):
            lines[block.start : block.end] = printed
        path.write_text("\n".join(lines))
    return problems


# -- figures in prose ---------------------------------------------------------------------------

def check_figures(files: dict[str, Path], sizes: dict[str, int]) -> list[str]:
    problems = []
    for figure in FIGURES:
        if figure.file not in files:
            continue
        text = re.sub(r"\s+", " ", files[figure.file].read_text())
        match = re.search(figure.pattern, text)
        if match is None:
            problems.append(f"{figure.file}: no sentence matches {figure.pattern!r} (reworded? update FIGURES "
                            f"in {TOOL.split()[1]})")
            continue
        for group, (keys, unit) in figure.sizes.items():
            written = match.group(group)
            decimals = len(written.partition(".")[2])
            tolerance = 0.5 * 10.0 ** -decimals * unit + 1e-9
            for key in keys:
                if abs(float(written) * unit - sizes[key]) > tolerance:
                    now = sizes[key] / unit
                    problems.append(f"{figure.file}: {match.group(0)!r}: {written} should be {now:.{decimals}f} "
                                    f"({key} = {sizes[key]} bytes)")
        for group, (keys, unit) in (figure.bounds or {}).items():
            for key in keys:
                if float(match.group(group)) * unit < sizes[key]:
                    problems.append(f"{figure.file}: {match.group(0)!r}: no longer true, {key} = {sizes[key]} bytes")
    return problems


def toolchain() -> str:
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        return "arm-none-eabi-gcc: not installed"
    return subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.split("\n")[0]


def check(paths=None, write: bool = False, root: Path = ROOT, cache: dict | None = None) -> list[str]:
    """Every drift in ``paths`` (default: README.md and docs/*.md under ``root``), as messages;
    [] when none. Files are named relative to ``root`` (which :data:`FIGURES` uses); ``cache``
    keeps measured sizes from call to call."""
    root = Path(root).resolve()
    paths = [Path(p).resolve() for p in paths] if paths else sorted(
        p for pattern in DOCS for p in root.glob(pattern))
    files = {p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p): p for p in paths}
    cache = {} if cache is None else cache
    problems = []
    for name, path in files.items():
        problems += check_file(path, name, cache, write)
    if any(figure.file in files for figure in FIGURES):
        with workdir():
            run(f"edgernn convert {EXAMPLE[0]} -o example.ernn --no-verify", cache)
            problems += check_figures(files, sizes_of("example.ernn", EXAMPLE[1], cache))
    if problems and shutil.which("arm-none-eabi-gcc"):
        problems.append(f"(flash sizes measured with {toolchain()})")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("files", nargs="*", help="Markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--write", action="store_true", help="rewrite the marked blocks with what the commands print")
    parser.add_argument("--sizes", nargs=2, metavar=("MODEL", "CALIBRATION"), help="print the firmware sizes table")
    args = parser.parse_args(argv)
    if args.sizes:
        print("\n".join(sizes_table(measure_sizes(*args.sizes))))
        return 0
    problems = check(args.files, write=args.write)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("doc outputs: all as the commands print them")
    elif args.write:
        print("blocks rewritten; figures in prose (if listed) are to be edited by hand", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
