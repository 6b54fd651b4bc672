"""User-facing errors: a short message that names the culprit and says what to do, no traceback.

Every command runs inside :func:`exit_on_user_error`, which turns the ways a run can end early
into one line and an exit status: bad input (2), a full disk (2), SIGTERM from a scheduler
(143) and Ctrl-C (130). Every file skinclf writes is written atomically, so a run stopped in any
of these ways leaves its folder consistent, and ``resume=true`` continues it.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn, TypeVar

T = TypeVar("T")

#: Exit status of a command stopped by bad input (as argparse does for bad arguments) or a full disk.
USER_ERROR_EXIT_CODE = 2
#: Exit statuses of a command stopped by a signal, as a shell reports them (128 + the signal).
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM
SIGINT_EXIT_CODE = 128 + signal.SIGINT

#: errno values of a write refused for want of space: the disk is full, or the user's quota is.
OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

#: What to do when a disk is full: where each kind of output can be sent instead.
MAKE_ROOM = (
    "free space there, or write elsewhere: data.split_dir and data.cache_dir move the splits and the image cache "
    "(data.cache=false goes without the cache), hydra.run.dir a run's checkpoints and outputs, output= a "
    "prediction or export file. Files written before are intact; resume=true continues a run from its last "
    "checkpoint."
)


class SkinclfError(Exception):
    """A problem with the user's data, files or configuration that the user can fix."""


class OutOfSpaceError(SkinclfError):
    """A write refused because the disk (or the quota) is full."""


class Terminated(BaseException):
    """Raised in a command's main thread when the process receives SIGTERM (a scheduler's pre-emption).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way mistakes it
    for an ordinary failure.
    """


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
    return text.rsplit(f"{type(error).__module__}.{type(error).__name__}: ", 1)[-1].strip()


def out_of_space_cause(error: BaseException | None) -> OSError | None:
    """The out-of-space OSError an exception comes from, if any (torch and others wrap it in their own)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in OUT_OF_SPACE_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds path (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def megabytes(size: float) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


def out_of_space_message(path: Path | None, needed_bytes: int | None = None) -> str:
    """One line: which file could not be written, the space it needed where known, and what to do."""
    if path is None:
        return f"no space left on the device: {MAKE_ROOM}"
    needed = f", {megabytes(needed_bytes)} needed" if needed_bytes else ""
    return f"no space left on the device while writing {path} ({megabytes(free_bytes(path))} free{needed}): {MAKE_ROOM}"


def _stop(message: str, status: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def _where_to_resume() -> str:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    return f" (hydra.run.dir={HydraConfig.get().runtime.output_dir})"


SignalHandler = Callable[[int, FrameType | None], None]


def in_this_process_only(handler: SignalHandler) -> SignalHandler:
    """``handler`` in the process that calls this; a process forked from it later (a DataLoader or server worker,
    which inherits the handler) ends quietly, as the signal ends a process by default."""
    main_pid = os.getpid()

    def forwarded(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        handler(signum, frame)

    return forwarded


def _raise_terminated(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated


def exit_on_user_error(command: Callable[..., T]) -> Callable[..., T]:
    """Run a command; end it with one line and an exit status instead of a traceback where the user can act.

    - :class:`SkinclfError` (bad input, a full disk found by skinclf): its message, status 2;
    - any other error caused by a full disk: the file it was writing, status 2;
    - SIGTERM: stops at once (every file is written atomically), says how to resume, status 143;
    - Ctrl-C outside training (Lightning handles it inside): status 130.
    """

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> T:
        logging.raiseExceptions = False  # a log file on a full disk must not print a traceback per line
        previous = signal.signal(signal.SIGTERM, in_this_process_only(_raise_terminated))
        try:
            return command(*args, **kwargs)
        except SkinclfError as error:
            _stop(user_message(error), USER_ERROR_EXIT_CODE)
        except Terminated:
            _stop(
                "stopped by SIGTERM. Every file written so far is whole: run the same command with resume=true"
                f"{_where_to_resume()} to continue from the last checkpoint",
                SIGTERM_EXIT_CODE,
            )
        except KeyboardInterrupt:
            _stop("interrupted (Ctrl-C)", SIGINT_EXIT_CODE)
        except Exception as error:
            full = out_of_space_cause(error)
            if full is None:
                raise
            _stop(out_of_space_message(Path(full.filename) if full.filename else None), USER_ERROR_EXIT_CODE)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper
