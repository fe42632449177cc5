"""edgernn: recurrent networks trained in Keras or PyTorch, run stateful on small CPUs and MCUs."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import EdgernnError, InvalidInput, InvalidModelFile, NotStreamable, UnsupportedModel
from .runtime import Model, Stream


def load(path) -> Model:
    """Load a ``.ernn`` file written by :meth:`Model.save` (validated; nothing in it is executed)."""
    from .store import load as _load

    return _load(path)


def convert(source, **options) -> Model:
    """Convert a trained model (a .keras/.h5 path, or an in-memory keras.Model) into a :class:`Model`."""
    from .importers import import_model

    return Model(import_model(source, **options))


__all__ = ["convert", "load", "Model", "Stream", "EdgernnError", "InvalidInput", "InvalidModelFile", "NotStreamable", "UnsupportedModel"]
