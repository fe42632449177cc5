"""The command outputs and size figures quoted in README.md and docs/*.md are what the commands
print now (tools/check_doc_outputs.py), and a figure that drifts is caught."""

from __future__ import annotations

import re
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


# (file, a regex whose group 1 is a figure as the file writes it now, what the check must say of
# that figure made wrong: {wrong} and {now} filled in). The figure is read from the file, so the
# cases hold when the runtime's size changes; "1" written before it makes it wrong.
DRIFTS = [
    ("docs/microcontrollers.md", r"weights (\d+) bytes, state 48", "is not what `edgernn export"),
    ("docs/firmware.md", r"\| Cortex-M4 \| (\d+) \|", "is not what `python tools/check_doc_outputs"),
    ("README.md", r"about ([\d.]+) KB of runtime code", "{wrong} should be {now}"),
    ("README.md", r"(\d+) bytes of\nstate per stream", "{wrong} should be {now}"),
    ("docs/microcontrollers.md", r"\((\d+) runtime \+ \d+ model\)", "{wrong} should be {now}"),
    ("docs/microcontrollers.md", r"~([\d.]+) KB \(Cortex-M0\+\) for float", "{wrong} should be {now}"),
    ("docs/firmware.md", r"Of the int8 model's (\d+) bytes", "{wrong} should be {now}"),
]


def _drifted(name: str, pattern: str, message: str = "") -> tuple:
    """(the text ``pattern`` finds in ``name`` now, the same with its figure made wrong, ``message``
    with the figure and the wrong one filled in)."""
    found = re.search(pattern, (ROOT / name).read_text())
    assert found, f"{name} has no {pattern!r}: update DRIFTS with the sentence"
    now, text = found.group(1), found.group(0)
    wrong = "1" + now
    at = found.start(1) - found.start()
    return text, text[:at] + wrong + text[at + len(now):], message.format(now=now, wrong=wrong)


@pytest.mark.parametrize("name, old, new, expected", [
    *[(name, *_drifted(name, pattern, message)) for name, pattern, message in DRIFTS],
    ("docs/microcontrollers.md", "[-0.9996, 0.9983]", "[-0.9998, 0.9986]", "is not what `edgernn export"),
    ("README.md", "KB of runtime code and", "KB of runtime and", "no sentence matches"),
])
def test_a_drifted_figure_fails_the_check(tmp_path, sizes_cache, name, old, new, expected):
    _copy(tmp_path, {name: (old, new)})
    problems = check_doc_outputs.check([tmp_path / name], root=tmp_path, cache=sizes_cache)
    *drifts, toolchain = problems
    assert drifts and all(p.startswith(f"{name}:") for p in drifts) and expected in drifts[0], problems
    assert toolchain.startswith("(flash sizes measured with arm-none-eabi-gcc")


def test_write_rewrites_a_drifted_block(tmp_path, sizes_cache):
    old, new, _ = _drifted("docs/firmware.md", r"\| Cortex-M4 hard float \| (\d+) \|")
    _copy(tmp_path, {"docs/firmware.md": (old, new)})
    paths = [tmp_path / "docs/firmware.md"]
    assert check_doc_outputs.check(paths, write=True, root=tmp_path, cache=sizes_cache)
    assert (tmp_path / "docs/firmware.md").read_text() == (ROOT / "docs/firmware.md").read_text()
    assert check_doc_outputs.check(paths, root=tmp_path, cache=sizes_cache) == []
