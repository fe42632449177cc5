"""edgernn: recurrent networks trained in Keras or PyTorch, run stateful on small CPUs and MCUs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .errors import EdgernnError, InvalidInput, InvalidModelFile, NotStreamable, UnsupportedModel, VerificationFailed

if TYPE_CHECKING:
    from .fleet import replay
    from .runtime import Model, Stream

# Model and Stream are resolved on first use (PEP 562, ``__getattr__`` below), and load and convert
# import what they need when called: importing a submodule (edgernn.store, edgernn.ir, ...) runs this
# file, and must not import the runtime. No module of the package imports a name from this file but
# cli (convert, load) and what _version and errors hold, so the imports below make no cycle
# (tests/test_imports.py).
_RUNTIME_NAMES = ("Model", "Stream")


def __getattr__(name):
    if name in _RUNTIME_NAMES:
        from . import runtime  # lazy: see _RUNTIME_NAMES

        globals().update({n: getattr(runtime, n) for n in _RUNTIME_NAMES})
        return globals()[name]
    if name == "replay":  # lazy too: Dask and pyarrow (the fleet extra) only for a replay
        from .fleet import replay

        globals()["replay"] = replay
        return replay
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def load(path) -> Model:
    """Load a ``.ernn`` file written by :meth:`Model.save` (validated; nothing in it is executed).

    A source model file (``.keras``, ``.pt``, ``.onnx``, ...) that is not an .ernn is refused with
    an :class:`InvalidModelFile` that says to convert it first.
    """
    from .runtime import Model  # lazy: see _RUNTIME_NAMES
    from .store import load_spec  # lazy: `import edgernn.ir` and the like need not load the file format

    try:
        spec = load_spec(path)
    except InvalidModelFile:
        import os

        from .importers import source_format  # lazy: as in convert (a table and errors only)

        kind = source_format(path) if isinstance(path, (str, os.PathLike)) else None
        if kind is None or not os.path.isfile(path):
            raise
        raise InvalidModelFile(f"{path}: a {kind} model, not an .ernn: convert it first (edgernn.convert, "
                               f"or `edgernn convert {path}`)") from None
    return Model(spec)


def convert(source, verify=True, **options) -> Model:
    """Convert a trained model (a .keras/.h5/.pt/.onnx/.tflite path, or an in-memory model) into a :class:`Model`.

    With ``verify`` (the default), when the source framework is installed, the source and the
    converted model are run on a seeded random batch and on a chunked stream
    (:func:`edgernn.verify.verify`) and the record is kept in ``model.spec.source["verification"]``
    (saved in the .ernn, shown by ``edgernn info``). A conversion that does not reproduce its
    source raises :class:`VerificationFailed` (its ``result`` holds the record); ``verify="warn"``
    returns the model with a warning instead, ``verify=False`` skips the check. Without the
    framework the check is skipped and the record says why. An ``.ernn`` file is already converted:
    it is refused (:class:`InvalidInput`) with a pointer to :func:`load`.
    """
    from .importers import import_model  # lazy: the importers load their frameworks
    from .runtime import Model  # lazy: see _RUNTIME_NAMES

    spec = import_model(source, **options)
    if not verify:
        return Model(spec)
    import warnings

    from .verify import check_verify_option, summary_line  # lazy: only a verified conversion needs it
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


__all__ = ["convert", "load", "replay", "Model", "Stream", "EdgernnError", "InvalidInput", "InvalidModelFile", "NotStreamable", "UnsupportedModel",
           "VerificationFailed"]
