"""The command outputs and size figures quoted in README.md and docs/*.md are what the commands
print now (tools/check_doc_outputs.py), and a figure that drifts is caught."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_doc_outputs  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="flash sizes need arm-none-eabi-gcc (apt install gcc-arm-none-eabi)")

FILES = ("README.md", "docs/microcontrollers.md", "docs/firmware.md")


@pytest.fixture(scope="module")
def sizes_cache():
    return {}


def test_docs_quote_what_the_commands_print(sizes_cache):
    problems = check_doc_outputs.check(cache=sizes_cache)
    assert not problems, "\n".join(problems) + (
        "\n\n`python tools/check_doc_outputs.py --write` rewrites the marked blocks; figures in prose by hand")


def test_every_quoted_export_output_is_marked():
    """An ``edgernn export`` output pasted without its marker would go unchecked."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text().split("\n")
        for number, line in enumerate(lines):
            if line.startswith("cortex-m4 (arm-none-eabi-gcc") or line.startswith("weights ") and "per stream" in line:
                fence = max(i for i in range(number) if lines[i].startswith("```"))
                assert check_doc_outputs.MARKER.match(lines[fence - 1]), f"{path.name}:{number + 1}: unmarked output"


def _copy(tmp_path, edits):
    """README.md and the docs with ``{file: (old, new)}`` replaced once each, under ``tmp_path``."""
    for name in FILES:
        text = (ROOT / name).read_text()
        if name in edits:
            old, new = edits[name]
            assert text.count(old) >= 1, (name, old)
            text = text.replace(old, new, 1)
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return [tmp_path / name for name in FILES]


@pytest.mark.parametrize("name, old, new, expected", [
    ("docs/microcontrollers.md", "weights 5236 bytes, state 48", "weights 5237 bytes, state 48",
     "is not what `edgernn export"),
    ("docs/microcontrollers.md", "[-0.9996, 0.9983]", "[-0.9998, 0.9986]", "is not what `edgernn export"),
    ("docs/firmware.md", "| Cortex-M4 | 8014 |", "| Cortex-M4 | 4902 |", "is not what `python tools/check_doc_outputs"),
    ("README.md", "about 8.0 KB of runtime code", "about 4.1 KB of runtime code", "4.1 should be 8.0"),
    ("README.md", "48 bytes of\nstate per stream", "46 bytes of\nstate per stream", "46 should be 48"),
    ("docs/microcontrollers.md", "(8014 runtime + 5784 model)", "(4902 runtime + 5784 model)", "4902 should be 8014"),
    ("docs/microcontrollers.md", "~13 KB (Cortex-M0+) for float", "~9 KB (Cortex-M0+) for float", "9 should be 13"),
    ("docs/firmware.md", "Of the int8 model's 5236 bytes", "Of the int8 model's 5100 bytes", "5100 should be 5236"),
    ("README.md", "KB of runtime code and", "KB of runtime and", "no sentence matches"),
])
def test_a_drifted_figure_fails_the_check(tmp_path, sizes_cache, name, old, new, expected):
    _copy(tmp_path, {name: (old, new)})
    problems = check_doc_outputs.check([tmp_path / name], root=tmp_path, cache=sizes_cache)
    *drifts, toolchain = problems
    assert drifts and all(p.startswith(f"{name}:") for p in drifts) and expected in drifts[0], problems
    assert toolchain.startswith("(flash sizes measured with arm-none-eabi-gcc")


def test_write_rewrites_a_drifted_block(tmp_path, sizes_cache):
    _copy(tmp_path, {"docs/firmware.md": ("| 12238 | 6964 |", "| 7000 | 6964 |")})
    paths = [tmp_path / "docs/firmware.md"]
    assert check_doc_outputs.check(paths, write=True, root=tmp_path, cache=sizes_cache)
    assert (tmp_path / "docs/firmware.md").read_text() == (ROOT / "docs/firmware.md").read_text()
    assert check_doc_outputs.check(paths, root=tmp_path, cache=sizes_cache) == []
