"""Decoding images from disk the same way everywhere: EXIF orientation applied, converted to RGB; a JPEG that is
needed at a fraction of its size decoded straight to that fraction (DCT scaling)."""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension, in any letter case, is one of IMAGE_EXTENSIONS."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def load_rgb(path: Path | BinaryIO, side: int | None = None) -> np.ndarray:
    """Decode an image into an (H, W, 3) uint8 array, upright as its EXIF orientation says.

    With ``side``, a JPEG is decoded by DCT scaling (libjpeg's scaled decoding, Pillow's ``draft``) at the
    smallest of 1/8, 1/4 and 1/2 of its size whose shorter side is still at least ``side``, or whole; other
    formats decode whole. Raises OSError (or a PIL error) for a missing, truncated or undecodable file.
    """
    with warnings.catch_warnings():
        # An image past Pillow's decompression-bomb limit is refused, not decoded into memory.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            _scale_decoding(image, side)
            return _rgb_pixels(ImageOps.exif_transpose(image))


def decoded_size(source: Path | BinaryIO, side: int | None) -> tuple[int, int]:
    """The (width, height) load_rgb decodes an image at for ``side`` (before its EXIF orientation), read from the
    header alone."""
    with Image.open(source) as image:
        _scale_decoding(image, side)
        return image.size


def _scale_decoding(image: Image.Image, side: int | None) -> None:
    """Set an opened JPEG to decode by DCT scaling for ``side`` (a no-op for other formats and for None)."""
    if side is not None:
        image.draft(None, scaled_request(image.size, side))


def scaled_request(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The (width, height) to ask a scaled decode for, so that the shorter side it gives is at least ``side``."""
    width, height = size
    scale = min(1.0, side / min(width, height))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


#: Pillow modes of single-channel images with more than 8 bits (16-bit PNG and TIFF greyscale).
WIDE_GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def _rgb_pixels(image: Image.Image) -> np.ndarray:
    """Pixels as (H, W, 3) uint8 RGB: palette, grey, alpha and CMYK converted, 16-bit scaled down."""
    if image.mode in WIDE_GREY_MODES:  # Pillow's own conversion would clip everything above 255
        grey = np.clip(np.round(np.asarray(image, dtype=np.float64) / 257), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def content_sha1(content: bytes) -> str:
    """Hash of a file's bytes: equal for exact copies of an image wherever they lie."""
    return hashlib.sha1(content).hexdigest()
