"""From a Keras model to a ModelSpec: the entry points that read a file (or save a live model to one)
and convert what it holds."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from ... import ir
from ...errors import InvalidModelFile, UnknownOption, UnsupportedModel
from .._fold import fold_into_linear_maps
from .container import _MALFORMED, _read_container
from .converter import _Converter
from .isolated import _read_isolated


def load_keras_file(path, **options) -> ir.ModelSpec:
    """Read a Keras model file (``.keras`` zip or legacy ``.h5``) into a ModelSpec, without TensorFlow.

    The container is recognised by content (a zip or an HDF5 file), not by suffix. Raises
    :class:`InvalidModelFile` for a malformed file and :class:`UnsupportedModel` (one error, all
    problems listed) for layers or options edgernn cannot run exactly as Keras does.
    """
    if options:
        raise UnknownOption("load_keras_file", options)
    path = Path(path)
    return _load(path, path.name, {"file": path.name})


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
        return fold_into_linear_maps(_Converter(label, config, weights, major).convert(source))
    except _MALFORMED as exc:
        raise InvalidModelFile(f"{label}: malformed model config or weights ({type(exc).__name__}: {exc})") from exc


def from_keras_model(model, **options) -> ir.ModelSpec:
    """Convert an in-memory Keras model (Keras 3 or tf-keras) by saving it and reading the file.

    Going through ``model.save`` means an in-memory model and its saved file convert identically,
    and nothing of the live object (in particular no Python code) is called besides ``save``.
    """
    if options:
        raise UnknownOption("from_keras_model", options)
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


def _keras_major(version, config) -> int:
    """3 or 2: which Keras saved the file (decides hard_sigmoid and config formats)."""
    if isinstance(version, str) and re.match(r"^\d+", version):
        return 3 if int(re.match(r"^\d+", version).group()) >= 3 else 2
    # No version recorded (very old Keras 2 files): Keras 2 configs use "batch_input_shape".
    return 2 if "batch_input_shape" in json.dumps(config) else 3
