"""Decoding: every image comes out as upright (H, W, 3) uint8 RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from skinclf.data.images import load_rgb


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    Image.new("L", (6, 4), 128).save(tmp_path / "gray.png")
    Image.new("RGBA", (6, 4), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    for name in ("gray.png", "rgba.png"):
        pixels = load_rgb(tmp_path / name)
        assert pixels.shape == (4, 6, 3) and pixels.dtype == np.uint8
    assert (load_rgb(tmp_path / "gray.png") == 128).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (6, 4), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))  # top-left marker of the stored, sideways image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=100)

    pixels = load_rgb(tmp_path / "rotated.jpg")

    assert pixels.shape == (6, 4, 3)  # displayed upright: portrait
    assert pixels[0, -1].mean() > 200  # the marker moves to the top-right corner
