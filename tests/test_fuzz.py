"""Fuzzing the model-file loaders, bounded for CI (issue #6, hostile files).

Every mutated seed from tests/fuzz_corpus/ (tools/fuzz.py says how inputs are mutated) must either load
into a model that then runs, or be refused with an :class:`edgernn.EdgernnError` -- no other exception,
no hang. hypothesis drives the mutations, derandomized so CI runs the same inputs each time;
``tools/fuzz.py --seconds N`` runs the same targets for longer with fresh randomness and in a child
process, so that it also catches crashes of native code. Every seed (including the ``regression-*``
inputs the fuzzer once found failing) is also checked as it is.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgernn

_spec = importlib.util.spec_from_file_location("edgernn_fuzz", Path(__file__).parent.parent / "tools" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["edgernn_fuzz"] = fuzz
_spec.loader.exec_module(fuzz)

pytestmark = pytest.mark.filterwarnings("ignore")
EXAMPLES = {"ernn": 1000, "keras": 800}  # 10-25 s and 70-140 s (5 libhdf5 hangs x 5 s) on two busy shared cores
SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def warm():
    fuzz.warmup()  # Numba compiles before the first timed input


@pytest.fixture(autouse=True)
def watchdog(monkeypatch):
    """A hang inside native code fails the run with a traceback instead of blocking CI forever.

    The importer reads HDF5 in a child process it kills after EDGERNN_HDF5_TIMEOUT seconds, so a libhdf5
    endless loop costs that long (a short limit here: a real read takes milliseconds); the watchdog is
    the backstop in case that protection ever breaks.
    """
    monkeypatch.setenv("EDGERNN_HDF5_TIMEOUT", str(fuzz.HDF5_TIMEOUT))
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()




def _children() -> list[int]:
    """Process ids whose parent is this process (Linux /proc; [] elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid():
            found.append(int(entry.parent.name))
    return found


@pytest.mark.parametrize("path", sorted((fuzz.CORPUS / "libhdf5-hang").iterdir()), ids=lambda p: p.name)
def test_libhdf5_hang_is_refused_in_time(path, monkeypatch):
    """An input on which libhdf5 1.14.6 spins forever (HDFGroup/hdf5#1707) is refused with InvalidModelFile
    once the HDF5 reader's time limit is up, and the reader process is killed, not left spinning."""
    monkeypatch.setenv("EDGERNN_HDF5_TIMEOUT", "3")
    faulthandler.dump_traceback_later(60, exit=True)  # backstop: a regression must not block CI
    before = set(_children())
    start = time.monotonic()
    with pytest.raises(edgernn.InvalidModelFile) as info:
        fuzz.load("keras", path)
    elapsed = time.monotonic() - start
    assert str(info.value) == f"{path.name}: the HDF5 reader did not finish within 3 seconds (corrupt file?)"
    assert 3 <= elapsed < 15, elapsed
    assert not multiprocessing.active_children()
    assert set(_children()) <= before  # the spinning child was killed and reaped


@pytest.mark.parametrize("target", sorted(fuzz.TARGETS))
def test_corpus_as_is(target, tmp_path):
    """The seeds load (the regression inputs may be refused, with an EdgernnError)."""
    paths = fuzz.seeds(target)
    assert paths
    for path in paths:
        if path.name.startswith("regression-"):
            fuzz.check(target, path.read_bytes(), tmp_path / f"input{path.suffix}")
        else:
            fuzz.exercise(fuzz.load(target, path))


def _fuzz(target, tmp_path_factory):
    # The legacy .h5 seeds too: the inputs on which libhdf5 spins forever (HDFGroup/hdf5#1707) are
    # refused after fuzz.HDF5_TIMEOUT seconds by the importer, which reads HDF5 in a child process.
    corpus = [(p.suffix, p.read_bytes()) for p in fuzz.seeds(target)]
    folder = tmp_path_factory.mktemp(target)
    tried = []

    @settings(max_examples=EXAMPLES[target], **SETTINGS)
    @given(seed=st.integers(0, len(corpus) - 1), mutation=st.integers(0, 2**64))
    def run(seed, mutation):
        # hypothesis chooses the seed file and the mutation's random stream; a stream drawn whole by
        # st.randoms() made half the inputs repeats, an integer seeding random.Random does not.
        suffix, data = corpus[seed]
        data = fuzz.mutate(data, random.Random(mutation))
        tried.append(data)
        fuzz.check(target, data, folder / f"input{suffix}")

    run()
    assert len(tried) >= EXAMPLES[target]
    assert len(set(tried)) > EXAMPLES[target] // 2  # mostly distinct inputs, not one seed over and over


def test_fuzz_ernn_loader(tmp_path_factory):
    """``edgernn.load`` on mutated .ernn files: header JSON values, .npy headers and bytes, the zip."""
    _fuzz("ernn", tmp_path_factory)


def test_fuzz_keras_loader(tmp_path_factory):
    """The Keras importer on mutated .keras zips (config, metadata, weights HDF5) and legacy .h5 files."""
    _fuzz("keras", tmp_path_factory)


def test_check_reports_what_is_not_an_edgernn_error(tmp_path, monkeypatch):
    """The property is not vacuous: an exception other than EdgernnError gets through ``check``."""
    monkeypatch.setattr(edgernn, "load", lambda path: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        fuzz.check("ernn", b"", tmp_path / "x.ernn")


def test_hdf5_reader_errors_come_back_unchanged(tmp_path, monkeypatch):
    """What the HDF5 reader's child process raises is raised again in the parent, same type and message;
    a child killed by a signal (a crash in native code) is an InvalidModelFile too, and a normal file reads
    the same in the child as in process."""
    import signal

    from edgernn.importers import keras as importer

    (tmp_path / "noise.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 2)
    (tmp_path / "noise.keras").write_bytes(bytes(range(256)))
    paths = [p for p in fuzz.seeds("keras") if p.name.startswith("regression-")]
    paths += [tmp_path / "noise.h5", tmp_path / "noise.keras", tmp_path / "missing.keras"]
    for path in paths:
        with pytest.raises(edgernn.EdgernnError) as direct:
            importer._read_container(path, path.name)
        with pytest.raises(edgernn.EdgernnError) as isolated:
            importer._read_isolated(path, path.name)
        assert type(isolated.value) is type(direct.value) and str(isolated.value) == str(direct.value), path
    seed = next(p for p in fuzz.seeds("keras") if p.suffix == ".keras")
    config, meta, weights = importer._read_isolated(seed, seed.name)
    assert (config, meta) == importer._read_container(seed, seed.name)[:2] and weights.vars
    monkeypatch.setattr(importer.container, "_read_container", lambda path, label: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(edgernn.InvalidModelFile, match=r"^crash\.h5: the HDF5 reader stopped without an answer"):
        importer._read_isolated(seed, "crash.h5")
    assert not multiprocessing.active_children()
