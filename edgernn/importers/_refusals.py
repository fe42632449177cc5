"""The end of every importer's refusal: where the documentation says what converts.

Each importer gathers its problems into one :class:`~edgernn.errors.UnsupportedModel`; its entry
point (or its one conversion driver) is wrapped with :func:`points_to`, which ends that error's
message, once, with the page of the edgernn repository that lists what converts from the format
and what is refused. A user has an installed package, not the repository, so the pointer names the
page as it stands in the source tree (``docs/keras.md``), beside the README that links it.
"""

from __future__ import annotations

import functools

from ..errors import UnsupportedModel


def docs_pointer(page: str) -> str:
    """The sentence that ends a refusal: ``see docs/<page> in the edgernn repository ...``."""
    return f"see {page} in the edgernn repository for what converts"


def end_refusal(error: UnsupportedModel, page: str, note: str | None = None) -> UnsupportedModel:
    """``error`` itself, its message ended with ``note`` (a sentence, if any) and the docs pointer.

    Done once: an error that already points somewhere (an entry point calling another) is left as
    it is. ``problems`` is unchanged, the pointer is not a problem.
    """
    if getattr(error, "docs_page", None):
        return error
    message = str(error).rstrip(". ")
    if note:
        message = f"{message}. {note}"
    error.args = (f"{message} ({docs_pointer(page)})",)
    error.docs_page = page
    return error


def points_to(page: str):
    """Decorator: an UnsupportedModel the function raises ends with the pointer to ``page``."""

    def wrap(function):
        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except UnsupportedModel as error:
                raise end_refusal(error, page)

        return wrapped

    return wrap
