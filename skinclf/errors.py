"""User-facing errors: a short message that names the culprit and says what to do, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Exit status of a command stopped by bad input (as argparse does for bad arguments).
USER_ERROR_EXIT_CODE = 2


class SkinclfError(Exception):
    """A problem with the user's data, files or configuration that the user can fix."""


def examples(items: Sequence[object], limit: int = 5) -> str:
    """Format the first few items of a list for an error message, with a count of the rest."""
    shown = ", ".join(str(item) for item in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def user_message(error: SkinclfError) -> str:
    """The error's message; for one re-raised by a DataLoader worker, without the worker's traceback."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    return text.rsplit(f"{SkinclfError.__module__}.{SkinclfError.__name__}: ", 1)[-1].strip()


def exit_on_user_error(command: Callable[..., T]) -> Callable[..., T]:
    """Turn a :class:`SkinclfError` raised by a command into one error line and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return command(*args, **kwargs)
        except SkinclfError as error:
            print(f"error: {user_message(error)}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT_CODE)

    return wrapper
