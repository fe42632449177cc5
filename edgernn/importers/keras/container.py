"""The containers: where a Keras file keeps its config, its metadata and its weights, read into plain
values (dicts, str, numpy arrays) within bounds on what a hostile file can make us read.

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

Every h5py call of the importer happens below :func:`_read_container` (the weights module reads the
arrays), which the isolated module runs in a child process.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import h5py

from ...errors import InvalidModelFile, UnsupportedModel
from ...store import ZIP_ERRORS, read_member
from .weights import _LegacyWeights, _text, _ZipWeights

# Bounds on what a hostile file can make us decompress or allocate (issue #6). Each zip member is
# checked against its declared size and again while it is read (read_member), so neither a zip bomb
# nor a header that lies about its size gets past the bound.
_MAX_WEIGHTS_BYTES = 4 << 30  # model.weights.h5 in a .keras archive
_MAX_JSON_BYTES = 16 << 20    # config.json, metadata.json: a few KB in real models, a few MB at most
_MAX_MEMBERS = 100            # Keras writes three (config.json, metadata.json, model.weights.h5)

# What h5py, json and the converter raise on a file that is not what Keras writes: a field of the wrong
# type, a missing key, a corrupt HDF5 structure (h5py raises KeyError, RuntimeError, OSError or
# ValueError depending on which HDF5 check failed), a config nested past the recursion limit.
_MALFORMED = (KeyError, TypeError, AttributeError, IndexError, ValueError, OSError, RuntimeError)


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


def _json(text, label: str, what: str):
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise InvalidModelFile(f"{label}: {what} is not valid JSON: {exc}") from exc


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
