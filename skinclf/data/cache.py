"""A uint8 cache of the images of a split, decoded once and resized to the pre-crop size.

Images keep their aspect ratio (the shorter side becomes ``resize_size``), so they are stored one
after another in a flat memory-mapped file with an index of offsets and shapes. Resizing is the
first step of every pipeline and resizing an image already at that size changes nothing, so the
pipelines see exactly the pixels they would see decoding the files every epoch.

When the splits are made, every image is read once for its checks and hashes; that same decode
gives its cached pixels, written in the order read into a *staged* file (see :func:`staging`;
only where the disk has room for it beside the caches). Each split's cache is then copied from it
rather than decoded again, and the staged file is removed once the caches are built. Without one
(splits made earlier, other sizes), a split's images are decoded in worker processes (see
:mod:`skinclf.data.reading`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from PIL import Image

from skinclf.core.atomic import atomic_path, check_free_space, free_bytes
from skinclf.core.errors import SkinclfError, megabytes
from skinclf.core.locks import exclusive_lock, hold_shared, remove_if_unused
from skinclf.data.reading import CachedPixels, Wanted, read_images

log = logging.getLogger(__name__)

#: Part of every cache key: a change of the cache format or of the decoding invalidates old caches.
CACHE_FORMAT = 1
#: The name of staged files' caches in the cache folder.
STAGED = "staged"


def cache_key(table: pd.DataFrame, pixels: CachedPixels) -> str:
    """A digest of what the cache holds: the images (paths, and contents where sha1 is known), their size and
    how they were decoded."""
    identity = {
        "format": CACHE_FORMAT,
        "paths": table["path"].tolist(),
        "sha1": table["sha1"].tolist() if "sha1" in table.columns else None,
        **pixels.identity(),
    }
    return hashlib.sha1(json.dumps(identity).encode()).hexdigest()[:16]


class ImageCache:
    """Read access to a built cache; the memory map is opened lazily in each process.

    While an ImageCache is open in the process that built or found it, the cache file is marked
    in use, so that no other job removes it as out of date (see :func:`build_cache`).
    """

    def __init__(self, data_path: Path, offsets: np.ndarray, shapes: np.ndarray) -> None:
        self.data_path = data_path
        self.offsets = offsets
        self.shapes = shapes
        self._data: np.memmap | None = None
        self._in_use = open(data_path, "rb")  # noqa: SIM115 - held open, and locked, for the cache's life
        hold_shared(self._in_use)

    @classmethod
    def open(cls, data_path: Path, index_path: Path) -> ImageCache:
        index = np.load(index_path)
        return cls(data_path, index["offsets"], index["shapes"])

    def __len__(self) -> int:
        return len(self.offsets)

    def rows(self, selected: np.ndarray) -> ImageCache:
        """The images of the selected rows (a boolean mask or indices), in their order, from the same file."""
        return ImageCache(self.data_path, self.offsets[selected], self.shapes[selected])

    def __getstate__(self) -> dict:
        # each DataLoader worker maps the file itself; the process that opened the cache holds it
        return {**self.__dict__, "_data": None, "_in_use": None}

    def image(self, index: int) -> np.ndarray:
        """The (H, W, 3) uint8 image, a read-only view into the mapped file."""
        if self._data is None:
            self._data = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        height, width = self.shapes[index]
        start = self.offsets[index]
        return self._data[start : start + height * width * 3].reshape(height, width, 3)


class CacheWriter:
    """Images appended in order to a cache's open data file, their offsets and shapes kept for its index."""

    def __init__(self, out: BinaryIO, count: int) -> None:
        self.out = out
        self.offsets, self.shapes = np.zeros(count, dtype=np.int64), np.zeros((count, 2), dtype=np.int64)
        self.written = self.position = 0
        self.index_extra: dict[str, np.ndarray] = {}  # more arrays for the index

    def add(self, image: np.ndarray) -> None:
        self.out.write(image.tobytes())
        self.offsets[self.written], self.shapes[self.written] = self.position, image.shape[:2]
        self.position += image.size
        self.written += 1


@contextmanager
def writing_cache(data_path: Path, index_path: Path, count: int, needed_bytes: int) -> Iterator[CacheWriter]:
    """A writer of up to count images into data_path; the index is written last (an index marks a complete
    cache), and a failure leaves neither file."""
    with atomic_path(data_path, needed_bytes) as partial, open(partial, "wb") as out:
        writer = CacheWriter(out, count)
        yield writer
    with atomic_path(index_path) as partial:
        written = writer.written
        np.savez(partial, offsets=writer.offsets[:written], shapes=writer.shapes[:written], **writer.index_extra)


def _paths(cache_dir: Path, name: str, key: str) -> tuple[Path, Path]:
    return cache_dir / f"{name}-{key}.u8", cache_dir / f"{name}-{key}.index.npz"


def estimated_bytes(root: Path, paths: list[str], resize_size: int, sample: int = 200) -> int:
    """About the size of a cache: image sizes read from the headers of up to ``sample`` images, plus 5 %."""
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(paths), size=min(sample, len(paths)), replace=False)
    sizes = []
    for index in chosen:
        try:
            with Image.open(root / paths[index]) as image:  # reads the header only
                width, height = image.size
        except OSError:  # unreadable: building the cache will say so
            continue
        scale = resize_size / min(width, height)
        sizes.append(round(width * scale) * round(height * scale) * 3)
    return int(np.mean(sizes) * len(paths) * 1.05) if sizes else 0


@dataclass(frozen=True)
class Staging:
    """Where the splits' reading pass stages every image's cached pixels, and how they are made."""

    cache_dir: Path
    pixels: CachedPixels

    def identity(self) -> str:
        return json.dumps({"format": CACHE_FORMAT, **self.pixels.identity()})


#: A function that stages one image: its path, the SHA-1 of its bytes and its cached pixels.
Stage = Callable[[str, str, np.ndarray], None]


@contextmanager
def staging(where: Staging | None, root: Path, paths: list[str]) -> Iterator[Stage | None]:
    """Stage the cached pixels of the images read in the block (None: nothing to stage, or no room on the disk
    for the staged file and the caches copied from it); the staged file is kept only if the block succeeds."""
    if where is None:
        yield None
        return
    needed = estimated_bytes(root, paths, where.pixels.resize_size)
    try:
        where.cache_dir.mkdir(parents=True, exist_ok=True)
        short = free_bytes(where.cache_dir) < 2 * needed and "the disk has room for the caches alone"
    except OSError as error:  # a folder the user may not write to: the cache says so when it is built
        short = str(error)
    if short:
        log.info("not staging the cached pixels in %s: %s", where.cache_dir, short)
        yield None
        return
    with exclusive_lock(where.cache_dir / f".{STAGED}.lock", f"the staged images in {where.cache_dir}"):
        for partial in where.cache_dir.glob(f".{STAGED}-*.partial*"):  # left by a killed job
            partial.unlink(missing_ok=True)
        key = cache_key(pd.DataFrame({"path": paths}), where.pixels)
        staged_paths: list[str] = []
        staged_sha1: list[str] = []
        with writing_cache(*_paths(where.cache_dir, STAGED, key), len(paths), needed) as writer:

            def stage(path: str, sha1: str, image: np.ndarray) -> None:
                writer.add(image)
                staged_paths.append(path)
                staged_sha1.append(sha1)

            yield stage
            writer.index_extra = {
                "paths": np.array(staged_paths),
                "sha1": np.array(staged_sha1),
                "identity": np.array(where.identity()),
            }


def staged_rows(where: Staging, table: pd.DataFrame) -> tuple[ImageCache, np.ndarray] | None:
    """A staged file that holds every image of the table (the same path and bytes) made as where.pixels are, opened,
    and the table's rows in it; None where there is none."""
    if "sha1" not in table.columns:
        return None
    for index_path in sorted(where.cache_dir.glob(f"{STAGED}-*.index.npz")):
        try:
            index = np.load(index_path)
            if str(index["identity"]) != where.identity():
                continue
            position = {
                key: row for row, key in enumerate(zip(index["paths"].tolist(), index["sha1"].tolist(), strict=True))
            }
            rows = [position.get(key) for key in zip(table["path"], table["sha1"], strict=True)]
            if None in rows:
                continue
            data_path = index_path.with_name(index_path.name.removesuffix(".index.npz") + ".u8")
            return ImageCache(data_path, index["offsets"], index["shapes"]), np.array(rows, dtype=np.int64)
        except (OSError, KeyError, ValueError):  # removed by the job that staged it, or not a staged file
            continue
    return None


def remove_staged(cache_dir: Path) -> None:
    """Remove the staged files no job reads any more (the caches are built from them)."""
    for data_path in cache_dir.glob(f"{STAGED}-*.u8"):
        remove_if_unused(data_path, data_path.with_name(data_path.name.removesuffix(".u8") + ".index.npz"))


def _remove_out_of_date(cache_dir: Path, name: str) -> None:
    """Remove this split's caches of other images or sizes that no job uses, and leftovers of killed builds."""
    for data_path in cache_dir.glob(f"{name}-*.u8"):
        remove_if_unused(data_path, data_path.with_suffix(".index.npz"))
    for partial in cache_dir.glob(f".{name}-*.partial*"):
        partial.unlink(missing_ok=True)


def build_cache(
    root: Path,
    table: pd.DataFrame,
    pixels: CachedPixels,
    cache_dir: Path,
    name: str,
    workers: int | None = None,
) -> ImageCache:
    """The cache of a split's images made as ``pixels`` say: reused if built for the same images, size and
    decoding; else copied from a staged file that holds them, or decoded in ``workers`` processes (null: every
    usable CPU). Jobs started together build it once: the others wait for the first (see :mod:`skinclf.core.locks`).
    """
    key = cache_key(table, pixels)
    data_path, index_path = _paths(cache_dir, name, key)
    with exclusive_lock(cache_dir / f".{name}.lock", f"the {name} image cache in {cache_dir}"):
        if not (index_path.is_file() and data_path.is_file()):
            _remove_out_of_date(cache_dir, name)
            _write_cache(root, table, pixels, (name, data_path, index_path), workers)
        return ImageCache.open(data_path, index_path)


def _write_cache(
    root: Path, table: pd.DataFrame, pixels: CachedPixels, files: tuple[str, Path, Path], workers: int | None
) -> None:
    name, data_path, index_path = files
    paths = table["path"].tolist()
    staged = staged_rows(Staging(data_path.parent, pixels), table)
    if staged is not None:
        source, rows = staged
        needed = int(source.shapes[rows].prod(axis=1).sum() * 3)
        images: Iterable[np.ndarray] = (source.image(row) for row in rows)
    else:
        needed = estimated_bytes(root, paths, pixels.resize_size)
        images = decoded(root, paths, pixels, workers, f"caching {name} images at {pixels.resize_size} px")
    check_free_space(
        data_path.parent,
        needed,
        f"the image cache of the {name} split",
        "point data.cache_dir at a disk with room, or pass data.cache=false to decode the images every epoch",
    )
    with writing_cache(data_path, index_path, len(table), needed) as writer:
        for image in images:
            writer.add(image)
    how = "copied from the staged images" if staged is not None else "decoded"
    log.info("cached %d %s images (%s, %s) in %s", len(table), name, megabytes(writer.position), how, data_path)


def decoded(root: Path, paths: list[str], pixels: CachedPixels, workers: int | None, what: str) -> Iterator[np.ndarray]:
    """The cached pixels of each image, in order, decoded in worker processes; an unreadable one is named."""
    for path, read in zip(paths, read_images(root, paths, Wanted(pixels=pixels), workers, what), strict=True):
        if read["error"]:
            raise SkinclfError(
                f"cannot read {root / path} while caching ({read['error']}): it changed since the splits were "
                "checked; restore or remove it and make the splits again"
            )
        yield read["pixels"]
