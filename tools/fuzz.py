"""Fuzz the model-file loaders: mutated ``.ernn``, ``.keras`` and ``.h5`` files must either load into a
model that runs, or be refused with an :class:`edgernn.EdgernnError` -- never another exception, never a
crash, never a hang.

    python tools/fuzz.py --seconds 300              # both targets, half the time each
    python tools/fuzz.py --seconds 60 --target ernn

Targets: ``ernn`` (``edgernn.load``) and ``keras`` (the Keras importer on ``.keras`` zips and legacy
``.h5`` files; Keras itself is never imported). Each input is a seed from tests/fuzz_corpus/ with one
to three mutations: bytes flipped, inserted, deleted, duplicated or cut off; and, so that the fuzzer
gets past the container, mutations *inside* it: a zip member dropped, renamed, duplicated or mutated
by its kind (a JSON value replaced by one of another type or an extreme one, a key deleted; an ``.npy``
header given another shape, dtype or order; an HDF5 dataset replaced, deleted or re-typed, an
attribute such as ``model_config`` rewritten), the archive rewritten stored or deflated.

The inputs run in a child process, so a crash (a signal from native code in h5py or numba) is caught
too: the input that crashed it is saved and the child restarted. Every failure is written to
``--crashes`` (default ``fuzz-crashes/``) with its traceback; put a real one into tests/fuzz_corpus/
as ``regression-<what>.<suffix>`` next to the fix. tests/test_fuzz.py runs the same targets for a
bounded number of inputs under hypothesis.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz_corpus"
sys.path.insert(0, str(ROOT))  # the edgernn of this checkout
TARGETS = {"ernn": (".ernn",), "keras": (".keras", ".h5")}
TIMEOUT = 20  # seconds one input may take (load and run) before it counts as a hang
# The importer's limit on its HDF5 reader (a child process it kills), set well under TIMEOUT in the fuzzing
# children so that libhdf5's endless loops on some corrupt files (HDFGroup/hdf5#1707) are what the importer
# makes of them -- an InvalidModelFile -- and not hangs; EDGERNN_HDF5_TIMEOUT in the environment wins.
HDF5_TIMEOUT = 5
# Values a JSON field is replaced with: other types, boundaries, huge and non-finite numbers.
INTERESTING = [None, True, False, 0, 1, -1, 2, 3, 2**24, 2**24 + 1, 2**31, 2**63, 10**30, 0.5, -0.0, 1e308,
               math.nan, math.inf, -math.inf, "", "x", "lstm", "gru", "sigmoid", "float16", "concat", [], [0], [None, 4],
               [1, 2, 3], {}, {"array": "missing.npy"}, {"class_name": "Lambda", "config": {}}]
DTYPES = ["<f4", ">f4", "<f8", "<f2", "<i4", "|b1", "|O", "V8", "<c8", "|u1"]


class Hang(Exception):
    """An input took longer than TIMEOUT seconds."""


# -- mutations ---------------------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rnd: random.Random) -> bytes:
    data = bytearray(data)
    n = len(data)
    kind = rnd.randrange(6) if n else 2
    if kind == 0:  # flip bits
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(n)] ^= 1 << rnd.randrange(8)
    elif kind == 1:  # boundary bytes
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(n)] = rnd.choice((0, 0xFF, 0x7F, 0x80, 0x01))
    elif kind == 2:  # insert
        at = rnd.randint(0, n)
        data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
    elif kind == 3:  # delete a span
        at = rnd.randrange(n)
        del data[at:at + rnd.randint(1, 64)]
    elif kind == 4:  # duplicate a span
        at = rnd.randrange(n)
        span = data[at:at + rnd.randint(1, 256)]
        to = rnd.randint(0, n)
        data[to:to] = span
    else:  # truncate
        del data[rnd.randrange(n):]
    return bytes(data)


def _paths(value, path=()):
    """Every (path, value) in a JSON document."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield from _paths(item, path + (k,))


def mutate_json_value(doc, rnd: random.Random):
    """``doc`` with one value replaced, one key deleted, or one list element dropped or repeated."""
    places = list(_paths(doc))
    path, value = rnd.choice(places)
    kind = rnd.randrange(5)
    if kind == 0 or not path:
        new = copy.deepcopy(rnd.choice(INTERESTING))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and rnd.random() < 0.5:
            new = rnd.choice((value + 1, value - 1, -value, value * 1000, value * 1.5, 0, str(value)))
        if kind == 0 and rnd.random() < 0.1:
            new = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
    elif kind == 1:
        new = copy.deepcopy(rnd.choice(places)[1])  # another part of the same document
    else:
        parent, key = _container(doc, path), path[-1]
        if kind == 2:
            del parent[key]
        elif kind == 3 and isinstance(parent, list):
            parent.insert(key, parent[key])
        else:
            parent[key] = copy.deepcopy(rnd.choice(INTERESTING))
        return doc
    if not path:
        return new
    _container(doc, path)[path[-1]] = new
    return doc


def _container(doc, path):
    """The dict or list in ``doc`` that holds the item at ``path`` (a non-empty tuple of keys)."""
    for step in path[:-1]:
        doc = doc[step]
    return doc


def mutate_json(data: bytes, rnd: random.Random) -> bytes:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return mutate_bytes(data, rnd)
    if rnd.random() < 0.15:
        return mutate_bytes(data, rnd)
    for _ in range(rnd.randint(1, 3)):
        doc = mutate_json_value(doc, rnd)
    if rnd.random() < 0.03:  # nested far past the recursion limit
        return b"[" * 100_000 + json.dumps(doc).encode() + b"]" * 100_000
    return json.dumps(doc).encode()


def mutate_npy(data: bytes, rnd: random.Random) -> bytes:
    if rnd.random() < 0.4:
        return mutate_bytes(data, rnd)
    try:
        array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except Exception:
        return mutate_bytes(data, rnd)
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape}
    body = array.tobytes()
    kind = rnd.randrange(4)
    if kind == 0:
        shape = list(array.shape) or [1]
        k = rnd.randrange(len(shape))
        shape[k] = rnd.choice((0, 1, shape[k] + 1, shape[k] - 1, 2**31, 10**12))
        if rnd.random() < 0.3:
            shape = shape[:-1] if rnd.random() < 0.5 else shape + [1]
        header["shape"] = tuple(max(0, s) for s in shape)
    elif kind == 1:
        header["descr"] = rnd.choice(DTYPES)
    elif kind == 2:
        header["fortran_order"] = True
    else:
        values = array.copy().reshape(-1)
        if values.size and values.dtype.kind == "f":
            values[rnd.randrange(values.size)] = rnd.choice((np.nan, np.inf, -np.inf, 1e38, -0.0))
        body = values.tobytes()
    buffer = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buffer, header)
    except ValueError:
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue() + body


def mutate_hdf5(data: bytes, rnd: random.Random) -> bytes:
    """An HDF5 file with one structural change (through h5py, in memory), or flipped bytes."""
    import h5py

    if rnd.random() < 0.35:
        return mutate_bytes(data, rnd)
    buffer = io.BytesIO(data)
    try:
        with h5py.File(buffer, "r+") as h5:
            objects: list[str] = []
            h5.visit(objects.append)
            kind = rnd.randrange(5)
            if kind == 0 and "model_config" in h5.attrs:
                config = h5.attrs["model_config"]
                config = config.decode() if isinstance(config, bytes) else str(config)
                h5.attrs["model_config"] = mutate_json(config.encode(), rnd).decode("utf-8", "replace")
            elif kind == 1 and objects:
                del h5[rnd.choice(objects)]
            elif kind == 2 and objects:
                name = rnd.choice(objects)
                if isinstance(h5[name], h5py.Dataset):
                    shape = tuple(rnd.choice((0, 1, 2, 3, 4, 8, 12)) for _ in range(rnd.randint(0, 3)))
                    dtype = rnd.choice(("f4", "f8", "f2", "i4", "u1", "S4", h5py.string_dtype()))
                    del h5[name]
                    if dtype == h5py.string_dtype():
                        h5.create_dataset(name, data=np.array(["x"] * int(np.prod(shape)), dtype=object).reshape(shape), dtype=dtype)
                    elif rnd.random() < 0.2:  # declares more than it stores
                        h5.create_dataset(name, shape=(1 << 16, 1 << 16), dtype=dtype, chunks=(64, 64), compression="gzip")
                    else:
                        h5.create_dataset(name, data=np.full(shape, rnd.choice((0.5, np.nan, 1e30)) if dtype[0] == "f" else 1).astype(dtype))
                else:
                    h5[name].attrs[rnd.choice(("name", "weight_names", "layer_names"))] = rnd.choice(
                        (np.array([b"x", b"y"]), 3, "lstm", np.array([], dtype="S1")))
            elif objects:
                target = h5[rnd.choice(objects)]
                key = rnd.choice(list(target.attrs) or ["weight_names"])
                target.attrs[key] = rnd.choice((np.array([b"nope"]), 1.5, "x", np.zeros(3), np.array([b"0", b"1"])))
            else:
                return mutate_bytes(data, rnd)
    except Exception:
        return mutate_bytes(data, rnd)
    return buffer.getvalue()


def _member_mutator(name: str):
    if name.endswith(".json"):
        return mutate_json
    if name.endswith(".npy"):
        return mutate_npy
    if name.endswith(".h5"):
        return mutate_hdf5
    return mutate_bytes


def mutate_zip(data: bytes, rnd: random.Random) -> bytes:
    """A zip with one member mutated by its kind, dropped, renamed, duplicated or a junk one added."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    except Exception:
        return mutate_bytes(data, rnd)
    if not members:
        return mutate_bytes(data, rnd)
    k = rnd.randrange(len(members))
    name, blob = members[k]
    kind = rnd.randrange(10)
    if kind < 6:
        members[k] = (name, _member_mutator(name)(blob, rnd))
    elif kind == 6:
        del members[k]
    elif kind == 7:
        members[k] = (rnd.choice([n for n, _ in members] + ["x.npy", "config.json", name.upper()]), blob)
    elif kind == 8:
        members.append((name, rnd.choice([b for _, b in members])))
    else:
        members.append((rnd.choice(("junk", "../../etc/passwd", "model.weights.npz", "a" * 300)), b"\0" * rnd.randint(0, 100)))
    buffer = io.BytesIO()
    compression = rnd.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for member, blob in members:
            archive.writestr(member, blob)
    return buffer.getvalue()


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """One to three stacked mutations of a seed, chosen by the container it is."""
    for _ in range(rnd.randint(1, 3)):
        if data[:4] == b"PK\x03\x04" and rnd.random() < 0.75:
            data = mutate_zip(data, rnd)
        elif data[:8] == b"\x89HDF\r\n\x1a\n" and rnd.random() < 0.75:
            data = mutate_hdf5(data, rnd)
        else:
            data = mutate_bytes(data, rnd)
    return data


def seeds(target: str) -> list[Path]:
    """The corpus files of a target: seeds and regression inputs."""
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix in TARGETS[target])


# -- the property ------------------------------------------------------------------------------------------


def _small_enough(spec) -> bool:
    """Whether running the model on a 2 x 3 input is cheap: a valid file may legitimately declare
    huge sizes (RepeatVector(n=2**24)), which take memory and time to run but are no loader bug."""
    from edgernn import ir

    if any(i.features > 4096 or (i.timesteps or 0) > 1000 for i in spec.inputs):
        return False
    for node in spec.nodes:
        if isinstance(node.op, ir.RepeatVector) and node.op.n > 1000:
            return False
        if isinstance(node.op, ir.Pad1D) and max(node.op.left, node.op.right) > 1000:  # zero rows to run
            return False
    return True


def exercise(model) -> None:
    """Run a loaded model the way a user would; EdgernnError is an acceptable answer."""
    from edgernn import EdgernnError

    spec = model.spec
    if not _small_enough(spec):
        return
    rng = np.random.default_rng(0)
    xs = [rng.normal(0, 1, (2, i.timesteps or 3, i.features)[3 - i.rank:]).astype(np.float32) for i in spec.inputs]
    try:
        model.predict(*xs)
    except EdgernnError:
        pass
    try:
        stream = model.stream(2)
        if len(xs) == 1 and xs[0].ndim == 3:
            stream.run(xs[0])
            stream.step(xs[0][:, 0])
    except EdgernnError:
        pass


def load(target: str, path: Path):
    """The model a target's loader makes of ``path`` (raises EdgernnError when refused)."""
    import edgernn

    if target == "ernn":
        return edgernn.load(path)
    from edgernn.importers.keras import load_keras_file

    return edgernn.Model(load_keras_file(path))


def _alarm(signum, frame):
    raise Hang(f"over {TIMEOUT} s")


def check(target: str, data: bytes, path: Path, timeout: int = TIMEOUT) -> None:
    """Write ``data`` to ``path`` and load and run it; returns if it loads and runs or is refused with an
    EdgernnError, raises anything else (Hang after ``timeout`` seconds; 0: no limit)."""
    from edgernn import EdgernnError

    path.write_bytes(data)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        try:
            model = load(target, path)
        except EdgernnError:
            return
        exercise(model)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def warmup() -> None:
    """Load and run every seed once, so Numba compiles (or loads its cache) before inputs are timed;
    with no time limit, since a cold compile can take a minute on a busy machine."""
    with tempfile.TemporaryDirectory() as folder:
        for target in TARGETS:
            for seed in seeds(target):
                check(target, seed.read_bytes(), Path(folder) / f"warm{seed.suffix}", timeout=0)


# -- the runner --------------------------------------------------------------------------------------------


def _save_failure(crashes: Path, target: str, data: bytes, suffix: str, what: str) -> Path:
    crashes.mkdir(parents=True, exist_ok=True)
    name = f"{target}-{int(time.time() * 1000)}-{os.getpid()}"
    (crashes / f"{name}{suffix}").write_bytes(data)
    (crashes / f"{name}.txt").write_text(what)
    return crashes / f"{name}{suffix}"


def child(target: str, seconds: float, seed: int, work: Path, crashes: Path) -> None:
    """Fuzz one target for ``seconds`` in this process, keeping counts in work/stats.json."""
    import warnings

    warnings.simplefilter("ignore")
    rnd = random.Random(seed)
    corpus = [(p.suffix, p.read_bytes()) for p in seeds(target)]
    warmup()
    (work / "warm").touch()
    stats = {"tried": 0, "failed": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        suffix, data = rnd.choice(corpus)
        try:
            data = mutate(data, rnd)
        except Exception:  # a bug of the mutator, not of the loader: report it, go on
            stats["mutator_errors"] = stats.get("mutator_errors", 0) + 1
            print(f"mutator error (not counted as an input):\n{traceback.format_exc(limit=3)}", flush=True)
            continue
        path = work / f"input{suffix}"
        (work / "current").write_text(suffix)  # also the heartbeat _watch reads
        try:
            check(target, data, path)
        except Exception:
            stats["failed"] += 1
            saved = _save_failure(crashes, target, data, suffix, traceback.format_exc())
            print(f"FAILED: {saved}\n{traceback.format_exc(limit=3)}", flush=True)
        stats["tried"] += 1
        if stats["tried"] % 20 == 0:
            (work / "stats.json").write_text(json.dumps(stats))
    (work / "stats.json").write_text(json.dumps(stats))


HUNG = -1000  # _watch's answer for a child stuck on one input


def _watch(process: subprocess.Popen, work: Path) -> int:
    """Wait for a child; kill it if it stays on one input for 3 x TIMEOUT seconds after its warmup (a
    loop inside native code is beyond SIGALRM's reach; libhdf5's on some corrupt files no longer gets
    here, the importer's own HDF5 reader process is killed after HDF5_TIMEOUT seconds)."""
    while process.poll() is None:
        time.sleep(1)
        current = work / "current"
        if (work / "warm").exists() and current.exists() and time.time() - current.stat().st_mtime > 3 * TIMEOUT:
            process.kill()
            process.wait()
            return HUNG
    return process.returncode


def run(target: str, seconds: float, seed: int, crashes: Path) -> dict:
    """Fuzz ``target`` for ``seconds`` in child processes, restarting after a crash."""
    totals = {"tried": 0, "failed": 0, "crashed": 0, "mutator_errors": 0}
    deadline = time.monotonic() + seconds
    generation = 0
    while time.monotonic() < deadline - 1:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            command = [sys.executable, __file__, "--child", target, "--seconds", str(deadline - time.monotonic()),
                       "--seed", str(seed * 1000 + generation), "--work", folder, "--crashes", str(crashes)]
            env = {"EDGERNN_HDF5_TIMEOUT": str(HDF5_TIMEOUT), **os.environ}
            process = subprocess.Popen(command, cwd=ROOT, env=env)
            returncode = _watch(process, work)
            stats = json.loads((work / "stats.json").read_text()) if (work / "stats.json").exists() else {}
            totals["tried"] += stats.get("tried", 0)
            totals["failed"] += stats.get("failed", 0)
            totals["mutator_errors"] += stats.get("mutator_errors", 0)
            if returncode != 0:  # a crash or a hang in native code: keep the input it was on
                suffix = (work / "current").read_text() if (work / "current").exists() else ""
                current = work / f"input{suffix}"
                data = current.read_bytes() if suffix and current.exists() else b""
                what = "hung in native code" if returncode == HUNG else f"exited with status {returncode}"
                saved = _save_failure(crashes, target, data, suffix, f"the child process {what}")
                print(f"CRASH ({what}): {saved}", flush=True)
                totals["tried"] += 1
                totals["failed"] += 1
                totals["crashed"] += 1
        generation += 1
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="total time, shared between the targets")
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"), help="where failing inputs are saved")
    parser.add_argument("--child", choices=list(TARGETS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    if args.child:
        child(args.child, args.seconds, seed, args.work, args.crashes.resolve())
        return 0
    targets = list(TARGETS) if args.target == "all" else [args.target]
    failed = 0
    for target in targets:
        start = time.monotonic()
        totals = run(target, args.seconds / len(targets), seed, args.crashes.resolve())
        failed += totals["failed"]
        print(f"{target}: {totals['tried']} inputs tried in {time.monotonic() - start:.0f} s, {totals['failed']} failed "
              f"({totals['crashed']} crashed the process), {totals['mutator_errors']} mutator errors, seed {seed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
