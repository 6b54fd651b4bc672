"""The uint8 image cache: built once, reused, rebuilt for other sizes, the same pixels as decoding."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from conftest import compose_train_config, preprocessing_of, sizes
from hydra.utils import instantiate
from PIL import Image

from skinclf.data.cache import build_cache
from skinclf.data.dataset import LesionDataset
from skinclf.data.preprocessing import eval_transform, train_transform
from skinclf.data.reading import CachedPixels
from skinclf.models.module import PixelNormalize


def image_table(folder: Path, count: int = 6) -> pd.DataFrame:
    """Images of several aspect ratios, portrait and landscape, as a split table."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        height, width = 40 + 9 * i, 90 - 7 * i
        pixels = np.random.default_rng(i).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i}.jpg", quality=90)
        paths.append(f"img_{i}.jpg")
    return pd.DataFrame({"path": paths, "label": [0, 1] * (count // 2)})


def cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))  # not the lock file


def test_cache_is_built_once_reused_and_rebuilt_for_another_size(tmp_path: Path) -> None:
    table = image_table(tmp_path / "images")
    cache = build_cache(tmp_path / "images", table, CachedPixels(preprocessing_of(32)), tmp_path / "cache", "train")
    assert len(cache_files(tmp_path / "cache")) == 2 and len(cache) == 6
    assert min(cache.image(0).shape[:2]) == 32 and cache.image(0).dtype == np.uint8
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}

    again = build_cache(
        tmp_path / "images", table, CachedPixels(preprocessing_of(32)), tmp_path / "cache", "train", workers=2
    )
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == stamps  # not rebuilt
    assert np.array_equal(again.image(3), cache.image(3))

    # another size while the 32 px cache is open (another job training on it): both stay
    bigger = build_cache(tmp_path / "images", table, CachedPixels(preprocessing_of(48)), tmp_path / "cache", "train")
    assert min(bigger.image(0).shape[:2]) == 48
    assert len(cache_files(tmp_path / "cache")) == 4 and np.array_equal(again.image(3), cache.image(3))
    del cache, again, bigger  # no job uses them any more: the next build replaces them
    fewer = build_cache(
        tmp_path / "images", table.iloc[:4], CachedPixels(preprocessing_of(48)), tmp_path / "cache", "train"
    )
    assert len(fewer) == 4 and len(cache_files(tmp_path / "cache")) == 2


def test_cached_pixels_equal_decoded_pixels_through_both_pipelines(tmp_path: Path) -> None:
    table = image_table(tmp_path / "images")
    cache = build_cache(
        tmp_path / "images", table, CachedPixels(preprocessing_of(36)), tmp_path / "cache", "val", workers=2
    )
    cfg = compose_train_config(["aug=albu", *sizes(36, 32)])
    preprocessing = preprocessing_of(36, 32)
    decode = CachedPixels(preprocessing).decoding
    for pipeline in (eval_transform(preprocessing), train_transform(preprocessing, instantiate(cfg.aug.train))):
        direct = LesionDataset(tmp_path / "images", table, pipeline, decode)
        cached = LesionDataset(tmp_path / "images", table, pipeline, decode, cache=cache)
        for i in range(len(table)):
            key = (i, 1000 + i)  # (index, augmentation seed), as the training sampler gives them
            assert torch.equal(direct[key]["image"], cached[key]["image"]), i


def test_device_normalisation_equals_albumentations_normalize() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    on_cpu = A.Normalize(mean=mean, std=std)(image=pixels)["image"]  # (H, W, 3) float32
    on_device = PixelNormalize(mean, std)(torch.from_numpy(pixels).permute(2, 0, 1)[None])
    torch.testing.assert_close(on_device[0].permute(1, 2, 0), torch.from_numpy(on_cpu), rtol=1e-5, atol=1e-5)
