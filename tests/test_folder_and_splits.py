"""Scanning image folders and making, reusing and checking the split CSVs."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_image_folder, split_settings, write_image

from skinclf.core.errors import SkinclfError
from skinclf.data.folder import scan_image_folder
from skinclf.data.splits import prepare_splits, stratified_holdout


def read_splits(split_dir: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(split_dir / f"{name}.csv") for name in ("train", "val", "test")}


def test_scan_matches_class_folders_and_extensions_in_any_case(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i, name in enumerate(["a.JPG", "b.jpeg", "c.Png", "d.bmp", "e.TIF", "f.tiff"]):
        fmt = {"a": "JPEG", "b": "JPEG", "c": "PNG", "d": "BMP", "e": "TIFF", "f": "TIFF"}[name[0]]
        write_image(root / "train" / "BeNiGn" / name, i, suffix_format=fmt)
    write_image(root / "train" / "Malignant" / "nested" / "m.jpg", 10, suffix_format="JPEG")
    (root / "train" / "Malignant" / "notes.txt").write_text("not an image")
    write_image(root / "train" / "Malignant" / ".hidden.jpg", 11, suffix_format="JPEG")

    tables = scan_image_folder(root)

    assert list(tables) == ["train"]
    train = tables["train"]
    assert sorted(train.loc[train.label == 0, "path"]) == sorted(
        f"train/BeNiGn/{n}" for n in ["a.JPG", "b.jpeg", "c.Png", "d.bmp", "e.TIF", "f.tiff"]
    )
    assert train.loc[train.label == 1, "path"].tolist() == ["train/Malignant/nested/m.jpg"]


def test_splits_are_deterministic_and_stratified(image_folder: Path) -> None:
    settings = split_settings(val_fraction=0.25, split_seed=3)
    first = prepare_splits(image_folder, image_folder / "s1", settings)
    second = prepare_splits(image_folder, image_folder / "s2", settings)
    other_seed = prepare_splits(image_folder, image_folder / "s3", split_settings(val_fraction=0.25, split_seed=4))

    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(first[name], second[name])
    assert set(other_seed["val"].path) != set(first["val"].path)
    # 25 % of 60 benign and of 20 malignant, exactly; test/ is the test split as given
    assert first["val"].label.value_counts().to_dict() == {0: 15, 1: 5}
    assert first["train"].label.value_counts().to_dict() == {0: 45, 1: 15}
    assert len(first["test"]) == 15 and all(p.startswith("test/") for p in first["test"].path)
    assert not set(first["train"].path) & set(first["val"].path)
    # the files on disk are what was returned, with paths relative to the root
    on_disk = read_splits(image_folder / "s1")
    assert on_disk["val"].path.tolist() == first["val"].path.tolist()
    assert all((image_folder / p).is_file() for p in on_disk["train"].path)


def test_a_folder_without_test_gets_a_stratified_test_split(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", {"train": {"benign": 80, "malignant": 20}})
    settings = split_settings(val_fraction=0.1, val_min_malignant=0, test_fraction=0.2)
    tables = prepare_splits(root, root / "splits", settings)
    assert tables["test"].label.value_counts().to_dict() == {0: 16, 1: 4}
    assert tables["val"].label.value_counts().to_dict() == {0: 6, 1: 2}
    all_paths = pd.concat(tables.values()).path
    assert all_paths.is_unique and len(all_paths) == 100


def test_validation_grows_to_hold_enough_malignant_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_image_folder(
        tmp_path / "data", {"train": {"benign": 300, "malignant": 100}, "test": {"benign": 2, "malignant": 2}}
    )
    tables = prepare_splits(root, root / "s1", split_settings(val_fraction=0.05, val_min_malignant=20))
    assert tables["val"].label.value_counts().to_dict() == {0: 60, 1: 20}  # 20 %, stratified
    assert "fewer than data.val_min_malignant" not in caplog.text

    with caplog.at_level(logging.WARNING):
        tables = prepare_splits(root, root / "s2", split_settings(val_fraction=0.05, val_min_malignant=40))
    assert tables["val"].label.value_counts().to_dict() == {0: 75, 1: 25}  # at most 25 % of train/
    assert "validation holds 25 malignant images, fewer than data.val_min_malignant=40" in caplog.text


def test_an_official_validation_folder_is_the_validation_split(tmp_path: Path) -> None:
    root = make_image_folder(
        tmp_path / "data",
        {
            "train": {"benign": 30, "malignant": 10},
            "Val": {"benign": 6, "malignant": 3},
            "test": {"benign": 4, "malignant": 2},
        },
    )
    tables = prepare_splits(root, root / "splits", split_settings(val_fraction=0.05))
    assert len(tables["train"]) == 40 and all(p.startswith("Val/") for p in tables["val"].path)
    assert tables["val"].label.value_counts().to_dict() == {0: 6, 1: 3}
    # the fraction settings play no part, so other values reuse the same splits
    reused = prepare_splits(root, root / "splits", split_settings(val_fraction=0.2, val_min_malignant=7))
    pd.testing.assert_frame_equal(reused["val"], tables["val"])


def test_groups_stay_whole_within_one_split(tmp_path: Path) -> None:
    root = make_image_folder(
        tmp_path / "data", {"train": {"benign": 90, "malignant": 30}, "test": {"benign": 3, "malignant": 3}}
    )
    paths = sorted((root / "train").rglob("*.png"))
    groups_csv = tmp_path / "lesions.csv"
    # images named by stem or by path relative to the root, as a user's CSV may do
    pd.DataFrame(
        {
            "image": [p.stem if "benign" in str(p) else p.relative_to(root).as_posix() for p in paths],
            "lesion_id": [f"{p.parent.name}-{i // 3}" for i, p in enumerate(paths)],
        }
    ).to_csv(groups_csv, index=False)

    tables = prepare_splits(
        root, root / "splits", split_settings(val_fraction=0.2, val_min_malignant=0, groups_csv=str(groups_csv))
    )

    train_groups, val_groups = set(tables["train"].group), set(tables["val"].group)
    assert not train_groups & val_groups
    assert len(val_groups) == 8  # 6 of the 30 benign lesions, 2 of the 10 malignant ones
    assert tables["val"].label.value_counts().to_dict() == {0: 18, 1: 6}


def test_identical_files_never_straddle_train_and_val(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_image_folder(
        tmp_path / "data", {"train": {"benign": 40, "malignant": 10}, "test": {"benign": 3, "malignant": 2}}
    )
    original = root / "train" / "benign" / "img_0000.png"
    for i in range(5):
        (root / "train" / "benign" / f"copy_{i}.png").write_bytes(original.read_bytes())
    (root / "test" / "benign" / "leak.png").write_bytes(original.read_bytes())

    with caplog.at_level(logging.WARNING):
        tables = prepare_splits(root, root / "splits", split_settings(val_fraction=0.3, split_seed=1))

    copies = {"train/benign/img_0000.png", *(f"train/benign/copy_{i}.png" for i in range(5))}
    in_train = copies & set(tables["train"].path)
    assert in_train in (set(), copies)  # all six together on one side
    assert "identical image(s) lie in more than one split" in caplog.text
    assert "test/benign/leak.png" in caplog.text


def test_stratified_holdout_keeps_both_sides_of_each_class() -> None:
    labels = [0, 0, 1, 1]
    held = stratified_holdout(labels, ["a", "b", "c", "d"], fraction=0.01, seed=0)
    assert held.tolist().count(True) == 2  # one per class, never none
    held = stratified_holdout(labels, ["a", "b", "c", "d"], fraction=0.99, seed=0)
    assert held.tolist().count(True) == 2  # and never all


def test_existing_splits_are_reused_not_overwritten(image_folder: Path) -> None:
    split_dir = image_folder / "splits"
    prepare_splits(image_folder, split_dir, split_settings(val_fraction=0.25))
    before = {p.name: p.read_bytes() for p in split_dir.iterdir()}

    reused = prepare_splits(image_folder, split_dir, split_settings(val_fraction=0.25))
    assert len(reused["val"]) == 20
    with pytest.raises(SkinclfError, match=r"data.val_fraction=0.25 \(config asks 0.1\)"):
        prepare_splits(image_folder, split_dir, split_settings(val_fraction=0.1))
    assert {p.name: p.read_bytes() for p in split_dir.iterdir()} == before


def test_images_added_or_removed_after_splitting_are_reported(
    image_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    split_dir = image_folder / "splits"
    prepare_splits(image_folder, split_dir, split_settings())
    write_image(image_folder / "train" / "Benign" / "new.png", 999, suffix_format="PNG")
    with caplog.at_level(logging.WARNING):
        prepare_splits(image_folder, split_dir, split_settings())
    assert "1 image(s)" in caplog.text and "train/Benign/new.png" in caplog.text

    (image_folder / "train" / "MALIGNANT" / "img_0003.png").unlink()
    with pytest.raises(SkinclfError, match=r"no longer exist.*train/MALIGNANT/img_0003.png"):
        prepare_splits(image_folder, split_dir, split_settings())


def test_split_csv_with_bad_labels_is_refused(image_folder: Path) -> None:
    split_dir = image_folder / "splits"
    prepare_splits(image_folder, split_dir, split_settings())
    table = pd.read_csv(split_dir / "val.csv")
    table.loc[0, "label"] = 2
    table.to_csv(split_dir / "val.csv", index=False)
    with pytest.raises(SkinclfError, match=r"val.csv has labels 2"):
        prepare_splits(image_folder, split_dir, split_settings())
