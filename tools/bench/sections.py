"""The in-process sections: step, block, streams (one table each), crossover and GIL.

Each contender is first checked against edgernn (outputs from zero state on a random input,
``atol`` 1e-4); one that disagrees is reported with its difference and not timed. Then all the
contenders of one model are timed together, interleaved (:func:`edgernn.bench.measure`); a peer
that runs in another environment (:class:`~bench.peers.ExternallyTimed`) is timed after them, in
its own process, the same way but not interleaved.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edgernn.bench import AGREEMENT_ATOL, Contender, max_difference, measure, median
from edgernn.errors import NotStreamable

from . import peers as P

F32 = np.float32


@dataclass
class Table:
    """Results of one section: ``times[row][model key]`` = list of seconds per unit."""

    key: str
    title: str
    unit: str  # "us" or "ns"
    baseline: str
    models: list = field(default_factory=list)  # ModelDefs, in column order
    rows: list = field(default_factory=list)  # row names, in order
    times: dict = field(default_factory=dict)
    problems: dict = field(default_factory=dict)  # (row, model key) -> text shown instead of a time
    notes: dict = field(default_factory=dict)  # row -> note
    informational: set = field(default_factory=set)
    differences: dict = field(default_factory=dict)  # (row, model key) -> max |difference| vs edgernn

    def add_row(self, name):
        if name not in self.rows:
            self.rows.append(name)

    def median(self, row, model_key):
        values = self.times.get(row, {}).get(model_key)
        return median(values) if values else None

    def best_peer(self, model_key):
        """(name, median) of the fastest peer (not edgernn, not informational) for this model."""
        best = None
        for row in self.rows:
            if row.startswith("edgernn") or row in self.informational:
                continue
            m = self.median(row, model_key)
            if m is not None and (best is None or m < best[1]):
                best = (row, m)
        return best


SECTIONS = {
    # key: (title, mode, batch, steps, unit, baseline)
    "step": ("1. One step, batch 1, called from Python (µs per step, state carried)", "step", 1, 1, "us",
             "edgernn s.step(x, out=y)"),
    "block": ("2. A block of 1,000 steps of one stream in one call (ns per step)", "block", 1, 1000, "ns",
              "edgernn s.run(x)"),
    "streams": ("3. 400 independent streams, one step per call (µs per call)", "step", 400, 1, "us",
                "edgernn s.step(x, out=y)"),
}


def run_section(key, bundles, *, rounds, min_time, log, steps=None, streams=None) -> Table:
    title, mode, batch, block, unit, baseline = SECTIONS[key]
    if key == "block" and steps:
        block = steps
        title = title.replace("1,000", f"{steps:,}")
    if key == "streams" and streams:
        batch = streams
        title = title.replace("400", str(streams))
    table = Table(key, title, unit, baseline, [b.model for b in bundles])
    rng = np.random.default_rng(1)
    for bundle in bundles:
        md = bundle.model
        log(f"[{key}] model {md.label}")
        check_steps = 2 * block if mode == "block" else (20 if batch <= 16 else 5)
        xs = rng.normal(size=(batch, check_steps, md.features)).astype(F32)
        x = rng.normal(size=(batch, block, md.features) if mode == "block" else (batch, md.features)).astype(F32)
        try:
            reference = bundle.edgernn.stream(batch).run(xs)
        except P.Unavailable as exc:
            table.problems[(baseline, md.key)] = f"edgernn: {exc}"
            continue
        contenders, externally_timed = [], {}
        for factory in P.FACTORIES:
            try:
                found = factory(bundle, mode, batch, block)
            except (P.Unavailable, ImportError) as exc:
                name = factory.__name__.replace("_peers", "")
                table.add_row(name)
                table.problems[(name, md.key)] = f"unavailable: {exc}"
                continue
            for peer in found:
                table.add_row(peer.name)
                if peer.informational:
                    table.informational.add(peer.name)
                try:
                    got = peer.outputs(xs)
                    if got is not None:
                        want = reference[:, : got.shape[1]]
                        difference = max_difference(got, want)
                        table.differences[(peer.name, md.key)] = difference
                        if peer.tolerance != AGREEMENT_ATOL and difference <= peer.tolerance:
                            table.notes[peer.name] = (table.notes.get(peer.name, peer.note)
                                                      + f"; ({md.key}) max diff {difference:.2g}")
                        if not difference <= peer.tolerance:
                            table.problems[(peer.name, md.key)] = f"disagrees: max diff {difference:.2g}"
                            log(f"  {peer.name}: DISAGREES by {difference:.3g}; not timed")
                            continue
                    contender = peer.contender(x)
                    if callable(peer.note):  # a note per model, e.g. the ops a converter produced
                        note = peer.note()
                        table.notes[peer.name] = f"{table.notes[peer.name]}; {note}" if peer.name in table.notes else note
                    elif peer.note:
                        table.notes.setdefault(peer.name, peer.note)
                except P.Unavailable as exc:
                    table.problems[(peer.name, md.key)] = f"unavailable: {exc}"
                    log(f"  {peer.name}: unavailable ({exc})")
                    continue
                except Exception as exc:  # noqa: BLE001 - a peer failing is a result, not a crash
                    _failed(table, peer.name, md.key, exc, log)
                    continue
                if isinstance(contender, P.ExternallyTimed):
                    externally_timed[peer.name] = contender
                else:
                    contenders.append(Contender(peer.name, contender.stmt, contender.namespace, contender.units))
        samples = measure(contenders, rounds=rounds, min_time=min_time)
        for name, contender in externally_timed.items():
            try:
                samples[name] = contender.time(rounds=rounds, min_time=min_time)
            except Exception as exc:  # noqa: BLE001
                _failed(table, name, md.key, exc, log)
        for name, values in samples.items():
            table.times.setdefault(name, {})[md.key] = values
            log(f"  {name}: {median(values) * (1e6 if unit == 'us' else 1e9):.3f} {unit}")
    return table


def _failed(table, row, model_key, exc, log):
    """Record a contender that raised: its cell says why (first line), the log has the rest."""
    table.problems[(row, model_key)] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    log(f"  {row}: failed ({type(exc).__name__}: {exc})")


# ---------------------------------------------------------------------------------------------
# Crossover: fused per-stream kernel vs packed products across streams, by batch size
# ---------------------------------------------------------------------------------------------
CROSSOVER_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 400)


def run_crossover(bundles, *, rounds, min_time, log, batches=CROSSOVER_BATCHES):
    """``{model key: {batch: (fused seconds, across-streams seconds, the path s.step takes)}}`` per call of
    s.step(x, out=y)."""
    from edgernn import runtime

    results = {}
    for bundle in bundles:
        md = bundle.model
        model = bundle.edgernn
        log(f"[crossover] model {md.label}")
        results[md.key] = {}
        rng = np.random.default_rng(2)
        for batch in batches:
            x = rng.normal(size=(batch, md.features)).astype(F32)
            y = np.zeros((batch, model.output_features), F32)
            saved = runtime.FUSED_STEP_MAX_BATCH
            try:
                runtime.FUSED_STEP_MAX_BATCH = 1 << 30
                fused = model.stream(batch)
                runtime.FUSED_STEP_MAX_BATCH = 0
                across = model.stream(batch)
            finally:
                runtime.FUSED_STEP_MAX_BATCH = saved
            a = np.stack([fused.step(x) for _ in range(3)])
            b = np.stack([across.step(x) for _ in range(3)])
            assert max_difference(a, b) <= AGREEMENT_ATOL, "fused and across-streams paths disagree"
            samples = measure([Contender("fused", "f(x, out=y)", {"f": fused.step, "x": x, "y": y}),
                               Contender("across", "f(x, out=y)", {"f": across.step, "x": x, "y": y})],
                              rounds=rounds, min_time=min_time)
            taken = "fused" if batch <= runtime.fused_step_max_batch(model.spec) else "across"
            results[md.key][batch] = (median(samples["fused"]), median(samples["across"]), taken)
            log(f"  batch {batch}: fused {results[md.key][batch][0] * 1e6:.2f} us, across streams {results[md.key][batch][1] * 1e6:.2f} us")
    return results


# ---------------------------------------------------------------------------------------------
# GIL: two threads, each stepping its own stream, against one thread
# ---------------------------------------------------------------------------------------------
def _workers(bundle, kind):
    """A factory of workers: each owns its stream and does ``work(n)`` n units (steps)."""
    model = bundle.edgernn
    features = model.input_features
    x = np.random.default_rng(3).normal(size=(1, features)).astype(F32)

    if kind == "edgernn s.step(x, out=y)":
        def make():
            s = model.stream(1)
            y = np.zeros((1, model.output_features), F32)
            step = s.step

            def work(n):
                for _ in range(n):
                    step(x, out=y)

            return work
        return make, 1
    if kind == "edgernn s.run(x), 1,000 steps":
        xb = np.random.default_rng(4).normal(size=(1, 1000, features)).astype(F32)

        def make():
            run = model.stream(1).run

            def work(n):
                for _ in range(n // 1000):
                    run(xb)

            return work
        return make, 1000
    if kind == "NumPy step (for contrast)":
        from edgernn.bench import NumpyChain

        def make():
            step = NumpyChain(model.spec, 1).step

            def work(n):
                for _ in range(n):
                    step(x)

            return work
        return make, 1
    if kind == CONTROL:
        import hashlib

        data = bytes(64 * 1024)

        def make():
            def work(n):
                for _ in range(n):
                    hashlib.sha256(data).digest()

            return work
        return make, 1
    raise ValueError(kind)


CONTROL = "control: hashlib.sha256 of 64 KB (releases the GIL)"
GIL_KINDS = ("edgernn s.step(x, out=y)", "edgernn s.run(x), 1,000 steps", "NumPy step (for contrast)", CONTROL)


def _time_threads(workers, n):
    """Wall time of ``workers`` each doing ``n`` units in its own thread, and the process CPU
    time over that wall time (2.0: both threads ran all the time)."""
    barrier = threading.Barrier(len(workers) + 1)
    threads = [threading.Thread(target=lambda w=w: (barrier.wait(), w(n))) for w in workers]
    for t in threads:
        t.start()
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return wall, (time.process_time() - cpu) / wall


def run_gil(bundles, *, rounds, min_time, log):
    """``{model key: {kind: (one-thread s/unit, two-thread s/unit aggregate, median ratio, CPU cores used)}}``,
    or a text saying why a kind cannot run for that model.

    Ratio = throughput of two threads (2n steps in t2) over one thread (n steps in t1) = 2 t1 / t2,
    measured per round with the two runs back to back (so they share the machine's mood), then
    the median over rounds. CPU cores used: process CPU time over wall time during the two-thread
    runs. The control (hashing, which releases the GIL) shows what this machine allows right now:
    on a shared machine whose other core is busy, nothing reaches 2.
    """
    results = {}
    for bundle in bundles:
        md = bundle.model
        log(f"[gil] model {md.label}")
        results[md.key] = {}
        for kind in GIL_KINDS:
            make, unit = _workers(bundle, kind)
            try:
                one, (w1, w2) = make(), (make(), make())
            except NotStreamable as exc:  # e.g. the NumPy contrast of a model with a Conv1D
                results[md.key][kind] = f"n/a: {exc}"
                log(f"  {kind}: n/a ({exc})")
                continue
            # calibrate: n units that take ~min_time * 4 in one thread (threads need longer runs)
            n = unit
            while True:
                start = time.perf_counter()
                one(n)
                elapsed = time.perf_counter() - start
                if elapsed > min_time:
                    break
                n *= 2
            n = max(unit, int(n * 4 * min_time / elapsed) // unit * unit)
            t1s, t2s, ratios, cpus = [], [], [], []
            for r in range(rounds):
                if r % 2:
                    t2, cpu = _time_threads([w1, w2], n)
                    t1, _ = _time_threads([one], n)
                else:
                    t1, _ = _time_threads([one], n)
                    t2, cpu = _time_threads([w1, w2], n)
                t1s.append(t1 / n)
                t2s.append(t2 / (2 * n))
                ratios.append(2 * t1 / t2)
                cpus.append(cpu)
            results[md.key][kind] = (median(t1s), median(t2s), median(ratios), median(cpus))
            log(f"  {kind}: one thread {median(t1s) * 1e6:.3f} us/unit, two threads {median(t2s) * 1e6:.3f} us/unit "
                f"aggregate, throughput ratio {median(ratios):.2f}, CPU {median(cpus):.2f} cores")
    return results
