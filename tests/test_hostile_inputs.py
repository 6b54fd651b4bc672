"""Hostile inputs, each generated here: handled correctly, or refused with a message naming the file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_image_folder, preprocessing_of, split_settings
from PIL import Image

from skinclf.core.errors import SkinclfError
from skinclf.data.dataset import eval_dataset
from skinclf.data.images import load_rgb
from skinclf.data.inputs import read_inputs
from skinclf.data.splits import load_splits, prepare_splits


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_image_folder(
        tmp_path / "data", {"train": {"benign": 20, "malignant": 10}, "test": {"benign": 4, "malignant": 4}}
    )


def split(root: Path, **options: bool) -> dict[str, pd.DataFrame]:
    return prepare_splits(root, root / "splits", split_settings(val_fraction=0.2), **options)


def listed(tables: dict[str, pd.DataFrame]) -> set[str]:
    return {p for t in tables.values() for p in t.path}


def write_jpeg(path: Path, mode: str = "RGB", size: tuple[int, int] = (24, 16), **save: object) -> Path:
    colour = {"RGB": (200, 120, 80), "CMYK": (0, 120, 200, 30), "L": 90}[mode]
    Image.new(mode, size, colour).save(path, format="JPEG", **save)
    return path


# -- refused, naming the file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("truncated.jpg", "truncated"),
        ("empty.jpg", b""),
        ("notes.jpg", b"this is a text file, not a JPEG"),
    ],
)
def test_unreadable_files_are_refused_then_skippable(dataset: Path, name: str, content: bytes | str) -> None:
    target = dataset / "train" / "benign" / name
    if content == "truncated":
        whole = write_jpeg(dataset / "whole.jpg", size=(200, 150), quality=95).read_bytes()
        target.write_bytes(whole[: len(whole) // 2])
    else:
        target.write_bytes(content)
    with pytest.raises(SkinclfError, match=f"1 image\\(s\\) under .* cannot be read:\n  {target}"):
        split(dataset)
    assert f"train/benign/{name}" not in listed(split(dataset, skip_corrupt=True))


def test_an_image_over_the_decompression_bomb_limit_is_refused(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = write_jpeg(dataset / "train" / "benign" / "bomb.jpg", size=(120, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 12,000 pixels: over the limit, under twice it
    with pytest.raises(SkinclfError, match=f"{bomb}: DecompressionBombWarning"):
        split(dataset)


def test_a_class_with_no_images_and_a_one_image_dataset_are_refused(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "a", {"train": {"benign": 5}})
    (root / "train" / "malignant").mkdir()
    (root / "train" / "malignant" / "readme.txt").write_text("no images here")
    with pytest.raises(SkinclfError, match=f"class folder {root / 'train' / 'malignant'} holds no images"):
        split(root)
    tiny = make_image_folder(tmp_path / "b", {"train": {"benign": 1, "malignant": 1}})
    with pytest.raises(SkinclfError, match=r"split would hold no (benign|malignant) images"):
        split(tiny)


def test_split_csvs_with_missing_columns_or_other_labels_are_refused_extra_columns_kept(dataset: Path) -> None:
    split(dataset)
    val_csv = dataset / "splits" / "val.csv"
    original = pd.read_csv(val_csv)

    original.assign(note="checked by hand").to_csv(val_csv, index=False)
    assert "note" in load_splits(dataset / "splits")[0]["val"].columns  # extra columns are fine

    original.drop(columns=["label"]).to_csv(val_csv, index=False)
    with pytest.raises(SkinclfError, match=r"val.csv lacks the column\(s\) \['label'\]"):
        split(dataset)
    original.assign(label=original.label.replace({1: "malignant"})).to_csv(val_csv, index=False)
    with pytest.raises(SkinclfError, match=r"val.csv has labels malignant"):
        split(dataset)


def test_input_csvs_with_missing_columns_or_other_labels_are_refused(tmp_path: Path) -> None:
    pd.DataFrame({"image": ["a.jpg"]}).to_csv(tmp_path / "no_path.csv", index=False)
    with pytest.raises(SkinclfError, match=r"no_path.csv has no 'path' column"):
        read_inputs(tmp_path / "no_path.csv")
    pd.DataFrame({"path": ["a.jpg"], "label": [2]}).to_csv(tmp_path / "bad_label.csv", index=False)
    with pytest.raises(SkinclfError, match=r"bad_label.csv has labels 2"):
        read_inputs(tmp_path / "bad_label.csv")


# -- handled -------------------------------------------------------------------------------------


def test_other_image_modes_are_converted_to_rgb(dataset: Path) -> None:
    benign = dataset / "train" / "benign"
    Image.new("L", (10, 8), 77).save(benign / "grey.png")
    Image.new("RGBA", (10, 8), (10, 20, 30, 0)).save(benign / "alpha.png")
    Image.fromarray(np.full((8, 10), 65535, dtype=np.uint16)).save(benign / "sixteen_bit.png")
    Image.fromarray(np.full((8, 10), 32896, dtype=np.uint16)).save(benign / "sixteen_bit_mid.png")
    write_jpeg(benign / "cmyk.jpg", mode="CMYK")
    palette = Image.new("P", (10, 8), 3)
    palette.putpalette([0, 0, 0, 1, 1, 1, 2, 2, 2, 200, 100, 50])
    palette.save(benign / "palette.png")

    tables = split(dataset)
    expected = {
        "grey.png": (77, 77, 77),
        "alpha.png": (10, 20, 30),
        "sixteen_bit.png": (255, 255, 255),
        "sixteen_bit_mid.png": (128, 128, 128),
        "palette.png": (200, 100, 50),
    }
    for name, colour in expected.items():
        assert f"train/benign/{name}" in listed(tables)
        pixels = load_rgb(benign / name)
        assert pixels.shape == (8, 10, 3) and pixels.dtype == np.uint8
        assert tuple(pixels[0, 0]) == colour, name
    cmyk = load_rgb(benign / "cmyk.jpg")
    # C=0 M=120 Y=200 K=30 is (225, 105, 25) in RGB, give or take the JPEG compression
    assert cmyk.shape == (16, 24, 3) and np.abs(cmyk[8, 12].astype(int) - (225, 105, 25)).max() < 30


def test_exif_rotated_jpegs_are_turned_upright(dataset: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 degrees counter-clockwise to display"
    rotated = write_jpeg(dataset / "train" / "benign" / "rotated.jpg", size=(30, 12), exif=exif)
    assert load_rgb(rotated).shape == (30, 12, 3)


def test_names_with_spaces_and_non_ascii_letters(dataset: Path) -> None:
    name = "lésion n° 3 – Ærø.jpg"
    write_jpeg(dataset / "train" / "malignant" / name)
    tables = split(dataset)
    reread, _ = load_splits(dataset / "splits")  # through the CSV files
    table = next(t for t in reread.values() if f"train/malignant/{name}" in set(t.path))
    item = eval_dataset(preprocessing_of(16), dataset, table[table.path == f"train/malignant/{name}"])[0]
    assert item["image"].shape == (3, 16, 16) and item["label"] == 1
    assert f"train/malignant/{name}" in listed(tables)


def test_symbolic_links_to_files_and_folders_are_followed_once(dataset: Path, tmp_path: Path) -> None:
    elsewhere = make_image_folder(tmp_path / "elsewhere", {"more": {"x": 3}}) / "more" / "x"
    benign = dataset / "train" / "benign"
    os.symlink(elsewhere / "img_0000.png", benign / "linked_file.png")
    os.symlink(elsewhere, benign / "linked_folder")
    os.symlink(benign, benign / "linked_folder" / "loop")  # a cycle must not be walked forever
    os.symlink(tmp_path / "gone.png", benign / "broken.png")

    tables = split(dataset)

    paths = listed(tables)
    assert "train/benign/linked_file.png" in paths
    assert {f"train/benign/linked_folder/img_000{i}.png" for i in range(3)} <= paths
    assert not any("loop" in p for p in paths) and "train/benign/broken.png" not in paths
    # the linked file and its folder's copy are one image: same bytes, so they share a split
    copies = [
        n
        for n, t in tables.items()
        if {"train/benign/linked_file.png", "train/benign/linked_folder/img_0000.png"} & set(t.path)
    ]
    assert len(copies) == 1


def test_the_same_image_in_train_and_test_is_reported_by_content(
    dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (dataset / "test" / "malignant" / "copy.png").write_bytes(
        (dataset / "train" / "malignant" / "img_0002.png").read_bytes()
    )
    with caplog.at_level(logging.WARNING):
        split(dataset)
    assert "identical image(s) lie in more than one split" in caplog.text
    assert "test/malignant/copy.png" in caplog.text and "train/malignant/img_0002.png" in caplog.text
