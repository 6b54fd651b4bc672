"""Full-size photographs: each read once, a JPEG decoded small (DCT scaling) and close to an area resize of its
whole decode, on several processes with the same splits and caches as one, an unreadable one named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import make_image_folder, preprocessing_of, split_settings, synthetic_overrides, train_settings
from PIL import Image

from skinclf.core.errors import SkinclfError
from skinclf.data.cache import Staging, build_cache
from skinclf.data.images import load_rgb
from skinclf.data.near_duplicates import near_duplicate_pairs
from skinclf.data.preprocessing import resize_step
from skinclf.data.reading import CachedPixels
from skinclf.data.records import check_and_hash
from skinclf.data.splits import prepare_splits
from skinclf.data.synthetic import CLASS_LOOKS, render_lesion
from skinclf.training.builders import build_datamodule


def photograph(path: Path, size: tuple[int, int] = (2400, 1800), seed: int = 0) -> Path:
    """A lesion drawn at 256 px, enlarged to size with a sensor's noise, saved as a JPEG of quality 92."""
    rng = np.random.default_rng(seed)
    drawn = Image.fromarray(render_lesion(rng, CLASS_LOOKS[1], 256)).resize(size, Image.Resampling.BICUBIC)
    noisy = np.asarray(drawn, dtype=np.int16) + rng.integers(-6, 7, size=(size[1], size[0], 3), dtype=np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


def test_a_large_jpeg_is_cached_close_to_an_area_resize_of_its_whole_decode(tmp_path: Path) -> None:
    photo = photograph(tmp_path / "images" / "photo.jpg")
    table = pd.DataFrame({"path": ["photo.jpg"], "label": [1]})
    pixels = CachedPixels(
        preprocessing_of(128, jpeg_dct_scaling=True)
    )  # model.preprocessing.jpeg_dct_scaling: decoded at 1/8, 300 x 225
    cached = build_cache(tmp_path / "images", table, pixels, tmp_path / "cache", "train").image(0)
    whole = load_rgb(photo)
    reference = cv2.resize(whole, (cached.shape[1], cached.shape[0]), interpolation=cv2.INTER_AREA)
    difference = np.abs(cached.astype(float) - reference)
    assert cached.shape == (128, 171, 3)
    # measured: mean 0.35, 99th percentile 1-2 grey levels (ISIC 2017 images enlarged to 4096 x 3072: 0.2 and 1)
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 4, (difference.mean(), difference.max())
    # decoded whole and resized bilinearly (model.preprocessing.jpeg_dct_scaling=false), the noise aliases: 1.4 from it
    bilinear = resize_step(preprocessing_of(128))(image=whole)["image"].astype(float)
    assert np.abs(bilinear - reference).mean() > 2 * difference.mean()


def test_the_near_duplicate_hashes_and_so_the_split_do_not_depend_on_the_cache(tmp_path: Path) -> None:
    photo = photograph(tmp_path / "images" / "photo.jpg")
    Image.open(photo).resize((600, 450)).save(tmp_path / "images" / "copy.jpg", quality=80)
    records = pd.DataFrame({"path": ["photo.jpg", "copy.jpg"], "label": [1, 1]})
    hashes = {}
    for side in (None, 128, 256, 1000):  # no cache; caches decoded at 1/8, at 1/4 as the hash is, whole
        staged = (
            Staging(tmp_path / f"cache_{side}", CachedPixels(preprocessing_of(side, jpeg_dct_scaling=True)))
            if side
            else None
        )
        _, hashes[side], _ = check_and_hash(records, tmp_path / "images", True, False, True, 0, staged)
    np.testing.assert_array_equal(hashes[128], hashes[None])
    np.testing.assert_array_equal(hashes[256], hashes[None])
    np.testing.assert_array_equal(hashes[1000], hashes[None])
    assert near_duplicate_pairs(hashes[None]) == [(0, 1)]  # the resized copy is found


def test_an_unreadable_large_jpeg_is_named_and_leaves_no_staged_file(tmp_path: Path) -> None:
    root = make_image_folder(
        tmp_path / "data", {"train": {"benign": 12, "malignant": 8}, "test": {"benign": 4, "malignant": 2}}
    )
    whole = photograph(tmp_path / "whole.jpg", (4000, 3000)).read_bytes()
    broken = root / "train" / "malignant" / "large.jpg"
    broken.write_bytes(whole[: len(whole) // 2])
    staged = Staging(tmp_path / "cache", CachedPixels(preprocessing_of(64, jpeg_dct_scaling=True)))
    settings = split_settings(val_fraction=0.2)

    with pytest.raises(SkinclfError, match=f"1 image\\(s\\) under .* cannot be read:\n  {broken}: OSError"):
        prepare_splits(root, tmp_path / "splits", settings, staged=staged)
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / ".staged.lock"]  # no staged pixels kept
    tables = prepare_splits(root, tmp_path / "splits", settings, skip_corrupt=True, staged=staged)
    assert "train/malignant/large.jpg" not in {path for table in tables.values() for path in table["path"]}


def test_several_processes_give_the_splits_and_caches_of_one(learnable_root: Path, tmp_path: Path) -> None:
    prepared = {}
    for workers in (0, 2):
        split_dir = tmp_path / f"workers_{workers}"
        overrides = [
            *synthetic_overrides(learnable_root),
            "model.preprocessing.resize_size=20",
            "model.preprocessing.crop_size=16",
        ]
        settings = train_settings([*overrides, f"data.split_dir={split_dir}", f"data.prepare_workers={workers}"])
        build_datamodule(settings).prepare_data()  # 64 px JPEGs decoded at 1/2, staged, the caches copied
        files = sorted(p for p in split_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        prepared[workers] = {p.relative_to(split_dir).as_posix(): p.read_bytes() for p in files}
    assert prepared[0].keys() == prepared[2].keys()
    assert {Path(name).suffix for name in prepared[0]} == {".csv", ".json", ".u8", ".npz"}
    assert not [name for name in prepared[0] if "staged" in name]  # removed once the caches were copied
    assert prepared[0] == prepared[2]
