"""Scanning an image folder laid out as ``<root>/<split>/<class>/*`` into (path, label) records."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from skinclf.core.errors import SkinclfError, examples
from skinclf.data.images import IMAGE_EXTENSIONS, is_image_file

log = logging.getLogger(__name__)

#: Class folder name (matched case-insensitively) -> label. 1 is the positive class.
CLASS_LABELS = {"benign": 0, "malignant": 1}


def checked_labels(table: pd.DataFrame, source: Path) -> pd.DataFrame:
    """The table with its label column as integers, refusing any label but 0 and 1."""
    labels = pd.to_numeric(table["label"], errors="coerce")
    bad = ~labels.isin([0, 1])
    if bad.any():
        raise SkinclfError(
            f"{source} has labels {examples(table.loc[bad, 'label'].unique().tolist())}: "
            "labels must be 0 (benign) or 1 (malignant)"
        )
    return table.assign(label=labels.astype(int))


def _class_folders(split_dir: Path, both: bool = True) -> dict[str, Path]:
    """Find the benign/ and malignant/ folders in split_dir, whatever their letter case; unless ``both``, one of
    them may be missing."""
    found: dict[str, list[Path]] = {name: [] for name in CLASS_LABELS}
    others = []
    for child in sorted(split_dir.iterdir()):
        if not child.is_dir():
            continue
        if child.name.lower() in found:
            found[child.name.lower()].append(child)
        elif not child.name.startswith("."):
            others.append(child.name)
    if others:
        log.warning("ignoring folders in %s that are not a class: %s", split_dir, examples(others))
    folders = {}
    for name, matches in found.items():
        if not matches and not both:
            continue
        if not matches:
            raise SkinclfError(
                f"class folder '{name}' is missing in {split_dir}: expected subfolders "
                f"{' and '.join(CLASS_LABELS)} (any letter case) holding the images"
            )
        if len(matches) > 1:
            raise SkinclfError(
                f"{split_dir} has several folders for class '{name}' "
                f"({examples([m.name for m in matches])}): merge them into one"
            )
        folders[name] = matches[0]
    return folders


def list_images(folder: Path) -> list[Path]:
    """Every image file below folder, sorted: nested folders and linked folders included, each once."""
    images, seen = [], set()
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:  # a link back up the tree, or a second link to the same folder
            subdirectories.clear()
            continue
        seen.add(real)
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        images += [Path(directory) / name for name in files if is_image_file(Path(directory) / name)]
    broken = [p for p in images if not p.is_file()]
    if broken:
        log.warning("ignoring %d broken link(s), e.g. %s", len(broken), broken[0])
    return sorted(p for p in images if p.is_file())


def has_class_folders(folder: Path) -> bool:
    """True when folder has a benign/ or malignant/ subfolder (any letter case)."""
    return any(child.is_dir() and child.name.lower() in CLASS_LABELS for child in folder.iterdir())


def scan_class_folders(folder: Path, relative_to: Path, allow_empty: bool = False) -> pd.DataFrame:
    """List the images of folder/<class>/ as a table: path (relative to relative_to) and label. An empty or missing
    class folder is refused unless allow_empty (a set evaluated for what one class defines, images to predict)."""
    rows = []
    for name, class_folder in _class_folders(folder, both=not allow_empty).items():
        paths = list_images(class_folder)
        if not paths and not allow_empty:
            raise SkinclfError(
                f"class folder {class_folder} holds no images: add images with one of the extensions "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}, or remove the folder"
            )
        rows += [(p.relative_to(relative_to).as_posix(), CLASS_LABELS[name]) for p in paths]
    return pd.DataFrame(rows, columns=["path", "label"])


#: Names of an official validation folder beside train/ (any letter case).
VALIDATION_FOLDERS = ("val", "valid", "validation")


def validation_folder(root: Path) -> Path | None:
    """The data root's own validation folder, if it ships one."""
    found = [c for c in root.iterdir() if c.is_dir() and c.name.lower() in VALIDATION_FOLDERS]
    if len(found) > 1:
        raise SkinclfError(f"{root} has several validation folders ({examples([f.name for f in found])}): keep one")
    return found[0] if found else None


def check_root(root: Path) -> None:
    """Refuse a data root that does not exist."""
    if not root.is_dir():
        raise SkinclfError(
            f"data root {root} does not exist: pass data.root=<folder holding train/ and test/> or set SKINCLF_DATA"
        )


def scan_image_folder(root: Path) -> dict[str, pd.DataFrame]:
    """Scan ``root/train`` and, when present, ``root/val`` and ``root/test``; returns a table per split found."""
    check_root(root)
    if not (root / "train").is_dir():
        raise SkinclfError(
            f"{root} has no train/ folder: expected {root}/train/<benign|malignant>/<images> "
            "and optionally val/ and test/ laid out the same way"
        )
    folders = {"train": root / "train", "val": validation_folder(root), "test": root / "test"}
    return {
        split: scan_class_folders(folder, relative_to=root)
        for split, folder in folders.items()
        if folder is not None and folder.is_dir()
    }
