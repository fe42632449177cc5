"""What may cross the pipe from the reader's child process: the allow-list of what its pickled answer
may name, the restricted unpickler that enforces it, and ``_Failure``, an exception kept to be raised
again later (in the parent, or when the converter asks for a weight that could not be read)."""

from __future__ import annotations

import io
import pickle

# The module of the weight containers in the answer (named, not imported: it imports this one).
_WEIGHTS = f"{__package__}.weights"

# What the child's answer may name when it is unpickled: numpy arrays and dtypes, the weight
# containers and the kept failures of this package, edgernn's errors and Python's own exceptions.
# Anything else (os.system, a class from the file's world) is refused: even a child whose libhdf5
# was subverted by a crafted file cannot make the parent run code through the pipe.
_CHILD_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    (__name__, "_Failure"), (__name__, "_restore_failure"), (_WEIGHTS, "_ZipWeights"), (_WEIGHTS, "_LegacyWeights"),
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


class _Failure:
    """An exception kept for later: raised again where the lazy h5py read used to raise it.

    It is pickled as its class, ``args`` and attributes (:func:`_restore_failure` makes it again),
    not as the exception object: that would go through any reducer a library registered for
    exceptions, such as tblib's, which TensorFlow installs when it imports it (tblib comes with
    dask's ``distributed``), and whose function the allow-list does not name.
    """

    def __init__(self, exc: BaseException):
        self.exc = exc
        try:  # an exception that cannot make the trip to the parent becomes one that can
            _load_child_answer(pickle.dumps(self, protocol=_CHILD_PROTOCOL))
        except Exception:  # noqa: BLE001
            self.exc = RuntimeError(f"{type(exc).__name__}: {exc}")

    def __reduce__(self):
        exc = self.exc
        return _restore_failure, (type(exc), exc.args, dict(getattr(exc, "__dict__", {})))

    def reraise(self):
        raise self.exc


def _restore_failure(cls, args, attributes) -> _Failure:
    """The :class:`_Failure` of exception class ``cls`` (an exception class the allow-list admits)."""
    if not (isinstance(cls, type) and issubclass(cls, BaseException)) or not isinstance(args, tuple) \
            or not isinstance(attributes, dict):
        raise pickle.UnpicklingError("the HDF5 reader's answer holds a malformed error")
    try:
        exc = cls(*args)
    except Exception:  # noqa: BLE001 - a constructor with another signature (UnknownOption)
        exc = cls.__new__(cls)
        exc.args = args
    exc.__dict__.update(attributes)
    failure = _Failure.__new__(_Failure)
    failure.exc = exc
    return failure
