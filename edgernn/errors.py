"""One error family for everything edgernn refuses.

Every refusal is an :class:`EdgernnError`; callers that want to handle any of them
catch that one class. The CLI turns it into a one-line message and exit status 1.
Where several things are wrong at once (a model with three unsupported layers),
the error carries the whole list in ``problems`` so the user fixes them in one go.
"""

from __future__ import annotations


class EdgernnError(Exception):
    """Base class of every error edgernn raises on purpose."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            message = message + ": " + "; ".join(self.problems)
        super().__init__(message)


class UnsupportedModel(EdgernnError):
    """The source model uses a layer, option or structure edgernn cannot run exactly."""


class InvalidModelFile(EdgernnError):
    """A model file (source or .ernn) is malformed, truncated or inconsistent."""


class InvalidInput(EdgernnError):
    """An input array, state or argument given at run time is not what the model takes."""


class UnknownOption(InvalidInput, TypeError):
    """An importer was given a keyword option it does not have.

    Also a TypeError, as an unknown keyword argument to a Python function is. The message names
    the unknown options and lists the ones the importer has (``known``), so ``edgernn convert
    --option KEY=VALUE`` can say which keys exist for that format.
    """

    def __init__(self, function: str, unknown, known=()):
        self.unknown, self.known = sorted(unknown), sorted(known)
        takes = f"known: {', '.join(self.known)}" if self.known else "this format takes no options"
        super().__init__(f"{function}() got unexpected options: {', '.join(self.unknown)} ({takes})")


class NotStreamable(EdgernnError):
    """The model runs in ``predict`` but cannot be stepped one timestep at a time."""


class InvalidStateFile(EdgernnError):
    """A saved stream state is malformed, corrupted, or belongs to another model or batch size."""


class VerificationFailed(EdgernnError):
    """The converted model does not reproduce its source within the tolerance.

    ``result`` holds the verification record (errors, tolerance, what was compared), as
    :func:`edgernn.verify.verify` returns it.
    """

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result or {}
