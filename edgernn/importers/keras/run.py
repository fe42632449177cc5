"""The source model run by Keras itself (:func:`run_source`), which conversion verification holds
the converted model against. Keras (or tf-keras, for a file Keras 2 saved) is imported here, lazily,
when a file is run: the only import of it in the package."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np

from ...errors import EdgernnError
from ...store import ZIP_ERRORS, read_member
from .container import _MAX_JSON_BYTES
from .weights import _text


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
