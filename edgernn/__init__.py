"""edgernn: recurrent networks trained in Keras or PyTorch, run stateful on small CPUs and MCUs."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import EdgernnError, InvalidInput, InvalidModelFile, NotStreamable, UnsupportedModel, VerificationFailed
from .runtime import Model, Stream


def load(path) -> Model:
    """Load a ``.ernn`` file written by :meth:`Model.save` (validated; nothing in it is executed)."""
    from .store import load as _load

    return _load(path)


def convert(source, verify=True, **options) -> Model:
    """Convert a trained model (a .keras/.h5/.pt/.onnx/.tflite path, or an in-memory model) into a :class:`Model`.

    With ``verify`` (the default), when the source framework is installed, the source and the
    converted model are run on a seeded random batch and on a chunked stream
    (:func:`edgernn.verify.verify`) and the record is kept in ``model.spec.source["verification"]``
    (saved in the .ernn, shown by ``edgernn info``). A conversion that does not reproduce its
    source raises :class:`VerificationFailed` (its ``result`` holds the record); ``verify="warn"``
    returns the model with a warning instead, ``verify=False`` skips the check. Without the
    framework the check is skipped and the record says why.
    """
    from .importers import import_model

    spec = import_model(source, **options)
    if not verify:
        return Model(spec)
    import warnings

    from .verify import check_verify_option, summary_line
    from .verify import verify as run_verification

    mode = check_verify_option(verify)
    result = run_verification(source, Model(spec), **options)
    model = Model(spec.replace(source={**spec.source, "verification": result}))
    if result.get("passed") is False:
        if mode == "warn":
            warnings.warn(summary_line(result), RuntimeWarning, stacklevel=2)
        else:
            raise VerificationFailed(summary_line(result), result)
    elif result.get("error"):
        warnings.warn(summary_line(result), RuntimeWarning, stacklevel=2)
    return model


__all__ = ["convert", "load", "Model", "Stream", "EdgernnError", "InvalidInput", "InvalidModelFile", "NotStreamable", "UnsupportedModel",
           "VerificationFailed"]
