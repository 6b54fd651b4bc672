"""Near-duplicates: resized, re-encoded and slightly cropped copies are found and kept in one split."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import split_settings
from PIL import Image, ImageFilter

from skinclf.data.splits import prepare_splits


def photo_like(seed: int, size: int = 96) -> Image.Image:
    """A picture with structure at several scales: a tinted gradient, soft coloured blobs, fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : 1 : size * 1j, 0 : 1 : size * 1j]
    image = (
        rng.uniform(60, 200, 3)
        + rng.uniform(-60, 60, 3) * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
    )
    for _ in range(rng.integers(4, 9)):
        cx, cy, sx, sy = rng.uniform(0, 1, 2).tolist() + rng.uniform(0.05, 0.25, 2).tolist()
        weight = np.exp(-((xx - cx) ** 2 / sx**2 + (yy - cy) ** 2 / sy**2))
        image = image * (1 - weight[..., None]) + rng.uniform(0, 255, 3) * weight[..., None]
    image += rng.normal(0, 12, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))


def resized_and_reencoded(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.resize((77, 77)).save(buffer, "JPEG", quality=60)
    return Image.open(buffer).convert("RGB")


def slightly_cropped(image: Image.Image) -> Image.Image:
    width, height = image.size
    return image.crop((2, 1, width - 1, height - 2))


@pytest.fixture
def folder_with_copies(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    seed = 0
    for split, counts in (("train", {"benign": 30, "malignant": 12}), ("test", {"benign": 6, "malignant": 4})):
        for name, count in counts.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                seed += 1
                photo_like(seed).save(root / split / name / f"img_{i:03d}.png")
    original = Image.open(root / "train" / "benign" / "img_000.png")
    resized_and_reencoded(original).save(root / "test" / "benign" / "leaked_copy.png")  # a copy in test
    cropped_source = Image.open(root / "train" / "malignant" / "img_005.png")
    slightly_cropped(cropped_source).save(root / "train" / "malignant" / "cropped_copy.png")  # a copy in train
    return root


def group_of(tables: dict, path: str) -> str:
    return next(t.loc[t["path"] == path, "group"].item() for t in tables.values() if path in set(t["path"]))


def test_copies_are_kept_with_their_original_and_reported_across_given_splits(
    folder_with_copies: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        tables = prepare_splits(
            folder_with_copies, folder_with_copies / "s1", split_settings(near_duplicates="group", val_fraction=0.3)
        )
    original, copy = "train/malignant/img_005.png", "train/malignant/cropped_copy.png"
    assert group_of(tables, original) == group_of(tables, copy)  # one group: never train and val apart
    assert "1 pair(s) of near-identical images" in caplog.text  # the copy in test/ cannot be moved...
    assert "train/benign/img_000.png ~ test/benign/leaked_copy.png" in caplog.text  # ...so it is named
    groups = [group for table in tables.values() for group in table["group"]]
    assert len(set(groups)) == len(groups) - 2  # no other image was taken for a copy

    reported = prepare_splits(
        folder_with_copies, folder_with_copies / "s2", split_settings(near_duplicates="report", val_fraction=0.3)
    )
    assert group_of(reported, original) != group_of(reported, copy)  # report only: not grouped
