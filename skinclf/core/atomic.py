"""Writing files so that neither a kill nor a full disk leaves half of one: write beside the target, then rename.

Every file skinclf writes (split CSVs, the image cache, checkpoints, metrics.json, predictions,
plots, exports) goes through :func:`atomic_path`. The temporary name is unique to the writing
process, so jobs that write the same file at once never share one, and a disk that fills up
mid-write gives one :class:`OutOfSpaceError` that names the file and leaves the old one whole.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from skinclf.core.errors import (
    OutOfSpaceError,
    SkinclfError,
    free_bytes,
    megabytes,
    out_of_space_cause,
    out_of_space_message,
)


def check_free_space(folder: Path, needed_bytes: int, what: str, alternative: str) -> None:
    """Refuse before writing ``what`` when the disk of folder has less than needed_bytes free."""
    free = free_bytes(folder)
    if free < needed_bytes:
        raise OutOfSpaceError(
            f"{what} needs about {megabytes(needed_bytes)} in {folder}, but only {megabytes(free)} are free there: "
            f"free space, or {alternative}"
        )


@contextmanager
def reporting_full_disk(path: Path, needed_bytes: int | None = None) -> Iterator[None]:
    """Turn a full disk while the block writes path into an :class:`OutOfSpaceError` that names it."""
    try:
        yield
    except Exception as error:
        if out_of_space_cause(error) is None:
            raise
        raise OutOfSpaceError(out_of_space_message(path, needed_bytes)) from error


@contextmanager
def atomic_path(path: Path, needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it onto ``path``.

    The temporary name keeps the file's suffix (some writers go by it), is unique to the process,
    and is removed if the block fails, so the target is either the old file or the new one, never
    half of either. A full disk raises :class:`OutOfSpaceError` (naming ``needed_bytes`` if given).
    """
    partial = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{path.suffix}")
    try:
        with reporting_full_disk(path, needed_bytes):
            yield partial
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path, len(text.encode())) as partial:
        partial.write_text(text)


def write_json(path: Path, content: dict) -> None:
    """Write JSON atomically: never a half-written file."""
    write_text(path, json.dumps(content, indent=2))


def tensor_bytes(content: Any) -> int:
    """Bytes of the tensors in a nested structure of dicts, lists and tuples: about what torch.save writes."""
    if isinstance(content, torch.Tensor):
        return content.numel() * content.element_size()
    if isinstance(content, dict):
        return sum(tensor_bytes(value) for value in content.values())
    if isinstance(content, (list, tuple)):
        return sum(tensor_bytes(value) for value in content)
    return 0


def load_torch(path: Path, kind: str, remedy: str) -> Any:
    """torch.load with ``weights_only`` (no code runs from the file); a missing or unreadable file is named."""
    if not path.is_file():
        raise SkinclfError(f"{kind} {path} does not exist: {remedy}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SkinclfError(f"cannot load {path} as a {kind} ({type(error).__name__}: {error}): {remedy}") from error


def save_torch(content: Any, path: Path) -> None:
    """torch.save atomically and durably (flushed to disk before the rename)."""
    with atomic_path(path, tensor_bytes(content)) as partial, open(partial, "wb") as file:
        torch.save(content, file)  # through a Python file, so that a full disk raises OSError, not a C++ error
        file.flush()
        os.fsync(file.fileno())
