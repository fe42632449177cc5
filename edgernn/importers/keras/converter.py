"""Keras importer: ``.keras`` and ``.h5`` files (Keras 3 and Keras 2 / tf-keras) -> :class:`~edgernn.ir.ModelSpec`.

Files are read with ``zipfile``, ``json`` and ``h5py`` only: TensorFlow and Keras are never imported
here (except lazily in :func:`from_keras_model`, which only calls ``model.save``), no layer is ever
deserialized, no Python code stored in a file (Lambda bytecode, custom objects) is ever run.

What the files hold (found by saving real models and walking them with h5py):

* ``.keras`` (Keras 3, and tf-keras >= 2.13): a zip with ``config.json`` (the model config),
  ``metadata.json`` (``keras_version``) and ``model.weights.h5``. Weights live under a path that
  Keras derives from the *class* of each layer, not its name: ``layers/<snake_case(class)>[_k]``
  where ``_k`` counts earlier layers of the same class in ``model.layers`` order (InputLayers and
  ``keras.ops`` nodes are not in ``model.layers``). Below that: ``vars/0, 1, ...`` for the layer's
  own variables in creation order (Dense: kernel, bias), ``cell/vars/...`` for an RNN layer
  (kernel, recurrent_kernel, bias), ``forward_layer/cell/vars`` and ``backward_layer/cell/vars``
  for Bidirectional, ``layer/vars`` for TimeDistributed. Keras >= 3.10 also writes the layer's
  name as attribute ``name`` of each ``vars`` group; it is preferred when present.
* legacy ``.h5`` (Keras 3 ``model.save("x.h5")`` and Keras 2): the JSON config in the root
  attribute ``model_config``, ``keras_version`` and ``backend`` as root attributes, weights in
  ``model_weights/<layer name>/`` with the attribute ``weight_names`` listing dataset paths in
  the layer's weight order, e.g. Keras 2 ``lstm/lstm_cell/kernel:0``, Keras 3
  ``sequential/lstm/lstm_cell/kernel``, Bidirectional ``.../forward_lstm/...``.

Weight layouts: Keras's kernel ``(input_size, gates * units)`` with gate blocks i, f, c, o (LSTM)
or z, r, h (GRU) *is* the IR layout, so kernels are copied as they are. The one reshuffle is the
GRU bias with ``reset_after=True``: Keras stores ``(2, 3 * units)``, row 0 added to the input
projection and row 1 to the recurrent projection; the IR keeps them as ``bias`` and
``recurrent_bias``.

The Keras version that saved the file decides ``hard_sigmoid``: Keras 3's is ``relu6(x + 3) / 6``,
Keras 2's ``clip(0.2 x + 0.5, 0, 1)`` (IR name ``hard_sigmoid_keras2``).

The file itself (zip, JSON members, and every h5py call: config attributes, all weight datasets)
is read in a child process with a time limit (:func:`_read_isolated`), because libhdf5 can loop
forever in native code on a corrupt file (the file of an in-memory model, just written by Keras,
in process); the converter then works on plain dicts and numpy arrays.

Every unsupported layer or option is gathered first and refused at the end with one
:class:`~edgernn.errors.UnsupportedModel` whose ``problems`` name each layer; a malformed file
raises :class:`~edgernn.errors.InvalidModelFile` naming the file and the problem.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import pickle
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import h5py
import numpy as np

from ... import ir
from ...errors import EdgernnError, InvalidModelFile, UnsupportedModel
from ...store import ZIP_ERRORS, read_member

__all__ = ["load_keras_file", "from_keras_model", "run_source"]

# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

# Keras 3 names -> IR names. The IR uses Keras 3's names and definitions, so most map to
# themselves; "swish" and "hard_swish" are Keras 3 aliases of silu and hard_silu.
_KERAS3_ACTIVATIONS = {name: name for name in ir.ELEMENTWISE_ACTIVATIONS + ir.VECTOR_ACTIVATIONS}
del _KERAS3_ACTIVATIONS["hard_sigmoid_keras2"]
_KERAS3_ACTIVATIONS.update({"swish": "silu", "hard_swish": "hard_silu"})

# Keras 2 (tf.keras / tf-keras) names -> IR names, only those whose Keras 2 definition equals the
# IR's: hard_sigmoid differs (Keras 2: clip(0.2 x + 0.5, 0, 1)), "swish" is Keras 2's name of silu.
_KERAS2_ACTIVATIONS = {
    name: name
    for name in (
        "linear", "tanh", "sigmoid", "relu", "relu6", "elu", "selu", "softplus", "softsign",
        "exponential", "gelu", "mish", "softmax", "log_softmax", "silu",
    )
}
_KERAS2_ACTIVATIONS.update({"hard_sigmoid": "hard_sigmoid_keras2", "swish": "silu"})

# Layers that are the identity at inference: their output is their input (same tensor, same mask).
_IDENTITY_LAYERS = {
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
}
_RNN_LAYERS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple"}
_RNN_CELLS = {"LSTMCell": "lstm", "GRUCell": "gru", "SimpleRNNCell": "simple"}
_MODEL_CLASSES = {"Sequential", "Functional", "Model"}
# dtype policies whose variables are float32/float64 (mixed policies keep float32 variables).
_FLOAT_POLICIES = {"float32", "float64", "mixed_float16", "mixed_bfloat16"}
# Bounds on what a hostile file can make us decompress or allocate (issue #6). Each zip member is
# checked against its declared size and again while it is read (read_member), so neither a zip bomb
# nor a header that lies about its size gets past the bound.
_MAX_WEIGHTS_BYTES = 4 << 30  # model.weights.h5 in a .keras archive
_MAX_JSON_BYTES = 16 << 20    # config.json, metadata.json: a few KB in real models, a few MB at most
_MAX_MEMBERS = 100            # Keras writes three (config.json, metadata.json, model.weights.h5)
_MAX_ARRAY_BYTES = 1 << 30    # one weight dataset once read (HDF5 datasets can be compressed)
_MAX_ARRAYS_BYTES = 4 << 30   # all weight datasets read from one file
# libhdf5 can spin forever in native code on a corrupt file (HDFGroup/hdf5#1707), where no Python
# timeout reaches it, so the HDF5 part of reading a file runs in a child process killed after this
# many seconds (environment variable EDGERNN_HDF5_TIMEOUT overrides it). Real models take well
# under a second; a multi-GB one a few seconds.
HDF5_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def load_keras_file(path, **options) -> ir.ModelSpec:
    """Read a Keras model file (``.keras`` zip or legacy ``.h5``) into a ModelSpec, without TensorFlow.

    The container is recognised by content (a zip or an HDF5 file), not by suffix. Raises
    :class:`InvalidModelFile` for a malformed file and :class:`UnsupportedModel` (one error, all
    problems listed) for layers or options edgernn cannot run exactly as Keras does.
    """
    if options:
        raise TypeError(f"load_keras_file() got unexpected options: {', '.join(sorted(options))}")
    path = Path(path)
    return _load(path, path.name, {"file": path.name})


# What h5py, json and the converter raise on a file that is not what Keras writes: a field of the wrong
# type, a missing key, a corrupt HDF5 structure (h5py raises KeyError, RuntimeError, OSError or
# ValueError depending on which HDF5 check failed), a config nested past the recursion limit.
_MALFORMED = (KeyError, TypeError, AttributeError, IndexError, ValueError, OSError, RuntimeError)


def _load(path: Path, label: str, source: dict, isolated: bool = True) -> ir.ModelSpec:
    """Read and convert ``path``; ``label`` names the model in error messages. ``isolated``: read the
    file in a time-limited child process (False only for a file edgernn itself just wrote)."""
    config, meta, weights = (_read_isolated if isolated else _read_container)(path, label)
    try:
        version = meta.get("keras_version")
        major = _keras_major(version, config)
        source = {"format": "keras", **source, "framework": "keras", "framework_version": version}
        if meta.get("backend"):
            source["backend"] = meta["backend"]
        return _Converter(label, config, weights, major).convert(source)
    except _MALFORMED as exc:
        raise InvalidModelFile(f"{label}: malformed model config or weights ({type(exc).__name__}: {exc})") from exc


def _read_container(path: Path, label: str):
    """(config, metadata, weights) of a ``.keras`` zip or a legacy ``.h5``: every h5py call of the
    importer happens in here, and the result holds only plain values (dicts, str, numpy arrays)."""
    try:
        # HDF5 first: its signature sits at offset 0, a zip's directory at the end of the file.
        if h5py.is_hdf5(path):
            return _read_legacy_h5(path, label)
        if zipfile.is_zipfile(path):
            return _read_zip(path, label)
        raise InvalidModelFile(f"{label}: not a Keras model file (neither a .keras zip nor HDF5)")
    except OSError as exc:
        raise InvalidModelFile(f"{label}: cannot read the file: {exc}") from exc


def _hdf5_timeout() -> float:
    text = os.environ.get("EDGERNN_HDF5_TIMEOUT", "").strip()
    if not text:
        return HDF5_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"EDGERNN_HDF5_TIMEOUT={text!r}: expected a number of seconds > 0")
    return value


def _read_child(conn, path: str, label: str) -> None:
    """Entry of the child process: read the file, send back ("ok", values) or ("error", _Failure)."""
    try:
        answer = ("ok", _read_container(Path(path), label))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        answer = ("error", _Failure(exc))
    try:
        payload = pickle.dumps(answer, protocol=_CHILD_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - e.g. a value that does not pickle
        payload = pickle.dumps(("error", _Failure(RuntimeError(f"the HDF5 reader could not send its result: {exc}"))),
                               protocol=_CHILD_PROTOCOL)
    conn.send_bytes(payload)
    conn.close()


# What the child's answer may name when it is unpickled: numpy arrays and dtypes, the weight
# containers and the kept failures of this module, edgernn's errors and Python's own exceptions.
# Anything else (os.system, a class from the file's world) is refused: even a child whose libhdf5
# was subverted by a crafted file cannot make the parent run code through the pipe.
_CHILD_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    (__name__, "_Failure"), (__name__, "_ZipWeights"), (__name__, "_LegacyWeights"),
}
# Pinned: from protocol 5 (Python 3.14's default) numpy pickles arrays through
# numpy._core.numeric._frombuffer, which the allow-list above does not name.
_CHILD_PROTOCOL = 4


class _ChildAnswerUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _CHILD_GLOBALS:
            return super().find_class(module, name)
        if module in ("builtins", "edgernn.errors"):
            found = super().find_class(module, name)
            if isinstance(found, type) and issubclass(found, BaseException):
                return found
        raise pickle.UnpicklingError(f"the HDF5 reader's answer names {module}.{name}, which is not allowed")


def _load_child_answer(payload: bytes):
    return _ChildAnswerUnpickler(io.BytesIO(payload)).load()


def _read_isolated(path: Path, label: str):
    """:func:`_read_container` in a child process with a time limit (:data:`HDF5_TIMEOUT`).

    libhdf5 can spin forever in native code on a corrupt file, which no in-process timeout can
    interrupt; a child process can be killed. Linux forks the child (cheap: h5py is already
    imported, and it runs only zipfile, json, h5py and numpy code, never TensorFlow's or any other
    thread's); other systems spawn it (a script that converts at import time then needs the usual
    ``if __name__ == "__main__":`` guard). The values come back through a pipe, pickled by the
    child (dicts, str, numpy arrays, our error objects, never bytes taken from the file) and
    unpickled here by a restricted unpickler that admits only those types (:data:`_CHILD_GLOBALS`). An error raised in the child is raised here
    again, same type and message; a child that does not answer within the limit is killed and the
    file refused with :class:`InvalidModelFile`.
    """
    timeout = _hdf5_timeout()
    if multiprocessing.current_process().daemon:  # e.g. a multiprocessing.Pool worker: no children
        return _read_container(path, label)  # allowed there, so no time limit either
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_read_child, args=(sender, str(path), label), name="edgernn-hdf5-reader",
                            daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise InvalidModelFile(
                f"{label}: the HDF5 reader did not finish within {timeout:g} seconds (corrupt file?)"
            )
        try:
            payload = receiver.recv_bytes()
        except (EOFError, OSError) as exc:  # the child died without answering: a crash in native code
            child.join(5)
            raise InvalidModelFile(
                f"{label}: the HDF5 reader stopped without an answer (exit code {child.exitcode}; corrupt file?)"
            ) from exc
        child.join(5)  # it exits as soon as it has sent its answer
        try:
            status, value = _load_child_answer(payload)
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
            raise InvalidModelFile(f"{label}: the HDF5 reader's answer is malformed: {exc}") from exc
    finally:
        receiver.close()
        if child.is_alive():  # hung (or slow to exit): SIGKILL, then reap it
            child.kill()
            child.join()
        child.close()
    if status == "error":
        value.reraise()
    return value


def from_keras_model(model, **options) -> ir.ModelSpec:
    """Convert an in-memory Keras model (Keras 3 or tf-keras) by saving it and reading the file.

    Going through ``model.save`` means an in-memory model and its saved file convert identically,
    and nothing of the live object (in particular no Python code) is called besides ``save``.
    """
    if options:
        raise TypeError(f"from_keras_model() got unexpected options: {', '.join(sorted(options))}")
    if not callable(getattr(model, "save", None)):
        raise UnsupportedModel(f"cannot convert {type(model).__name__}: it has no save() method")
    with tempfile.TemporaryDirectory(prefix="edgernn-keras-") as tmp:
        target = os.path.join(tmp, "model.keras")
        try:
            model.save(target)
        except Exception as exc:  # noqa: BLE001 - any failure of the framework's own saving
            try:  # older tf.keras only writes legacy HDF5
                target = os.path.join(tmp, "model.h5")
                model.save(target)
            except Exception:  # noqa: BLE001
                raise UnsupportedModel(
                    f"Keras could not save model {getattr(model, 'name', '?')!r} for conversion: {exc}"
                ) from exc
        name = getattr(model, "name", None)
        source = {"file": None}
        if isinstance(name, str):
            source["model_name"] = name
        # Keras itself wrote the file just now, so it is read in process, as it always was.
        return _load(Path(target), f"Keras model {name!r}", source, isolated=False)


def run_source(source, inputs, **options) -> list[np.ndarray]:
    """Run the source model with Keras on ``inputs`` (one array per model input, edgernn's shapes).

    ``source`` is a ``.keras``/``.h5`` path or an in-memory Keras model. Files are loaded with
    ``compile=False, safe_mode=True``; files saved by Keras 2 with tf-keras when it is installed
    (Keras 3 reinterprets some Keras 2 definitions, e.g. hard_sigmoid), else with Keras 3. Only
    called after the conversion succeeded, which refused Lambda and custom layers, so nothing
    unsafe is deserialized. Stateful layers are reset before each batch of rows, and a model built
    for a fixed batch size runs the rows in chunks of that size (the last one padded), so the
    result is what edgernn's ``predict`` returns: every row from zero state. Returns a list of
    arrays, one per model output. Raises ImportError when Keras is not installed.
    """
    if options:
        raise TypeError(f"run_source() got unexpected options: {', '.join(sorted(options))}")
    arrays = [np.asarray(x, np.float32) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        model = _RUN_SOURCE_CACHE.get(key)  # verification runs one file a few times in a row
        if model is None:
            model = _load_for_run(path)
            _RUN_SOURCE_CACHE.clear()
            _RUN_SOURCE_CACHE[key] = model
    else:
        model = source
    shape = getattr(model.inputs[0], "shape", None) if getattr(model, "inputs", None) else None
    fixed = shape[0] if shape is not None and len(shape) and isinstance(shape[0], int) else None
    total = arrays[0].shape[0]
    chunk = fixed or max(total, 1)
    outputs: list[list[np.ndarray]] = []
    for start in range(0, total, chunk):
        part = [a[start:start + chunk] for a in arrays]
        rows = part[0].shape[0]
        if rows < chunk:
            part = [np.concatenate([p, np.zeros((chunk - rows,) + p.shape[1:], np.float32)]) for p in part]
        _reset_keras_states(model)
        out = model(part[0] if len(part) == 1 else part, training=False)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        for k, o in enumerate(out):
            if len(outputs) <= k:
                outputs.append([])
            outputs[k].append(np.asarray(o, dtype=np.float32)[:rows])
    _reset_keras_states(model)
    return [np.concatenate(o) for o in outputs]


_RUN_SOURCE_CACHE: dict = {}


def _load_for_run(path: Path):
    """Load a model file with the Keras that saved it: tf-keras for Keras 2 files when installed."""
    loader = None
    if _saved_by_keras2(path):
        try:
            import tf_keras

            loader = tf_keras.models.load_model
        except ImportError:
            loader = None
    if loader is None:
        import keras

        loader = keras.saving.load_model
    return loader(str(path), compile=False, safe_mode=True)


def _saved_by_keras2(path: Path) -> bool:
    """Whether a model file records a Keras 2 version (tf-keras or TensorFlow's Keras)."""
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as h5:
                version = h5.attrs.get("keras_version")
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                meta = {}
                if "metadata.json" in archive.namelist():
                    meta = json.loads(read_member(archive, archive.getinfo("metadata.json"), _MAX_JSON_BYTES, str(path)))
            version = meta.get("keras_version") if isinstance(meta, dict) else None
        else:
            return False
    except (ValueError, KeyError, RecursionError, EdgernnError) + ZIP_ERRORS:
        return False
    return version is not None and _text(version).startswith("2.")


def _reset_keras_states(model) -> None:
    """Zero the state of every stateful layer (Keras 3 layers and tf-keras alike)."""
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        if getattr(layer, "stateful", False):
            reset = getattr(layer, "reset_states", None) or getattr(layer, "reset_state", None)
            if reset is not None:
                reset()
        stack.extend(getattr(layer, "layers", None) or [])
        stack.extend(x for x in (getattr(layer, k, None) for k in ("layer", "forward_layer", "backward_layer"))
                     if x is not None and hasattr(x, "stateful"))


# ---------------------------------------------------------------------------------------------
# Containers: where the config and the weights are
# ---------------------------------------------------------------------------------------------


def _json(text, label: str, what: str):
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise InvalidModelFile(f"{label}: {what} is not valid JSON: {exc}") from exc


def _text(value) -> str:
    """An HDF5 attribute as str (h5py returns str, bytes or 0-d numpy arrays depending on writer)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value)


def _h5_list_attr(group, name: str) -> list[str]:
    """A list-of-strings attribute; Keras splits long ones into ``name0``, ``name1``, ... chunks."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks, k = [], 0
        while f"{name}{k}" in group.attrs:
            chunks.append(group.attrs[f"{name}{k}"])
            k += 1
    return [_text(v) for chunk in chunks for v in np.atleast_1d(chunk)]


def _read_zip(path: Path, label: str):
    """``.keras``: (config dict, metadata dict, weights) from config.json, metadata.json, model.weights.h5."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > _MAX_MEMBERS:
                raise InvalidModelFile(f"{label}: the .keras archive holds {len(members)} members, over the {_MAX_MEMBERS} limit")
            names = set(archive.namelist())
            if "config.json" not in names:
                raise InvalidModelFile(f"{label}: the .keras archive holds no config.json")

            def read(name: str, limit: int) -> bytes:
                return read_member(archive, archive.getinfo(name), limit, label)

            config = _json(read("config.json", _MAX_JSON_BYTES), label, "config.json")
            meta = _json(read("metadata.json", _MAX_JSON_BYTES), label, "metadata.json") if "metadata.json" in names else {}
            if "model.weights.h5" not in names:
                if "model.weights.npz" in names or "model.weights.json" in names:
                    raise UnsupportedModel(
                        f"{label}: weights saved as npz or in shards are not supported; save with the default .h5 weights"
                    )
                raise InvalidModelFile(f"{label}: the .keras archive holds no model.weights.h5")
            blob = read("model.weights.h5", _MAX_WEIGHTS_BYTES)
    except (KeyError, ValueError) + ZIP_ERRORS as exc:
        raise InvalidModelFile(f"{label}: broken .keras archive: {type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict):
        raise InvalidModelFile(f"{label}: metadata.json is not an object")
    try:
        h5 = h5py.File(io.BytesIO(blob), "r")
    except _MALFORMED as exc:
        raise InvalidModelFile(f"{label}: model.weights.h5 is not a readable HDF5 file: {exc}") from exc
    try:
        weights = _ZipWeights(h5, label)
    except _MALFORMED as exc:
        raise InvalidModelFile(f"{label}: model.weights.h5 is damaged: {type(exc).__name__}: {exc}") from exc
    finally:
        h5.close()
    return config, {"keras_version": meta.get("keras_version"), "backend": meta.get("backend")}, weights


def _read_legacy_h5(path: Path, label: str):
    """Legacy HDF5: config from the ``model_config`` attribute, weights from ``model_weights``."""
    try:
        h5 = h5py.File(path, "r")
    except _MALFORMED as exc:
        raise InvalidModelFile(f"{label}: not a readable HDF5 file: {exc}") from exc
    try:
        if "model_config" not in h5.attrs:
            raise InvalidModelFile(
                f"{label}: no model_config attribute (a weights-only file? save the whole model with model.save)"
            )
        config = _json(_text(h5.attrs["model_config"]), label, "model_config")
        root = h5["model_weights"] if "model_weights" in h5 else None
        if root is None:
            raise InvalidModelFile(f"{label}: the file holds no model_weights group")
        meta = {}
        for key in ("keras_version", "backend"):
            for where in (h5.attrs, root.attrs):
                if key in where:
                    meta[key] = _text(where[key])
                    break
        weights = _LegacyWeights(root, label)
    except _MALFORMED as exc:
        raise InvalidModelFile(f"{label}: broken HDF5 model file: {type(exc).__name__}: {exc}") from exc
    finally:
        h5.close()
    return config, meta, weights


class _Failure:
    """An exception kept for later: raised again where the lazy h5py read used to raise it."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        try:  # an exception that cannot make the trip to the parent becomes one that can
            _load_child_answer(pickle.dumps(exc, protocol=_CHILD_PROTOCOL))
        except Exception:  # noqa: BLE001
            self.exc = RuntimeError(f"{type(exc).__name__}: {exc}")

    def reraise(self):
        raise self.exc


class _Weights:
    """Weight arrays read from an HDF5 file, within the size bounds.

    Everything the converter may ask for is read when the object is built (in the child process,
    see :func:`_read_isolated`), into plain numpy arrays; the HDF5 file is closed before the
    converter runs. A dataset or group that cannot be read keeps its error (a :class:`_Failure`),
    raised when the converter fetches it, as when the file was read lazily: a damaged weight of a
    layer the converter never asks for does not stop the conversion.
    """

    def __init__(self, label: str):
        self.label = label
        self.bytes_read = 0

    def array(self, dataset, where: str) -> np.ndarray:
        """A float dataset's values; its declared size is checked before anything is read, since a
        compressed (or never written) HDF5 dataset can declare any shape."""
        if not isinstance(dataset, h5py.Dataset):
            raise InvalidModelFile(f"{self.label}: {where} is not a dataset")
        try:
            dtype, size = dataset.dtype, dataset.size
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidModelFile(f"{self.label}: cannot read {where}: {exc}") from exc
        if dtype.kind != "f":
            raise InvalidModelFile(f"{self.label}: {where} holds {dtype} values, expected floats")
        nbytes = int(size or 0) * dtype.itemsize
        if nbytes > _MAX_ARRAY_BYTES:
            raise InvalidModelFile(f"{self.label}: {where} declares {nbytes} bytes, over the {_MAX_ARRAY_BYTES} limit")
        if self.bytes_read + nbytes > _MAX_ARRAYS_BYTES:
            raise InvalidModelFile(f"{self.label}: the weights add up to over the {_MAX_ARRAYS_BYTES} limit (at {where})")
        self.bytes_read += nbytes
        try:
            array = dataset[()]
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidModelFile(f"{self.label}: cannot read {where}: {exc}") from exc
        return np.asarray(array)


_WEIGHT_ROOTS = ("layers", "_layer_checkpoint_dependencies")


class _ZipWeights(_Weights):
    """Variables of a ``.keras`` file: ``layers/<path>/{vars, cell/vars, forward_layer/cell/vars, ...}``.

    Every ``vars`` group below ``layers`` (tf-keras 2.13-2.15: ``_layer_checkpoint_dependencies``)
    is read when built; ``fetch`` looks them up.
    """

    def __init__(self, h5, label: str):
        super().__init__(label)
        # Keras >= 3.10 writes the owning layer's name on each top-level vars group.
        self.by_name: dict[str, str] = {}
        self.vars: dict[str, Any] = {}  # "layers/lstm/cell/vars" -> [(key, array)] or _Failure
        for root in _WEIGHT_ROOTS:
            if root in h5:
                for key, group in h5[root].items():
                    if isinstance(group, h5py.Group) and "vars" in group and "name" in group["vars"].attrs:
                        self.by_name.setdefault(_text(group["vars"].attrs["name"]), f"{root}/{key}")

                def visit(name, obj, root=root):
                    if name.rsplit("/", 1)[-1] == "vars":
                        where = f"{root}/{name}"
                        try:
                            self.vars[where] = self._read_vars(obj, where)
                        except Exception as exc:  # noqa: BLE001 - raised again by fetch, if asked for
                            self.vars[where] = _Failure(exc)

                h5[root].visititems(visit)  # hard links only: no soft or external link is followed

    def _read_vars(self, group, where: str) -> list[tuple[str, np.ndarray]]:
        try:
            keys = sorted(group.keys(), key=int)
        except ValueError:
            raise InvalidModelFile(f"{self.label}: unexpected variable names in {where}: {list(group.keys())}")
        return [(k, self.array(group[k], where)) for k in keys]

    def fetch(self, layer: str, key: str, part: tuple[str, ...]) -> Optional[list[tuple[str, np.ndarray]]]:
        """Arrays of ``vars`` under ``<layer path>/<part...>`` in saved order, or None if absent.

        ``key`` is the path Keras derives from class names; ``layer`` the layer's name, used when
        the file records names.
        """
        candidates = [self.by_name[layer]] if layer in self.by_name else []
        # tf-keras 2.13-2.15 wrote "_layer_checkpoint_dependencies" where later versions write "layers".
        candidates += [f"{root}/{key}" for root in _WEIGHT_ROOTS]
        for base in candidates:
            where = "/".join((base,) + part + ("vars",))
            if where in self.vars:
                found = self.vars[where]
                if isinstance(found, _Failure):
                    found.reraise()
                return list(found)
        return None


class _LegacyWeights(_Weights):
    """Variables of a legacy ``.h5``: ``model_weights/<layer name>/<weight name>`` in ``weight_names`` order.

    Every layer group of ``model_weights`` is read when built; ``fetch`` looks them up.
    """

    def __init__(self, root, label: str):
        super().__init__(label)
        self.layers: dict[str, Any] = {}  # layer name -> [(weight name, array)] or _Failure
        for layer in root.keys():
            try:
                if isinstance(root.get(layer, getlink=True), h5py.ExternalLink):
                    raise InvalidModelFile(f"{label}: model_weights/{layer} is a link to another file")
                self.layers[layer] = self._read_layer(root[layer], layer)
            except Exception as exc:  # noqa: BLE001 - raised again by fetch, if asked for
                self.layers[layer] = _Failure(exc)

    def _read_layer(self, group, layer: str) -> list[tuple[str, np.ndarray]]:
        try:
            return [(n, self.array(group[n], f"model_weights/{layer}/{n}")) for n in _h5_list_attr(group, "weight_names")]
        except KeyError as exc:
            raise InvalidModelFile(f"{self.label}: layer {layer!r} lists a weight that is not stored: {exc}") from exc

    def fetch(self, layer: str, key: str, part: tuple[str, ...]) -> Optional[list[tuple[str, np.ndarray]]]:
        """The layer's weights (name, array) in saved order; ``part`` ("forward"/"backward") selects
        one direction of a Bidirectional layer. None if the layer has no group."""
        if layer not in self.layers:
            return None
        items = self.layers[layer]
        if isinstance(items, _Failure):
            items.reraise()
        if part and part[0] in ("forward_layer", "backward_layer"):
            # Bidirectional saves forward weights then backward weights; the names carry
            # "forward_<layer>" / "backward_<layer>" components, which decide when they agree.
            prefix = part[0].split("_")[0] + "_"
            tagged = [it for it in items if any(c.startswith(prefix) for c in it[0].split("/")[:-1])]
            if 2 * len(tagged) == len(items):
                return tagged
            half = len(items) // 2
            return items[:half] if prefix == "forward_" else items[half:]
        return list(items)


def _positive_int(name: str, value):
    """``value``, a layer config's ``name``, if it is a positive integer; else InvalidModelFile."""
    if not isinstance(value, int) or value < 1:
        raise InvalidModelFile(f"{name} {value!r} is not a positive integer")
    return value


def _keras_major(version, config) -> int:
    """3 or 2: which Keras saved the file (decides hard_sigmoid and config formats)."""
    if isinstance(version, str) and re.match(r"^\d+", version):
        return 3 if int(re.match(r"^\d+", version).group()) >= 3 else 2
    # No version recorded (very old Keras 2 files): Keras 2 configs use "batch_input_shape".
    return 2 if "batch_input_shape" in json.dumps(config) else 3


# ---------------------------------------------------------------------------------------------
# What the converter knows about each Keras tensor while it walks the graph
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    """A float tensor of the model: IR name, rank (3 = (batch, T, F), 2 = (batch, F)), features,
    timesteps if fixed, and the IR name of the Keras mask ``(batch, T)`` that travels with it
    (Keras's ``_keras_mask``), None if unmasked."""

    name: str
    rank: int
    features: Optional[int]
    timesteps: Optional[int] = None
    mask: Optional[str] = None


@dataclass(frozen=True)
class _MaskExpr:
    """Keras 3 records a Masking layer's mask as ``keras.ops`` nodes in functional configs:
    ``any(not_equal(x, mask_value), axis=-1)``. ``done`` is False after not_equal, True after any."""

    source: _Data
    value: float
    done: bool


@dataclass(frozen=True)
class _Unusable:
    """A tensor edgernn cannot produce; using it is a problem (``why``), not using it is fine."""

    why: str


_UNKNOWN = _Unusable("")  # output of a layer already refused: no second problem reported


@dataclass
class _Call:
    """One call of a layer in a functional graph, references resolved to values.

    ``inputs``: the data arguments (first positional; for Keras 2 RNNs the extra inputs are the
    initial states). ``initial_state``/``mask``: values or None.
    """

    inputs: list
    initial_state: list
    mask: Any = None


# ---------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------


class _Converter:
    """Walks a Keras model config, building IR nodes and gathering every problem before raising."""

    def __init__(self, label: str, config, weights, major: int):
        self.label, self.config, self.weights, self.major = label, config, weights, major
        self.unsupported: list[str] = []
        self.invalid: list[str] = []
        self.nodes: list[ir.Node] = []
        self.inputs: list[ir.Input] = []
        self.weight_keys: dict[str, str] = {}
        self.maskings: dict[tuple[str, float], tuple[str, str]] = {}
        self.used_op_names: set[str] = set()

    # -- driver ----------------------------------------------------------------------------

    def convert(self, source: dict) -> ir.ModelSpec:
        config = self.config
        if not isinstance(config, dict) or "class_name" not in config:
            raise InvalidModelFile(f"{self.label}: the model config has no class_name")
        kind = config["class_name"]
        body = config.get("config")
        if kind == "Sequential":
            outputs = self._sequential(body)
        elif kind in ("Functional", "Model") and isinstance(body, dict) and "layers" in body:
            outputs = self._functional(body)
        else:
            raise UnsupportedModel(
                f"{self.label}: model class {kind!r} is not supported (only Sequential and functional models; "
                "subclassed models have no graph in their config)"
            )
        names = []
        for value in outputs:
            names.append(self._use(value, "model output"))
        if self.invalid:
            raise InvalidModelFile(f"{self.label}: inconsistent weights or config", self.invalid)
        if self.unsupported:
            raise UnsupportedModel(f"{self.label}: cannot convert this model", self.unsupported)
        try:
            return ir.ModelSpec(tuple(self.inputs), tuple(self.nodes), tuple(names), source)
        except InvalidModelFile as exc:
            raise InvalidModelFile(f"{self.label}: {exc}") from exc

    def _use(self, value, what: str) -> Optional[str]:
        """The IR name of a data tensor used as ``what``; records a problem for anything else."""
        if isinstance(value, _Data):
            return value.name
        if isinstance(value, _Unusable):
            if value.why:
                self.unsupported.append(f"{value.why} (used as {what})")
        elif isinstance(value, _MaskExpr):
            self.unsupported.append(f"a mask computed by keras.ops is used as {what}")
        else:
            self.unsupported.append(f"a constant is used as {what}")
        return None

    def _sequential(self, body) -> list:
        """A Sequential config: each layer reads the previous layer's output."""
        if isinstance(body, list):  # Keras <= 2.2 wrote the layer list as the whole config
            body = {"layers": body}
        if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
            raise InvalidModelFile(f"{self.label}: the Sequential config has no layer list")
        entries = body["layers"]
        for entry in entries:
            self._check_entry(entry)
        layers = [e for e in entries if isinstance(e, dict) and e.get("class_name") != "InputLayer"]
        self._assign_weight_keys(layers)
        # The input shape: an InputLayer, the first layer's batch_input_shape (Keras 2 without
        # InputLayer), the Sequential's build_input_shape, or the first layer's build_config.
        shape, name = None, "input"
        first = entries[0] if entries else None
        if isinstance(first, dict) and first.get("class_name") == "InputLayer":
            shape = _input_shape(first.get("config", {}))
            name = first.get("config", {}).get("name", name)
        elif layers:
            cfg = layers[0].get("config", {})
            shape = _input_shape(cfg) or body.get("build_input_shape")
            shape = shape or (layers[0].get("build_config") or {}).get("input_shape")
        current = self._make_input(name, shape)
        outputs = [current if current is not None else _UNKNOWN]
        for entry in layers:
            if len(outputs) > 1:
                self.unsupported.append(
                    f"layer {entry.get('config', {}).get('name')!r}: reads a layer that returns several tensors"
                )
                outputs = [_UNKNOWN]
            outputs = self._apply(entry, _Call([outputs[0]], []), 0) or [_UNKNOWN]
        return outputs

    def _functional(self, body) -> list:
        """A functional config: layers with inbound nodes, resolved in dependency order."""
        entries = body.get("layers")
        if not isinstance(entries, list):
            raise InvalidModelFile(f"{self.label}: the functional config has no layer list")
        by_name = {}
        for entry in entries:
            self._check_entry(entry)
            by_name[entry.get("name") or entry["config"].get("name")] = entry
        self._assign_weight_keys([e for e in entries if e.get("class_name") != "InputLayer"])
        values: dict[tuple[str, int, int], Any] = {}
        refused: set[tuple[str, int]] = set()  # (layer, node) calls refused: all their outputs unknown
        for ref in _refs(body.get("input_layers")):
            entry = by_name.get(ref[0])
            if entry is None or entry.get("class_name") != "InputLayer":
                raise InvalidModelFile(f"{self.label}: model input {ref[0]!r} is not an InputLayer of the config")
            value = self._make_input(ref[0], _input_shape(entry.get("config", {})))
            values[(ref[0], 0, 0)] = value if value is not None else _UNKNOWN
        pending = []
        for entry in entries:
            if entry.get("class_name") == "InputLayer":
                continue
            nodes = entry.get("inbound_nodes") or []
            if not isinstance(nodes, list):
                raise InvalidModelFile(f"{self.label}: layer {entry.get('name')!r} has malformed inbound_nodes")
            for k, node in enumerate(nodes):
                pending.append((entry, k, _parse_node(node, self.label, entry.get("name"))))
        # Resolve in dependency order (a layer called twice has nodes at different depths).
        while pending:
            ready = [p for p in pending if all(r in values or r[:2] in refused for r in p[2].refs())]
            if not ready:
                names = sorted({p[0].get("name") for p in pending})
                raise InvalidModelFile(f"{self.label}: layers {names} read tensors no layer makes")
            done = {id(p) for p in ready}
            pending = [p for p in pending if id(p) not in done]
            for entry, k, node in ready:
                outs = self._apply(entry, node.resolve(values, refused), k)
                if outs is None:
                    refused.add((entry.get("name"), k))
                for i, value in enumerate(outs or []):
                    values[(entry.get("name"), k, i)] = value
        outputs = []
        for ref in _refs(body.get("output_layers")):
            if ref[:2] in refused:
                outputs.append(_UNKNOWN)
            elif ref not in values:
                raise InvalidModelFile(f"{self.label}: model output {ref} is never made")
            else:
                outputs.append(values[ref])
        return outputs

    # -- checks common to all layers -------------------------------------------------------

    def _check_entry(self, entry):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise InvalidModelFile(f"{self.label}: a layer entry of the config is malformed")
        if not isinstance(entry.get("config"), dict):
            raise InvalidModelFile(f"{self.label}: layer entry {entry.get('class_name')!r} has no config")

    def _where(self, entry) -> str:
        return f"layer {entry['config'].get('name', entry.get('name'))!r} ({entry['class_name']})"

    def _custom(self, entry) -> Optional[str]:
        """Why ``entry`` is not a built-in Keras layer, or None. Built-ins live in keras.* modules
        (tf_keras/tensorflow for Keras 2) and have no registered_name other than their class."""
        module = entry.get("module")
        registered = entry.get("registered_name")
        if module is not None and not str(module).split(".")[0] in ("keras", "tf_keras", "tensorflow"):
            return f"a custom object from module {module!r}"
        if registered not in (None, entry["class_name"]):
            return f"a custom object registered as {registered!r}"
        return None

    def _dtype_problem(self, cfg) -> Optional[str]:
        dtype = cfg.get("dtype")
        if isinstance(dtype, dict):
            if "Quantized" in str(dtype.get("class_name", "")):
                return "quantized dtype policy"
            dtype = (dtype.get("config") or {}).get("name")
        if dtype is None or dtype in _FLOAT_POLICIES:
            return None
        return f"dtype policy {dtype!r} (only float32 variables are supported)"

    # -- weights -----------------------------------------------------------------------------

    def _assign_weight_keys(self, layers):
        """``.keras`` paths: snake_case(class name), suffixed _1, _2, ... per class in model.layers
        order (keras/src/saving/saving_lib.py: _save_container_state / _get_unique_name)."""
        used: dict[str, int] = {}
        for entry in layers:
            module = str(entry.get("module") or "")
            if ".ops." in module:  # keras.ops nodes of a functional graph are not in model.layers
                continue
            base = _snake_case(entry["class_name"])
            if base in used:
                used[base] += 1
                key = f"{base}_{used[base]}"
            else:
                used[base] = 0
                key = base
            self.weight_keys[entry["config"].get("name", entry.get("name"))] = key

    def _fetch(self, layer: str, part: tuple[str, ...], roles: list[str], where: str) -> Optional[dict]:
        """Weights of ``layer`` (``part`` a sub-path: ("cell",), ("forward_layer", "cell"), ...) as
        a dict role -> array for ``roles`` in Keras's creation order (kernel, recurrent_kernel, bias).

        Names decide where the file has them (legacy .h5: ``.../kernel:0``); the saved order
        decides where it does not (.keras: ``vars/0, 1, 2``). Problems go to ``self.invalid``.
        """
        items = self.weights.fetch(layer, self.weight_keys.get(layer, _snake_case(layer)), part)
        if items is None:
            if not roles:
                return {}
            self.invalid.append(f"{where}: its weights are missing from the file")
            return None
        by_name = {}
        for name, array in items:
            role = name.split("/")[-1].split(":")[0]
            by_name.setdefault(role, array)
        if set(roles) <= set(by_name) and len(by_name) == len(items):
            return {role: by_name[role] for role in roles}
        if len(items) != len(roles):
            self.invalid.append(f"{where}: the file holds {len(items)} weight arrays, expected {len(roles)} ({', '.join(roles)})")
            return None
        return {role: array for role, (_, array) in zip(roles, items)}

    def _shape(self, where: str, what: str, array, shape: tuple) -> bool:
        if array.shape != tuple(shape):
            self.invalid.append(f"{where}: {what} has shape {array.shape}, expected {tuple(shape)}")
            return False
        return True

    # -- naming ------------------------------------------------------------------------------

    def _op_name(self, layer: str, k: int) -> str:
        """IR op name: the Keras layer name; a layer called again gets ``name#k``."""
        name = layer if k == 0 else f"{layer}#{k}"
        while name in self.used_op_names:
            name += "_"
        self.used_op_names.add(name)
        return name

    def _activation(self, value, where: str, problems: list[str], elementwise: bool = True) -> Optional[str]:
        """Map a Keras activation (name or serialized function) to an IR name, or record a problem."""
        name = value
        if isinstance(value, dict):  # {"module": "keras.activations", "class_name": "function", "config": "relu"}
            module = str(value.get("module") or "")
            if value.get("class_name") == "function" and isinstance(value.get("config"), str) and (
                module.startswith(("keras", "tf_keras", "tensorflow")) or not module
            ):
                name = value["config"]
            else:
                problems.append(f"{where}: activation {value.get('class_name')!r} is not a built-in Keras activation")
                return None
        if not isinstance(name, str):
            problems.append(f"{where}: activation {value!r} is not supported")
            return None
        table = _KERAS3_ACTIVATIONS if self.major >= 3 else _KERAS2_ACTIVATIONS
        mapped = table.get(name)
        if mapped is None or (elementwise and mapped not in ir.ELEMENTWISE_ACTIVATIONS):
            kind = "an element-wise activation" if elementwise else "an activation"
            problems.append(f"{where}: activation {name!r} is not {kind} edgernn supports (Keras {self.major})")
            return None
        return mapped

    # -- inputs ------------------------------------------------------------------------------

    def _make_input(self, name: str, shape) -> Optional[_Data]:
        """An ir.Input from a Keras batch shape ``[batch, T, F]`` or ``[batch, F]`` (batch ignored:
        a stateful model's fixed batch size is not kept, the converted model takes any)."""
        if not isinstance(shape, (list, tuple)) or len(shape) not in (2, 3):
            self.unsupported.append(
                f"input {name!r}: shape {shape} is not (batch, timesteps, features) or (batch, features)"
            )
            return None
        features = shape[-1]
        if not isinstance(features, int) or features < 1:
            self.unsupported.append(f"input {name!r}: the number of features must be fixed, got {features}")
            return None
        rank = len(shape)
        timesteps = shape[1] if rank == 3 and isinstance(shape[1], int) else None
        self.inputs.append(ir.Input(name=name, features=features, rank=rank, timesteps=timesteps))
        return _Data(name, rank, features, timesteps)

    # -- layers ------------------------------------------------------------------------------

    def _apply(self, entry, call: _Call, k: int) -> Optional[list]:
        """Convert one call of one layer; returns the values of its outputs in Keras order, or
        None when the layer is refused (its problems recorded; what reads it is checked dry)."""
        cls, cfg = entry["class_name"], entry["config"]
        where = self._where(entry)
        problems: list[str] = []
        custom = self._custom(entry)
        if custom:
            self.unsupported.append(f"{where}: {custom}")
            return None
        if cls == "Lambda":
            self.unsupported.append(f"{where}: Lambda layers hold Python code, which edgernn never runs")
            return None
        handler = _HANDLERS.get(cls)
        if handler is None:
            if cls in _MODEL_CLASSES:
                what = "nested models are"
            elif ".ops." in str(entry.get("module") or ""):
                what = f"keras.ops.{_snake_case(cls)} in a functional graph is"
            else:
                what = f"{cls} layers are"
            self.unsupported.append(f"{where}: {what} not supported")
            return None
        dtype_problem = self._dtype_problem(cfg)
        if dtype_problem:
            problems.append(f"{where}: {dtype_problem}")
        # Values of refused upstream layers propagate silently (already reported); the layer's
        # own config is still checked so that one error lists every problem.
        if any(v is _UNKNOWN for v in call.inputs + call.initial_state + [call.mask]):
            try:
                handler(self, entry, call, k, where, problems, dry=True)
            except InvalidModelFile as exc:
                self.invalid.append(f"{where}: {exc}")
            self.unsupported.extend(problems)
            return None
        try:
            outs = handler(self, entry, call, k, where, problems, dry=False)
        except InvalidModelFile as exc:  # an IR op refused its weights (NaN, shapes): name the layer
            self.invalid.append(f"{where}: {exc}")
            return None
        self.unsupported.extend(problems)
        return None if problems else outs

    def _data_input(self, call: _Call, where: str, problems: list[str], ranks=(2, 3)) -> Optional[_Data]:
        """The single data input of a call, checked; None (problem recorded) otherwise."""
        if len(call.inputs) != 1:
            problems.append(f"{where}: takes {len(call.inputs)} inputs; only single-input layers are supported")
            return None
        x = call.inputs[0]
        if not isinstance(x, _Data):
            self._use(x, f"input of {where}")
            return None
        if x.rank not in ranks:
            problems.append(f"{where}: input of rank {x.rank} is not supported here (expected {' or '.join(map(str, ranks))})")
            return None
        return x

    def _masking_node(self, x: _Data, value: float, name: str) -> tuple[str, str]:
        """One ir.Masking node per (input, mask_value): the Masking layer and Keras 3's
        not_equal/any mask ops over the same tensor share it. Returns (masked data, mask) names."""
        key = (x.name, float(value))
        if key not in self.maskings:
            op = ir.Masking(name=self._op_name(name, 0), mask_value=float(value))
            outs = (op.name, f"{op.name}:mask")
            self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=outs))
            self.maskings[key] = outs
        return self.maskings[key]

    def _explicit_mask(self, call: _Call, x: _Data, where: str, problems: list[str]) -> Optional[str]:
        """The mask an RNN call uses: Keras 3 functional configs name it (``kwargs["mask"]``, built
        from not_equal/any ops); otherwise the one riding on the input (Keras's propagation)."""
        if call.mask is None:
            return x.mask
        if isinstance(call.mask, _MaskExpr) and call.mask.done:
            return self._masking_node(call.mask.source, call.mask.value, f"{call.mask.source.name}_mask")[1]
        problems.append(f"{where}: an explicit mask argument that is not a Masking mask is not supported")
        return None

    # Handlers: (self, entry, call, k, where, problems, dry) -> outputs or None. With dry=True
    # (an upstream layer was refused) they only check the config and build nothing.

    def _identity(self, entry, call, k, where, problems, dry):
        if dry:
            return None
        x = self._data_input(call, where, problems)
        return [x] if x else None

    def _activation_layer(self, entry, call, k, where, problems, dry):
        cls, cfg = entry["class_name"], entry["config"]
        act = self._activation_from_layer(cls, cfg, where, problems)
        if dry or act is None:
            return None
        x = self._data_input(call, where, problems)
        if x is None:
            return None
        if cls == "Softmax" and (call.mask is not None or x.mask is not None):
            # keras.layers.Softmax uses the mask (masked entries get -1e9 before the softmax).
            problems.append(f"{where}: Softmax layer on a masked tensor is not supported")
            return None
        op = ir.Activation(name=self._op_name(cfg.get("name", entry.get("name")), k), activation=act)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, x.rank, x.features, x.timesteps, x.mask)]

    def _activation_from_layer(self, cls, cfg, where, problems) -> Optional[str]:
        """Activation layers: Activation(name) and the parameterised ReLU/LeakyReLU/ELU/Softmax,
        accepted only where their parameters equal an IR activation's definition."""
        if cls == "Activation":
            return self._activation(cfg.get("activation"), where, problems, elementwise=False)
        if cls == "ReLU":
            top, slope, threshold = cfg.get("max_value"), cfg.get("negative_slope", 0.0), cfg.get("threshold", 0.0)
            if slope == 0 and threshold == 0 and top is None:
                return "relu"
            if slope == 0 and threshold == 0 and top == 6:
                return "relu6"
            problems.append(f"{where}: ReLU with max_value={top}, negative_slope={slope}, threshold={threshold} is not supported")
            return None
        if cls == "LeakyReLU":
            slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
            if isinstance(slope, (int, float)) and math.isclose(slope, 0.2, rel_tol=1e-6):
                return "leaky_relu"  # the IR's leaky_relu is Keras 3's activation, slope 0.2
            problems.append(f"{where}: LeakyReLU slope {slope} is not supported (only 0.2)")
            return None
        if cls == "ELU":
            if cfg.get("alpha", 1.0) == 1.0:
                return "elu"
            problems.append(f"{where}: ELU alpha {cfg.get('alpha')} is not supported (only 1.0)")
            return None
        if cls == "Softmax":
            if cfg.get("axis", -1) in (-1, [-1]):
                return "softmax"
            problems.append(f"{where}: Softmax over axis {cfg.get('axis')} is not supported (only -1)")
            return None
        raise AssertionError(cls)  # pragma: no cover

    def _dense_op(self, cfg, layer: str, part: tuple, x: Optional[_Data], op_name: str, where, problems, dry):
        """ir.Dense from a Dense config; ``kernel`` (features, units) as Keras stores it (x @ kernel)."""
        units, use_bias = _positive_int("units", cfg.get("units")), cfg.get("use_bias", True)
        if cfg.get("lora_rank"):
            problems.append(f"{where}: LoRA-adapted Dense layers are not supported")
        if cfg.get("quantization_config"):
            problems.append(f"{where}: quantized Dense layers are not supported")
        act = self._activation(cfg.get("activation", "linear"), where, problems, elementwise=False)
        if dry or problems or x is None:
            return None
        roles = ["kernel", "bias"] if use_bias else ["kernel"]
        w = self._fetch(layer, part, roles, where)
        if w is None:
            return None
        ok = self._shape(where, "kernel", w["kernel"], (x.features, units))
        if use_bias:
            ok = self._shape(where, "bias", w["bias"], (units,)) and ok
        if not ok:
            return None
        bias = ir.as_weight(w["bias"]) if use_bias else None
        return ir.Dense(name=op_name, kernel=ir.as_weight(w["kernel"]), bias=bias, activation=act)

    def _dense(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        x = None if dry else self._data_input(call, where, problems)
        op = self._dense_op(cfg, name, (), x, name, where, problems, dry)
        if op is None:
            return None
        op = ir.Dense(name=self._op_name(name, k), kernel=op.kernel, bias=op.bias, activation=op.activation)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        # Dense supports masking: the input's mask passes on unchanged.
        return [_Data(op.name, x.rank, op.output_size, x.timesteps, x.mask)]

    def _time_distributed(self, entry, call, k, where, problems, dry):
        """TimeDistributed(Dense) is a Dense over the last axis of (batch, T, F): the same op.
        TimeDistributed of identity or activation layers is that layer."""
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        inner = cfg.get("layer")
        if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
            raise InvalidModelFile("no wrapped layer in the config")
        inner_cls = inner.get("class_name")
        custom = self._custom(inner)
        if custom or inner_cls not in ({"Dense", "Activation"} | _IDENTITY_LAYERS):
            problems.append(f"{where}: TimeDistributed({custom or inner_cls}) is not supported")
            return None
        dtype_problem = self._dtype_problem(inner["config"])
        if dtype_problem:
            problems.append(f"{where}: {dtype_problem}")
        x = None if dry else self._data_input(call, where, problems, ranks=(3,))
        if inner_cls in _IDENTITY_LAYERS:
            return None if dry or x is None else [x]
        if inner_cls == "Activation":
            act = self._activation(inner["config"].get("activation"), where, problems, elementwise=False)
            if dry or x is None or act is None:
                return None
            op = ir.Activation(name=self._op_name(name, k), activation=act)
            self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
            return [_Data(op.name, 3, x.features, x.timesteps, x.mask)]
        # .keras: layers/time_distributed/layer/vars; legacy h5: model_weights/<td name>/...
        op = self._dense_op(inner["config"], name, ("layer",), x, name, where, problems, dry)
        if op is None:
            return None
        op = ir.Dense(name=self._op_name(name, k), kernel=op.kernel, bias=op.bias, activation=op.activation)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, 3, op.output_size, x.timesteps, x.mask)]

    def _masking(self, entry, call, k, where, problems, dry):
        cfg = entry["config"]
        value = cfg.get("mask_value", 0.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{where}: mask_value {value!r} is not a number")
            return None
        if dry:
            return None
        x = self._data_input(call, where, problems, ranks=(3,))
        if x is None:
            return None
        data, mask = self._masking_node(x, value, cfg.get("name", entry.get("name")))
        # Masking replaces any incoming mask with its own.
        return [_Data(data, 3, x.features, x.timesteps, mask)]

    def _repeat_vector(self, entry, call, k, where, problems, dry):
        n = _positive_int("n", entry["config"].get("n"))
        if dry:
            return None
        x = self._data_input(call, where, problems, ranks=(2,))
        if x is None:
            return None
        op = ir.RepeatVector(name=self._op_name(entry["config"].get("name", entry.get("name")), k), n=n)
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,)))
        return [_Data(op.name, 3, x.features, n, None)]

    def _not_equal(self, entry, call, k, where, problems, dry):
        """keras.ops.not_equal(x, mask_value): the first half of a Masking mask in a Keras 3 graph."""
        if dry:
            return None
        if len(call.inputs) == 2 and isinstance(call.inputs[0], _Data) and isinstance(call.inputs[1], (int, float)):
            return [_MaskExpr(call.inputs[0], float(call.inputs[1]), done=False)]
        problems.append(f"{where}: keras.ops.not_equal is supported only as part of a Masking mask")
        return None

    def _any(self, entry, call, k, where, problems, dry):
        """keras.ops.any(not_equal(x, v), axis=-1): a Masking mask, (batch, T), True = real step."""
        cfg = entry["config"]
        if dry:
            return None
        x = call.inputs[0] if len(call.inputs) == 1 else None
        if isinstance(x, _MaskExpr) and not x.done and cfg.get("axis") in (-1, 2) and not cfg.get("keepdims"):
            return [_MaskExpr(x.source, x.value, done=True)]
        problems.append(f"{where}: keras.ops.any is supported only as part of a Masking mask")
        return None

    # -- recurrent layers ----------------------------------------------------------------------

    def _rnn_settings(self, entry, where, problems) -> Optional[dict]:
        """The IR-relevant settings of an LSTM/GRU/SimpleRNN (or RNN(cell)) config, checked."""
        cls, cfg = entry["class_name"], entry["config"]
        custom = self._custom(entry)
        if custom:
            problems.append(f"{where}: wraps {custom}")
            return None
        if cls == "RNN":
            # keras.layers.RNN(LSTMCell(...)): the cell's config holds units and activations.
            cell = cfg.get("cell")
            if isinstance(cell, list) or not isinstance(cell, dict) or cell.get("class_name") not in _RNN_CELLS:
                kind = cell.get("class_name") if isinstance(cell, dict) else "stacked cells"
                problems.append(f"{where}: RNN with cell {kind!r} is not supported")
                return None
            if self._custom(cell):
                problems.append(f"{where}: wraps {self._custom(cell)}")
                return None
            kind = _RNN_CELLS[cell["class_name"]]
            cell_cfg = dict(cell.get("config") or {})
        elif cls in _RNN_LAYERS:
            kind, cell_cfg = _RNN_LAYERS[cls], cfg
        else:
            problems.append(f"{where}: wraps {cls} layers, which are not supported")
            return None
        units = _positive_int("units", cell_cfg.get("units"))
        if cfg.get("time_major"):
            problems.append(f"{where}: time_major=True is not supported")
        if cfg.get("num_constants"):
            problems.append(f"{where}: RNN constants are not supported")
        settings = {
            "cell": kind,
            "units": units,
            "use_bias": bool(cell_cfg.get("use_bias", True)),
            "activation": self._activation(cell_cfg.get("activation", "tanh"), where, problems),
            "recurrent_activation": "sigmoid",
            # GRU: None = not recorded (very old files): decided by the bias shape below.
            "reset_after": cell_cfg.get("reset_after") if kind == "gru" else True,
            "return_sequences": bool(cfg.get("return_sequences", False)),
            "return_state": bool(cfg.get("return_state", False)),
            "go_backwards": bool(cfg.get("go_backwards", False)),
            # Keras 2 writes zero_output_for_mask only when True.
            "zero_output_for_mask": bool(cfg.get("zero_output_for_mask", False)),
        }
        if kind != "simple":
            settings["recurrent_activation"] = self._activation(
                cell_cfg.get("recurrent_activation", "sigmoid"), where, problems
            )
        # Not recorded anywhere in the IR, on purpose: stateful (state carried between predict
        # calls; the converted model's Stream does that for any batch size), unroll (same math),
        # dropout/recurrent_dropout (identity at inference), implementation/use_cudnn (same math).
        return settings

    def _recurrent_op(self, layer: str, part: tuple, s: dict, input_size: int, op_name: str, where: str):
        """ir.Recurrent with the weights of ``layer``/``part`` in the canonical (Keras) layout."""
        gates, units = ir.CELL_GATES[s["cell"]], s["units"]
        roles = ["kernel", "recurrent_kernel"] + (["bias"] if s["use_bias"] else [])
        w = self._fetch(layer, part, roles, where)
        if w is None:
            return None
        ok = self._shape(where, "kernel", w["kernel"], (input_size, gates * units))
        ok = self._shape(where, "recurrent_kernel", w["recurrent_kernel"], (units, gates * units)) and ok
        bias = recurrent_bias = None
        reset_after = s["reset_after"]
        if s["use_bias"]:
            b = w["bias"]
            if s["cell"] == "gru" and reset_after is None:
                reset_after = b.ndim == 2  # (2, 3H) exists only with reset_after=True
            if s["cell"] == "gru" and reset_after:
                # Layout fix: Keras GRU(reset_after=True) stores one (2, 3H) bias; row 0 is added to
                # the input projection x W, row 1 to the recurrent projection h U (inside r * (...)
                # for the candidate), so they are kept apart as IR bias and recurrent_bias.
                if self._shape(where, "bias", b, (2, gates * units)) and ok:
                    bias, recurrent_bias = ir.as_weight(b[0]), ir.as_weight(b[1])
                else:
                    ok = False
            else:
                ok = self._shape(where, "bias", b, (gates * units,)) and ok
                bias = ir.as_weight(b)
        if not ok:
            return None
        try:
            return ir.Recurrent(
                name=op_name,
                cell=s["cell"],
                units=units,
                input_size=input_size,
                # No reshuffle: Keras's (input_size, gates * units) kernel with gate blocks
                # i,f,c,o / z,r,h is the IR layout.
                kernel=ir.as_weight(w["kernel"]),
                recurrent_kernel=ir.as_weight(w["recurrent_kernel"]),
                bias=bias,
                recurrent_bias=recurrent_bias,
                activation=s["activation"],
                recurrent_activation=s["recurrent_activation"],
                reset_after=True if reset_after is None else bool(reset_after),
                return_sequences=s["return_sequences"],
                go_backwards=s["go_backwards"],
                zero_output_for_mask=s["zero_output_for_mask"],
            )
        except InvalidModelFile as exc:
            self.invalid.append(f"{where}: {exc}")
            return None

    def _recurrent(self, entry, call, k, where, problems, dry):
        """LSTM / GRU / SimpleRNN / RNN(cell): outputs [y] or, with return_state, [y, *states]."""
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        s = self._rnn_settings(entry, where, problems)
        if dry or s is None or problems:
            return None
        call = _split_states(call)
        x = self._data_input(call, where, problems, ranks=(3,))
        if x is None:
            return None
        n_states = 2 if s["cell"] == "lstm" else 1
        states = []
        if call.initial_state:
            for v in call.initial_state:
                if not isinstance(v, _Data) or v.rank != 2 or v.features != s["units"]:
                    problems.append(f"{where}: initial_state must be {n_states} tensor(s) of (batch, {s['units']})")
                    return None
                states.append(v.name)
            if len(states) != n_states:
                problems.append(f"{where}: initial_state has {len(states)} tensors, the cell has {n_states} states")
                return None
        mask = self._explicit_mask(call, x, where, problems)
        if problems:
            return None
        op = self._recurrent_op(name, ("cell",), s, x.features, self._op_name(name, k), where)
        if op is None:
            return None
        outs = (op.name,) + tuple(f"{op.name}:{i}" for i in range(1, n_states + 1) if s["return_state"])
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=outs, mask=mask, initial_state=tuple(states)))
        # Keras RNN.compute_mask: the mask passes on with return_sequences, is consumed without;
        # the states never carry one.
        y = _Data(op.name, 3 if s["return_sequences"] else 2, s["units"], x.timesteps if s["return_sequences"] else None,
                  mask if s["return_sequences"] else None)
        return [y] + [_Data(n, 2, s["units"]) for n in outs[1:]]

    def _bidirectional(self, entry, call, k, where, problems, dry):
        """Bidirectional(RNN) -> ir.Bidirectional: forward and backward layers from the config
        (Keras builds the backward one as a copy with go_backwards flipped unless given)."""
        cfg = entry["config"]
        name = cfg.get("name", entry.get("name"))
        merge = cfg.get("merge_mode", "concat")
        if merge not in ir.MERGE_MODES:
            problems.append(f"{where}: merge_mode {merge!r} is not supported (only {', '.join(ir.MERGE_MODES)})")
        fwd_entry, bwd_entry = cfg.get("layer"), cfg.get("backward_layer")
        if not isinstance(fwd_entry, dict) or not isinstance(fwd_entry.get("config"), dict):
            raise InvalidModelFile("no wrapped layer in the config")
        fwd = self._rnn_settings(fwd_entry, where, problems)
        if isinstance(bwd_entry, dict) and isinstance(bwd_entry.get("config"), dict):
            bwd = self._rnn_settings(bwd_entry, where, problems)
        else:
            bwd = None if fwd is None else dict(fwd, go_backwards=not fwd["go_backwards"])
        if fwd is None or bwd is None:
            return None
        if fwd["go_backwards"] or not bwd["go_backwards"]:
            problems.append(f"{where}: a forward layer with go_backwards=True is not supported")
        for key in ("cell", "units", "return_sequences", "return_state"):
            if fwd[key] != bwd[key]:
                problems.append(f"{where}: forward and backward layers differ in {key}")
        call = _split_states(call)
        if call.initial_state:
            problems.append(f"{where}: initial_state for a Bidirectional layer is not supported")
        if dry or problems:
            return None
        x = self._data_input(call, where, problems, ranks=(3,))
        if x is None:
            return None
        mask = self._explicit_mask(call, x, where, problems)
        if problems:
            return None
        # keras Bidirectional.__init__ forces zero_output_for_mask = return_sequences on both layers.
        for s in (fwd, bwd):
            s["zero_output_for_mask"] = s["return_sequences"]
        op_name = self._op_name(name, k)
        f_op = self._recurrent_op(name, ("forward_layer", "cell"), fwd, x.features, f"{op_name}/forward", where)
        b_op = self._recurrent_op(name, ("backward_layer", "cell"), bwd, x.features, f"{op_name}/backward", where)
        if f_op is None or b_op is None:
            return None
        try:
            op = ir.Bidirectional(name=op_name, forward=f_op, backward=b_op, merge_mode=merge)
        except InvalidModelFile as exc:
            self.invalid.append(f"{where}: {exc}")
            return None
        self.nodes.append(ir.Node(op=op, inputs=(x.name,), outputs=(op.name,), mask=mask))
        seq = fwd["return_sequences"]
        y = _Data(op.name, 3 if seq else 2, op.output_size, x.timesteps if seq else None, mask if seq else None)
        # With return_state Keras returns [y, forward states..., backward states...]; the IR op
        # makes y only, so the states may be left unused but not read.
        states = [_Unusable(f"{where}: the states of a Bidirectional layer with return_state")] * (
            4 if fwd["cell"] == "lstm" else 2
        )
        return [y] + (states if fwd["return_state"] else [])


_HANDLERS = {
    **{cls: _Converter._identity for cls in _IDENTITY_LAYERS},
    **{cls: _Converter._activation_layer for cls in ("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")},
    **{cls: _Converter._recurrent for cls in (*_RNN_LAYERS, "RNN")},
    "Dense": _Converter._dense,
    "TimeDistributed": _Converter._time_distributed,
    "Masking": _Converter._masking,
    "RepeatVector": _Converter._repeat_vector,
    "Bidirectional": _Converter._bidirectional,
    "NotEqual": _Converter._not_equal,
    "Any": _Converter._any,
}


# ---------------------------------------------------------------------------------------------
# Config helpers
# ---------------------------------------------------------------------------------------------


def _split_states(call: _Call) -> _Call:
    """RNN calls: inputs after the sequence are initial states (Keras 2 lists them as extra
    inbound tensors; Keras 3 when passed positionally)."""
    if len(call.inputs) > 1 and not call.initial_state:
        return _Call(call.inputs[:1], call.inputs[1:], call.mask)
    return call


def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case, which names the weight groups of a .keras file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _input_shape(cfg: dict):
    """Batch shape of an InputLayer config: Keras 3 "batch_shape", Keras 2 "batch_input_shape"."""
    for key in ("batch_shape", "batch_input_shape"):
        if cfg.get(key) is not None:
            return cfg[key]
    if cfg.get("shape") is not None:  # some Keras 3 releases wrote shape without the batch axis
        return [None, *cfg["shape"]]
    return None


def _is_ref(value) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) >= 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def _refs(value) -> list[tuple[str, int, int]]:
    """Flatten input_layers/output_layers: one [name, node, tensor] or nested lists/dicts of them."""
    if _is_ref(value):
        return [(value[0], value[1], value[2])]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _refs(v)]
    return []


def _keras_tensor(value) -> Optional[tuple[str, int, int]]:
    """A Keras 3 serialized KerasTensor -> its (layer, node, tensor) history, else None."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if _is_ref(history):
            return (history[0], history[1], history[2])
    return None


class _Node:
    """An inbound node of a functional config, with references still unresolved.

    Keras 3: ``{"args": [...], "kwargs": {...}}`` where tensors are ``__keras_tensor__`` dicts with
    a ``keras_history`` [layer, node, tensor]; an RNN's ``initial_state`` and ``mask`` are kwargs.
    Keras 2: ``[[layer, node, tensor, kwargs], ...]``; an RNN called with ``initial_state`` lists
    the states as extra inbound tensors after the sequence.
    """

    def __init__(self, inputs: list, initial_state: list, mask):
        self.inputs, self.initial_state, self.mask = inputs, initial_state, mask

    def refs(self) -> list:
        return [v for v in self.inputs + self.initial_state + [self.mask] if isinstance(v, tuple)]

    def resolve(self, values, refused) -> _Call:
        def get(v):
            if not isinstance(v, tuple):
                return v
            return _UNKNOWN if v[:2] in refused else values[v]

        return _Call([get(v) for v in self.inputs], [get(v) for v in self.initial_state], get(self.mask))


def _parse_node(node, label: str, layer) -> _Node:
    """Parse one inbound node (Keras 3 dict or Keras 2 list) into references and constants.

    ``inputs`` lists every positional argument flattened (tensor references as tuples, constants
    as they are: ``not_equal(x, -1.0)`` has ``[ref, -1.0]``); for an RNN, inputs after the first
    are initial states (Keras 2 writes them so; Keras 3 does when they are passed positionally).
    """

    def flat(value) -> list:
        ref = _keras_tensor(value)
        if ref is not None:
            return [ref]
        if isinstance(value, (list, tuple)):
            return [t for v in value for t in flat(v)]
        return [value]

    if isinstance(node, dict):  # Keras 3
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise InvalidModelFile(f"{label}: layer {layer!r} has a malformed inbound node")
        inputs = [t for a in args for t in flat(a)]
        initial = flat(kwargs["initial_state"]) if kwargs.get("initial_state") is not None else []
        mask = kwargs.get("mask")
        if mask is not None:
            # One KerasTensor (the usual any(not_equal(...)) of a Masking layer); anything else is
            # kept as a marker the RNN handlers refuse.
            mask = _keras_tensor(mask) or _Unusable(f"layer {layer!r}: an explicit mask argument")
        return _Node(inputs, initial, mask)
    if isinstance(node, list):  # Keras 2
        inputs, initial, mask = [], [], None
        for item in node:
            if not (isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str)):
                raise InvalidModelFile(f"{label}: layer {layer!r} has a malformed inbound node")
            # ["_CONSTANT_VALUE", -1, value, kwargs] is a constant argument.
            inputs.append(item[2] if item[0] == "_CONSTANT_VALUE" else (item[0], item[1], item[2]))
            kwargs = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
            if kwargs.get("initial_state") is not None:
                initial += _refs(kwargs["initial_state"])
            if kwargs.get("mask") is not None:
                mask = tuple(kwargs["mask"][:3]) if _is_ref(kwargs["mask"]) else _Unusable(
                    f"layer {layer!r}: an explicit mask argument"
                )
        return _Node(inputs, initial, mask)
    raise InvalidModelFile(f"{label}: layer {layer!r} has a malformed inbound node")
