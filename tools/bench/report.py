"""Markdown for the benchmark results: one table per section, a targets summary, the machine."""

from __future__ import annotations

import math
import re
from pathlib import Path

from edgernn.bench import format_system, format_time, markdown_table

from .cold import COLD, NUMBA_CACHE, WARM

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _cell(table, row, key, footnotes):
    problem = table.problems.get((row, key))
    if problem:
        if problem not in footnotes:
            footnotes.append(problem)
        return f"n/a [{footnotes.index(problem) + 1}]" if not problem.startswith("disagrees") else \
            f"{problem.split(':')[0]} [{footnotes.index(problem) + 1}]"
    m = table.median(row, key)
    if m is None:
        return ""
    base = table.median(table.baseline, key)
    text = format_time(m, table.unit)
    if base and row != table.baseline:
        text += f" ({m / base:.2f}x)"
    return text


def section_table(table) -> str:
    footnotes = []
    headers = [f"{table.unit.replace('us', 'µs')} (time / `{table.baseline}`)"] + [m.label for m in table.models]
    rows = []
    for row in table.rows:
        name = f"*{row}*" if row in table.informational else row
        rows.append([name] + [_cell(table, row, m.key, footnotes) for m in table.models])
    parts = [f"### {table.title}", "", markdown_table(headers, rows)]
    notes = [f"- {row}: {note}" for row, note in table.notes.items() if row in table.rows]
    if notes or footnotes:
        parts.append("")
    parts += notes
    parts += [f"- [{k}] {text}" for k, text in enumerate(footnotes, start=1)]
    agreed = [v for (row, _), v in table.differences.items() if math.isfinite(v) and v <= 1e-4
              and not row.startswith("edgernn int8")]
    if agreed:
        parts.append(f"- Agreement with edgernn before timing: largest difference among the contenders timed "
                     f"{max(agreed):.1e} (tolerance 1e-4).")
    return "\n".join(parts)


def crossover_table(results, models) -> str:
    batches = sorted({b for r in results.values() for b in r})
    headers = ["batch"] + [f"{m.label}: fused / across µs" for m in models if m.key in results]
    rows = []
    for batch in batches:
        row = [str(batch)]
        for m in models:
            if m.key not in results:
                continue
            fused, across, taken = results[m.key][batch]
            mark = "fused" if fused < across else "across"
            row.append(f"{fused * 1e6:.2f} / {across * 1e6:.2f} ({mark} faster{'' if mark == taken else '; edgernn takes ' + taken})")
        rows.append(row)
    return "\n".join(["### Crossover: fused per-stream kernel vs products across streams (µs per s.step call)", "",
                      "edgernn steps through the fused kernel up to `fused_step_max_batch(spec)` streams "
                      "(about 3000 / sqrt(weights)) and through products across streams above; this shows where each path is faster on "
                      "this machine, and where edgernn's choice differs.", "",
                      markdown_table(headers, rows)])


def gil_table(results, models) -> str:
    kinds = list(next(iter(results.values())).keys())
    headers = ["worker (each thread its own stream)"] + [m.label for m in models if m.key in results]
    rows = []
    for kind in kinds:
        row = [kind]
        for m in models:
            if m.key in results and isinstance(results[m.key][kind], str):  # why this kind cannot run
                row.append(results[m.key][kind])
            elif m.key in results:
                one, two, ratio, cpu = results[m.key][kind]
                row.append(f"{ratio:.2f}x ({one * 1e6:.2f} → {two * 1e6:.2f} µs, {cpu:.2f} cores)")
        rows.append(row)
    return "\n".join(["### 5. GIL: throughput of two threads over one thread (information; the 1.7x target is retired)", "",
                      "Cell: throughput ratio (one thread's µs per step → two threads' aggregate µs per step, CPU cores the "
                      "process used during the two-thread run). The control releases the GIL by construction: it shows "
                      "what two threads can reach on this machine at the time.", "",
                      markdown_table(headers, rows)])


def cold_table(results, models) -> str:
    headers = ["model", "contender", "spawn → first output s", "import numpy s", "Numba imported",
               "import edgernn / litert s", "load + stream s", "first output s", "spawn → exit s", "peak RSS MB", "runs"]
    rows = []
    for m in models:
        if m.key not in results:
            continue
        for name, r in results[m.key].items():
            if "total" not in r:
                rows.append([m.label, name, "", "", "", "", "", "", f"{r['wall']:.2f}", "", str(r["n"])])
                continue
            rows.append([m.label, name, f"{r['to_first']:.3f}", f"{r['numpy']:.3f}", f"{r['numba']:.0%} of runs",
                         f"{r['edgernn']:.3f}", f"{r['load']:.3f}", f"{r['first']:.4f}", f"{r['wall']:.3f}",
                         f"{r['rss_mb']:.0f}", str(r["n"])])
    text = ["### 4. Cold start: fresh process to first output (medians)", "",
            "Spawn → first output: from starting the process to its first output (interpreter start-up "
            "included); the phases are timed inside the process; spawn → exit adds the interpreter's shutdown.", "",
            markdown_table(headers, rows)]
    first = models[0].key if models else None
    if first in results:
        r = results[first]
        warm, jit, cold = r.get(WARM), r.get(NUMBA_CACHE), r.get(COLD)
        if warm:
            text += ["", f"After `edgernn warmup`: the ahead-of-time step was used in {warm['aot']:.0%} of the runs, "
                         f"Numba imported in {warm['numba']:.0%}."]
        if jit and cold:
            text += ["", f"Compile time with an empty Numba cache: {cold['total'] - jit['total']:.2f} s "
                         f"(cold {cold['total']:.2f} s - Numba's warm cache {jit['total']:.2f} s in-process). "
                         f"Numba-cache runs: chain_step cache hits {jit.get('hits', 0):.0f}, misses {jit.get('misses', 0):.0f} "
                         "(the cache made by `edgernn warmup` in another process was found)."]
    return "\n".join(text)


def targets(tables, cold, gil, models) -> str:
    """The issue's targets, each with what was measured and whether it is met."""
    rows = []

    def verdict(ok):
        return "met" if ok else "**not met**"

    step = tables.get("step")
    if step:
        for m in models:
            ours = step.median(step.baseline, m.key)
            best = step.best_peer(m.key)
            if ours and best:
                rows.append([f"1. step faster than every peer, {m.label}", f"{ours * 1e6:.2f} µs vs {best[0]} {best[1] * 1e6:.2f} µs "
                             f"({ours / best[1]:.2f}x)", "< 1x", verdict(ours < best[1])])
            # every interpreter of the .tflite: LiteRT's rows and tflite-runtime's
            tfl = [step.median(r, m.key) for r in step.rows if r.lower().startswith("tflite")]
            tfl = [t for t in tfl if t]
            limit = {"a": 0.5, "b": 0.4}.get(m.key)
            if ours and tfl and limit:
                rows.append([f"1. step vs best TFLite path, {m.label}", f"{ours / min(tfl):.2f}x", f"<= {limit}x",
                             verdict(ours / min(tfl) <= limit)])
            kernel = step.median("edgernn kernel chain_step(...) direct", m.key)
            if ours and kernel:
                rows.append([f"1. s.step / kernel, {m.label}", f"{ours / kernel:.2f}x ({ours * 1e6:.2f} / {kernel * 1e6:.2f} µs)",
                             "<= 1.25x", verdict(ours / kernel <= 1.25)])
    for key, number in (("block", "2"), ("streams", "3")):
        table = tables.get(key)
        if not table:
            continue
        for m in models:
            ours = table.median(table.baseline, m.key)
            best = table.best_peer(m.key)
            if ours and best:
                unit = 1e9 if table.unit == "ns" else 1e6
                label = "ns/step" if table.unit == "ns" else "µs"
                rows.append([f"{number}. {key} faster than every peer, {m.label}",
                             f"{ours * unit:,.0f} {label} vs {best[0]} {best[1] * unit:,.0f} ({ours / best[1]:.2f}x)", "< 1x",
                             verdict(ours < best[1])])
    if cold and models and models[0].key in cold:
        warm = cold[models[0].key].get(WARM)
        if warm:
            rows.append([f"4. cold start after `edgernn warmup`, {models[0].label}",
                         f"{warm['to_first']:.2f} s spawn → first output ({warm['total']:.2f} s in-process), "
                         f"{warm['rss_mb']:.0f} MB peak RSS", "<= 0.5 s, <= 150 MB",
                         verdict(warm["to_first"] <= 0.5 and warm["rss_mb"] <= 150)])
    if gil:
        for m in models:
            if m.key in gil:
                one, two, ratio, cpu = gil[m.key]["edgernn s.step(x, out=y)"]
                control = [v for k, v in gil[m.key].items() if k.startswith("control")]
                seen = f"{ratio:.2f}x" + (f" (control {control[0][2]:.2f}x)" if control else "")
                # Information, not a target (issue 17 retired it): for a step of a few µs, two
                # threads are bound by CPython's GIL hand-off, whatever the kernel does; N sensors
                # are better stepped as one stream of batch N (docs/raspberry-pi.md).
                rows.append([f"6. two threads / one thread, s.step, {m.label}", seen, "information", "retired target"])
    if not rows:
        return ""
    return "\n".join(["### Targets (issue 5)", "", markdown_table(["target", "measured", "wanted", ""], rows)])


def document(info, command, parts, noisy_note) -> str:
    header = [f"_Generated by `{command}` on {info['date']}. Everything between the bench markers is "
              "rewritten by the next run._", "", format_system(info), ""]
    if noisy_note:
        header += [noisy_note, ""]
    return "\n\n".join(["\n".join(header)] + [p for p in parts if p])


def write(path: Path, body: str):
    """Put ``body`` between the markers of ``path`` (the rest of the file is kept), or write a new
    file holding only the markers and body."""
    block = f"{START}\n{body}\n{END}"
    if path.exists():
        text = path.read_text()
        if START in text and END in text:
            text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
            path.write_text(text)
            return
        path.write_text(text.rstrip() + "\n\n## Latest results\n\n" + block + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# edgernn benchmarks\n\nReproduce with `python tools/bench/run.py`.\n\n" + block + "\n")
