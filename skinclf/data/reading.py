"""Every image of a set read once, on every core: what the split's checks and the image caches are made from.

Each file's bytes are read once and hashed (SHA-1); where asked, the same bytes are decoded once, small (a JPEG
by DCT scaling: :func:`skinclf.data.images.load_rgb`), which checks the file and gives both its perceptual hash
and its pixels for a cache (colour constancy, then the shorter side resized to resize_size). DataLoader worker
processes read the images in order with a bounded number in flight, so memory stays flat in the number of
images; a file that cannot be read gives its reason instead of an exception.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from skinclf.config.schema import Preprocessing
from skinclf.core.machine import usable_cpus
from skinclf.data.images import content_sha1, decoded_size, load_rgb
from skinclf.data.near_duplicates import perceptual_hash
from skinclf.data.preprocessing import Decoding, decoding, resize_step

#: Fewer images than this per worker process are read with fewer workers (none below it): starting a worker
#: costs more than it saves on a small set.
IMAGES_PER_WORKER = 64
#: The shorter side an image is decoded at (at least) to check it and hash its pixels. The perceptual hash is
#: always made from this decode, so that the split (its near-duplicate groups) does not depend on the cache's size
#: or decoding; at 256 px an image of up to 511 px is decoded whole, as the hash was calibrated on (ISIC 2017), and a
#: full-size photograph at 1/8, as its cache for the usual sizes is.
HASH_SIDE = 256


@dataclass(frozen=True)
class CachedPixels:
    """How a cache's pixels are made from an image file: decoded and resized as the model's preprocessing says (its
    decoder, and its pipelines' first step)."""

    preprocessing: Preprocessing

    @property
    def resize_size(self) -> int:
        return self.preprocessing.resize_size

    @cached_property
    def decoding(self) -> Decoding:
        return decoding(self.preprocessing)

    def identity(self) -> dict[str, Any]:
        """What of the preprocessing a cache's key holds: all that makes its pixels (not the crop or normalisation)."""
        made_after = ("crop_size", "mean", "std")
        return {key: value for key, value in dataclasses.asdict(self.preprocessing).items() if key not in made_after}

    @cached_property
    def _resize(self) -> A.BasicTransform | A.Compose:
        return resize_step(self.preprocessing)

    def of_decoded(self, pixels: np.ndarray) -> np.ndarray:
        """The cached pixels of an image decoded by load_rgb at decoding.side."""
        return np.ascontiguousarray(self._resize(image=self.decoding.constant(pixels))["image"])


@dataclass(frozen=True)
class Wanted:
    """What to make of each image besides the hash of its bytes: check that it decodes, its perceptual hash,
    its pixels for a cache."""

    decode: bool = False
    perceptual: bool = False
    pixels: CachedPixels | None = None

    @property
    def side(self) -> int | None:
        """The shorter side to decode at: the cache's (whole, without DCT scaling), or enough to hash."""
        return self.pixels.decoding.side if self.pixels is not None else HASH_SIDE

    def hashed(self, content: bytes, decoded: np.ndarray) -> np.ndarray:
        """The perceptual hash of an image, from its decode at HASH_SIDE: the one made for the cache where the
        two decode alike (a full-size JPEG: both at 1/8), or a second, small one."""
        side = self.side
        alike = side == HASH_SIDE or decoded_size(io.BytesIO(content), side) == decoded_size(
            io.BytesIO(content), HASH_SIDE
        )
        return perceptual_hash(decoded if alike else load_rgb(io.BytesIO(content), HASH_SIDE))


class _Reader(Dataset):
    """One image's bytes read, hashed and (as wanted) decoded, in a DataLoader worker."""

    def __init__(self, root: Path, paths: list[str], wanted: Wanted) -> None:
        self.root, self.paths, self.wanted = root, paths, wanted

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        wanted = self.wanted
        try:
            content = (self.root / self.paths[index]).read_bytes()
            read: dict[str, Any] = {"sha1": content_sha1(content), "error": ""}
            if wanted.decode or wanted.perceptual or wanted.pixels is not None:
                decoded = load_rgb(io.BytesIO(content), wanted.side)
                if wanted.perceptual:
                    read["perceptual"] = wanted.hashed(content, decoded)
                if wanted.pixels is not None:
                    read["pixels"] = wanted.pixels.of_decoded(decoded)
        except Exception as error:  # noqa: BLE001 - any failure to read or decode means "unreadable", with its reason
            return {"error": f"{type(error).__name__}: {error}"}
        return read


def _as_read(item: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's conversion: none (numpy arrays stay numpy)."""
    return item


def worker_count(setting: int | None, images: int) -> int:
    """Processes to read images with: data.prepare_workers (null: every usable CPU), fewer for a small set."""
    wanted = usable_cpus() if setting is None else setting
    return min(wanted, images // IMAGES_PER_WORKER)


def read_images(
    root: Path, paths: list[str], wanted: Wanted, workers: int | None, description: str
) -> Iterator[dict[str, Any]]:
    """For each path in order: ``sha1``, ``error`` ("" if readable) and as wanted ``perceptual`` and ``pixels``,
    with a progress bar (for 500 images or more)."""
    loader = DataLoader(
        _Reader(root, paths, wanted),
        batch_size=None,
        num_workers=worker_count(workers, len(paths)),
        collate_fn=_as_read,
    )
    yield from tqdm(loader, desc=description, unit="img", total=len(paths), disable=len(paths) < 500)
