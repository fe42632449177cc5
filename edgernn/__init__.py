"""edgernn: recurrent networks trained in Keras or PyTorch, run stateful on small CPUs and MCUs."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import EdgernnError, InvalidInput, InvalidModelFile, NotStreamable, UnsupportedModel
from .runtime import Model


def convert(source, **options) -> Model:
    """Convert a trained model (a .keras/.h5 path, or an in-memory keras.Model) into a :class:`Model`."""
    from .importers import import_model

    return Model(import_model(source, **options))


__all__ = ["convert", "Model", "EdgernnError", "InvalidInput", "InvalidModelFile", "NotStreamable", "UnsupportedModel"]
