"""Importers: one module per source format, each turning a trained model into a :class:`~edgernn.ir.ModelSpec`.

The registry maps a file suffix (or an in-memory object's framework) to an importer function.
Framework packages are imported lazily, inside the importer, only when that format is converted:
the Keras importer reads files with h5py and JSON and never imports TensorFlow or Keras.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..errors import InvalidInput, InvalidModelFile, UnsupportedModel

# suffix -> "module:function"; the function takes (path, **options) and returns a ModelSpec.
FILE_IMPORTERS = {
    ".keras": "keras:load_keras_file",
    ".h5": "keras:load_keras_file",
    ".hdf5": "keras:load_keras_file",
    ".pt": "pytorch:load_torch_file",          # state_dict (weights_only) or TorchScript
    ".pth": "pytorch:load_torch_file",
    ".safetensors": "pytorch:load_safetensors_file",  # read without torch
    ".onnx": "onnx:load_onnx_file",
    ".tflite": "tflite:load_tflite_file",
}
# top-level package of an in-memory model's class -> "module:function" taking (model, **options).
OBJECT_IMPORTERS = {
    "keras": "keras:from_keras_model",
    "tf_keras": "keras:from_keras_model",
    "tensorflow": "keras:from_keras_model",
    "torch": "pytorch:from_torch_module",
}
# importer module -> what its files are called in messages (an .ernn given to `info` names it).
FORMAT_NAMES = {"keras": "Keras", "pytorch": "PyTorch", "onnx": "ONNX", "tflite": "TFLite"}
# Each importer module also defines ``run_source(source, inputs, **options) -> list[np.ndarray]``:
# the source model run by its own framework on ``inputs`` (one array per model input, the shapes
# edgernn's predict takes), returning what edgernn's predict should return, as a list. It raises
# ImportError when the framework is not installed. Conversion verification (edgernn/verify.py)
# uses it to hold every converted model against its source.


def _resolve(target: str):
    module, function = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def _framework(obj) -> str:
    """The top-level package of ``obj``'s framework: of the first class in its MRO that a registered
    framework defines (a user's ``class Net(torch.nn.Module)`` lives in ``__main__``)."""
    for cls in type(obj).__mro__:
        package = (cls.__module__ or "").split(".")[0]
        if package in OBJECT_IMPORTERS:
            return package
    return type(obj).__module__.split(".")[0]


def source_format(path) -> str | None:
    """``"Keras"``, ``"PyTorch"``, ... for the file name of a model :func:`import_model` converts, else None."""
    target = FILE_IMPORTERS.get(Path(path).suffix.lower())
    return FORMAT_NAMES[target.split(":")[0]] if target else None


def _refuse_ernn(path: Path) -> None:
    if path.suffix.lower() == ".ernn":
        raise InvalidInput(f"{path}: already an edgernn model, nothing to convert: load it with edgernn.load, "
                           f"or describe it with `edgernn info {path}`")


def importer_module(source):
    """The importer module (e.g. ``edgernn.importers.keras``) that handles ``source``."""
    if isinstance(source, (str, os.PathLike)):
        _refuse_ernn(Path(source))
        target = FILE_IMPORTERS.get(Path(source).suffix.lower())
    else:
        target = OBJECT_IMPORTERS.get(_framework(source))
    if target is None:
        raise UnsupportedModel(f"no importer for {source!r}")
    return importlib.import_module(f"{__name__}.{target.split(':')[0]}")


def import_model(source, **options):
    """Import ``source`` (a path or an in-memory framework model) into a ModelSpec."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        _refuse_ernn(path)
        target = FILE_IMPORTERS.get(path.suffix.lower())
        if target is None:
            known = ", ".join(sorted(FILE_IMPORTERS))
            raise UnsupportedModel(f"{path}: unknown model format {path.suffix!r} (known: {known})")
        if not path.is_file():
            raise InvalidModelFile(f"{path}: no such file")
        return _resolve(target)(path, **options)  # each importer folds what it makes (importers._fold)
    target = OBJECT_IMPORTERS.get(_framework(source))
    if target is None:
        raise UnsupportedModel(f"cannot convert an object of type {type(source).__module__}.{type(source).__name__}")
    return _resolve(target)(source, **options)
