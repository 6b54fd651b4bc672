"""A uint8 cache of the images of a split, decoded once and resized to the pre-crop size.

Images keep their aspect ratio (the shorter side becomes ``resize_size``), so they are stored one
after another in a flat memory-mapped file with an index of offsets and shapes. Resizing is the
first step of every pipeline and resizing an image already at that size changes nothing, so the
pipelines see exactly the pixels they would see decoding the files every epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from skinclf.atomic import atomic_path, check_free_space
from skinclf.data.color import decode
from skinclf.data.transforms import resize_step
from skinclf.errors import SkinclfError, megabytes
from skinclf.locks import exclusive_lock, hold_shared, remove_if_unused

log = logging.getLogger(__name__)

#: Part of every cache key: a change of the cache format or of the decoding invalidates old caches.
CACHE_FORMAT = 1


def cache_key(table: pd.DataFrame, resize_size: int, color_constancy: str = "none") -> str:
    """A digest of what the cache holds: the images (paths, and contents where sha1 is known), their size and
    colour constancy."""
    identity = {
        "format": CACHE_FORMAT,
        "resize_size": resize_size,
        "paths": table["path"].tolist(),
        "sha1": table["sha1"].tolist() if "sha1" in table.columns else None,
        **({"color_constancy": color_constancy} if color_constancy != "none" else {}),
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


class _ResizedImages(Dataset):
    """Decoded and resized images, in order: what the cache is built from, in DataLoader workers."""

    def __init__(self, root: Path, paths: list[str], resize_size: int, color_constancy: str) -> None:
        self.root, self.paths, self.resize_size = root, paths, resize_size
        self.resize, self.color_constancy = resize_step(resize_size), color_constancy

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.root / self.paths[index]
        try:
            return np.ascontiguousarray(self.resize(image=decode(path, self.color_constancy))["image"])
        except Exception as error:
            raise SkinclfError(f"cannot read {path} while caching ({type(error).__name__}: {error})") from error


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


def _remove_out_of_date(cache_dir: Path, name: str) -> None:
    """Remove this split's caches of other images or sizes that no job uses, and leftovers of killed builds."""
    for data_path in cache_dir.glob(f"{name}-*.u8"):
        remove_if_unused(data_path, data_path.with_suffix(".index.npz"))
    for partial in cache_dir.glob(f".{name}-*.partial*"):
        partial.unlink(missing_ok=True)


def build_cache(
    root: Path,
    table: pd.DataFrame,
    resize_size: int,
    cache_dir: Path,
    name: str,
    num_workers: int = 0,
    color_constancy: str = "none",
) -> ImageCache:
    """The cache of a split's images at resize_size: reused if built for the same images and size.

    Images are decoded in ``num_workers`` DataLoader workers, in order, and appended to the file.
    Jobs started together build it once: the others wait for the first (see :mod:`skinclf.locks`).
    """
    key = cache_key(table, resize_size, color_constancy)
    data_path, index_path = _paths(cache_dir, name, key)
    with exclusive_lock(cache_dir / f".{name}.lock", f"the {name} image cache in {cache_dir}"):
        if not (index_path.is_file() and data_path.is_file()):
            _remove_out_of_date(cache_dir, name)
            images = _ResizedImages(root, table["path"].tolist(), resize_size, color_constancy)
            _write_cache(images, table, name, (data_path, index_path), num_workers)
        return ImageCache.open(data_path, index_path)


def _write_cache(
    resized: _ResizedImages, table: pd.DataFrame, name: str, files: tuple[Path, Path], num_workers: int
) -> None:
    data_path, index_path = files
    resize_size = resized.resize_size
    needed = estimated_bytes(resized.root, resized.paths, resize_size)
    check_free_space(
        data_path.parent,
        needed,
        f"the image cache of the {name} split",
        "point data.cache_dir at a disk with room, or pass data.cache=false to decode the images every epoch",
    )
    images = DataLoader(resized, batch_size=None, num_workers=num_workers)
    offsets, shapes = np.zeros(len(table), dtype=np.int64), np.zeros((len(table), 2), dtype=np.int64)
    position = 0
    with atomic_path(data_path, needed) as partial, open(partial, "wb") as out:
        for i, tensor in enumerate(tqdm(images, desc=f"caching {name} images at {resize_size} px", unit="img")):
            image = tensor.numpy()
            out.write(image.tobytes())
            offsets[i], shapes[i] = position, image.shape[:2]
            position += image.size
    with atomic_path(index_path) as partial:  # last: an index marks a complete cache
        np.savez(partial, offsets=offsets, shapes=shapes)
    log.info("cached %d %s images (%s) in %s", len(table), name, megabytes(position), data_path)
