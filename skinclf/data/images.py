"""Decoding images from disk the same way everywhere: EXIF orientation applied, converted to RGB."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension, in any letter case, is one of IMAGE_EXTENSIONS."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def load_rgb(path: Path | BinaryIO) -> np.ndarray:
    """Decode an image into an (H, W, 3) uint8 array, upright as its EXIF orientation says.

    Raises OSError (or a PIL error) for a missing, truncated or undecodable file.
    """
    with warnings.catch_warnings():
        # An image past Pillow's decompression-bomb limit is refused, not decoded into memory.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            return _rgb_pixels(ImageOps.exif_transpose(image))


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
