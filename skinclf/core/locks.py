"""Locks that let any number of jobs start at once on one data root, split folder and cache.

Work that every job would do alike (generating the synthetic dataset, making the split CSVs,
building the image cache) is done by the first job to take the exclusive lock; the others wait,
then find the result. The locks are ``flock`` locks (through the filelock package), released by
the operating system when their holder dies, so a killed job never leaves a stale lock behind.
A cache in use is held with a shared lock, so that no other job removes it as out of date.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout

from skinclf.core.errors import SkinclfError

try:  # POSIX only; elsewhere caches are never removed as out of date
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

#: How long a job waits for another that is building what it needs (hours of decoding at worst).
LOCK_TIMEOUT_S = 6 * 3600


@contextmanager
def exclusive_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on lock_path while the block makes ``what``; other jobs wait and say so.

    Where the lock cannot be taken (a read-only folder, a file system without locks), the block
    runs unlocked: every write is atomic, so jobs at worst do the same work twice.
    """
    lock = FileLock(lock_path, timeout=LOCK_TIMEOUT_S)
    locked = _acquire(lock, what)
    try:
        yield
    finally:
        if locked:
            lock.release()


def _acquire(lock: FileLock, what: str) -> bool:
    lock_path = Path(lock.lock_file)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another job that is making %s (lock %s)", what, lock_path)
            lock.acquire()
    except Timeout as error:
        raise SkinclfError(
            f"waited {LOCK_TIMEOUT_S / 3600:g} h for another job making {what}: if no such job runs, "
            f"delete {lock_path} and start again"
        ) from error
    except (OSError, NotImplementedError) as error:
        log.debug("cannot lock %s (%s): making %s unlocked", lock_path, error, what)
        return False
    return True


def hold_shared(file: BinaryIO) -> None:
    """Mark an open file as in use for as long as it stays open (a shared lock)."""
    if fcntl is not None:
        fcntl.flock(file.fileno(), fcntl.LOCK_SH)


def remove_if_unused(*paths: Path) -> bool:
    """Remove files together unless the first is held by :func:`hold_shared` in some process."""
    if fcntl is None or not paths[0].is_file():
        return False
    with open(paths[0], "rb") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        for path in paths:
            path.unlink(missing_ok=True)
    return True
