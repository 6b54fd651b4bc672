"""Train/val/test split CSVs: created once from an image folder, then reused and checked.

The CSVs live in a split folder (``<root>/splits`` unless ``data.split_dir`` names another) with
columns ``path`` (relative to the data root), ``label`` (1 = malignant), ``group`` and ``sha1``,
and a ``split.json`` that records the settings they were made with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from skinclf.atomic import atomic_path
from skinclf.data.folder import checked_labels, scan_image_folder
from skinclf.data.images import file_sha1, unreadable_reason
from skinclf.errors import SkinclfError, examples

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
COLUMNS = ["path", "label", "group", "sha1"]
METADATA_FILE = "split.json"


@dataclass(frozen=True)
class SplitSettings:
    """How the splits are made. Saved beside the CSVs; reusing CSVs made otherwise is refused."""

    val_fraction: float = 0.05
    #: Fraction carved out as the test split, used only when the data root has no test/ folder.
    test_fraction: float = 0.2
    seed: int = 0
    #: Optional CSV mapping images to groups (lesion or patient ids) kept whole within one split.
    groups_csv: str | None = None
    #: Column of groups_csv naming the image: a path relative to the root, a file name or its stem.
    group_image_column: str = "image"
    group_column: str = "lesion_id"

    def __post_init__(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                raise SkinclfError(f"data.{key}={value} is out of range: it must lie in (0, 1)")


def stratified_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int | list[int]) -> np.ndarray:
    """Choose about ``fraction`` of each class's rows to hold out, whole groups at a time.

    A group takes the class of its most malignant image. Each class with two or more groups keeps
    at least one group on each side. Returns a boolean mask of the rows held out.
    """
    rng = np.random.default_rng(seed)
    group_ids, group_of_row = np.unique(groups, return_inverse=True)
    group_label = np.zeros(len(group_ids), dtype=int)
    np.maximum.at(group_label, group_of_row, labels)
    group_size = np.bincount(group_of_row, minlength=len(group_ids))
    held = np.zeros(len(group_ids), dtype=bool)
    for label in (0, 1):
        candidates = rng.permutation(np.flatnonzero(group_label == label))
        target = fraction * group_size[candidates].sum()
        taken = 0
        for group in candidates[:-1]:  # the last candidate always stays
            size = group_size[group]
            if taken == 0 or taken + size - target <= target - taken:
                held[group] = True
                taken += size
            if taken >= target:
                break
    return held[group_of_row]


def _attach_groups(table: pd.DataFrame, root: Path, settings: SplitSettings) -> pd.DataFrame:
    """Fill the group column: from groups_csv where given, else identical files share a group."""
    table = table.assign(group=table["sha1"])
    if settings.groups_csv is None:
        return table
    groups_path = Path(settings.groups_csv).expanduser()
    if not groups_path.is_file():
        raise SkinclfError(f"data.groups_csv={groups_path} does not exist: name a CSV file")
    groups = pd.read_csv(groups_path, dtype=str)
    needed = [settings.group_image_column, settings.group_column]
    missing = [c for c in needed if c not in groups.columns]
    if missing:
        raise SkinclfError(
            f"{groups_path} has no column {examples(missing)}: it needs columns {needed}; "
            "set data.group_image_column and data.group_column to its column names"
        )
    group_of = dict(zip(groups[settings.group_image_column], groups[settings.group_column], strict=True))
    paths = table["path"]
    keys = [next((k for k in (p, Path(p).name, Path(p).stem) if k in group_of), None) for p in paths]
    found = [group_of[k] if k is not None else None for k in keys]
    n_missing = sum(g is None for g in found)
    if n_missing == len(table):
        raise SkinclfError(
            f"no image matches a row of {groups_path}: its column "
            f"'{settings.group_image_column}' must hold image paths, file names or stems"
        )
    if n_missing:
        log.warning("%d images are not in %s; each becomes a group of its own", n_missing, groups_path)
    table["group"] = ["group:" + g if g is not None else s for g, s in zip(found, table["sha1"], strict=True)]
    return table


def _hash_and_check(
    table: pd.DataFrame, root: Path, check_images: bool, skip_corrupt: bool
) -> tuple[pd.DataFrame, list[str]]:
    """Hash every image and, with check_images, decode it; drop or refuse unreadable ones."""
    hashes, failures = [], []
    desc = "checking images" if check_images else "hashing images"
    for path in tqdm(table["path"], desc=desc, unit="img", disable=len(table) < 500):
        reason = unreadable_reason(root / path) if check_images else None
        if reason is None:
            try:
                hashes.append(file_sha1(root / path))
                continue
            except OSError as error:
                reason = f"{type(error).__name__}: {error}"
        failures.append((path, reason))
        hashes.append("")
    table = table.assign(sha1=hashes)
    if failures and not skip_corrupt:
        listing = "\n".join(f"  {root / p}: {reason}" for p, reason in failures[:20])
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        raise SkinclfError(
            f"{len(failures)} image(s) under {root} cannot be read:\n{listing}{more}\n"
            "Remove or replace them, or pass data.skip_corrupt=true to leave them out."
        )
    if failures:
        log.warning("left out %d unreadable image(s), e.g. %s", len(failures), failures[0][0])
    return table[table["sha1"] != ""].reset_index(drop=True), [p for p, _ in failures]


def _check_both_classes(tables: dict[str, pd.DataFrame], settings: SplitSettings) -> None:
    for name, table in tables.items():
        counts = table["label"].value_counts()
        for label, class_name in ((0, "benign"), (1, "malignant")):
            if counts.get(label, 0) == 0:
                raise SkinclfError(
                    f"the {name} split would hold no {class_name} images ({len(table)} images in it): "
                    f"add {class_name} images, or raise data.val_fraction ({settings.val_fraction}) "
                    f"or data.test_fraction ({settings.test_fraction})"
                )


def _report_duplicates(tables: dict[str, pd.DataFrame]) -> None:
    """Warn about byte-identical images that lie in two different splits."""
    seen = pd.concat([t.assign(split=n) for n, t in tables.items()])
    spread = seen.groupby("sha1")["split"].nunique()
    shared = seen[seen["sha1"].isin(spread[spread > 1].index)].sort_values("sha1")
    if not shared.empty:
        pairs = shared.groupby("sha1")["path"].apply(" = ".join).tolist()
        log.warning(
            "%d identical image(s) lie in more than one split (same bytes), e.g. %s. "
            "Remove the copies so that the test figures are not inflated.",
            len(pairs),
            examples(pairs, limit=3),
        )


def create_splits(
    root: Path, settings: SplitSettings, check_images: bool = True, skip_corrupt: bool = False
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Scan ``root`` and split it; returns the tables and the metadata to save with them."""
    scanned = scan_image_folder(root)
    skipped: list[str] = []
    for name in list(scanned):
        scanned[name], bad = _hash_and_check(scanned[name], root, check_images, skip_corrupt)
        skipped += bad
    pool = _attach_groups(scanned["train"], root, settings)
    test_source = "folder" if "test" in scanned else "carved"
    if test_source == "folder":
        test = _attach_groups(scanned["test"], root, settings)
    else:
        held = stratified_holdout(
            pool["label"].to_numpy(), pool["group"].to_numpy(), settings.test_fraction, [settings.seed, 1]
        )
        pool, test = pool[~held], pool[held]
    held = stratified_holdout(pool["label"].to_numpy(), pool["group"].to_numpy(), settings.val_fraction, settings.seed)
    tables = {"train": pool[~held], "val": pool[held], "test": test}
    tables = {name: t[COLUMNS].reset_index(drop=True) for name, t in tables.items()}
    _check_both_classes(tables, settings)
    _report_duplicates(tables)
    metadata = {
        "settings": dataclasses.asdict(settings),
        "test_source": test_source,
        "skipped_unreadable": skipped,
        "counts": {n: {"images": len(t), "malignant": int(t["label"].sum())} for n, t in tables.items()},
    }
    return tables, metadata


def _settings_that_differ(saved: dict, settings: SplitSettings, test_source: str) -> list[str]:
    wanted = dataclasses.asdict(settings)
    keys = [k for k in wanted if not (k == "test_fraction" and test_source == "folder")]
    return [f"data.{k}={saved.get(k)!r} (config asks {wanted[k]!r})" for k in keys if saved.get(k) != wanted[k]]


def _check_against_folder(root: Path, split_dir: Path, tables: dict[str, pd.DataFrame], metadata: dict) -> None:
    """Refuse CSVs that list missing images; warn about images the CSVs do not list."""
    listed = set(pd.concat(tables.values())["path"])
    missing = sorted(p for p in listed if not (root / p).is_file())
    if missing:
        raise SkinclfError(
            f"{len(missing)} image(s) listed in the split CSVs of {split_dir} no longer exist under "
            f"{root}, e.g. {examples(missing, 3)}. Restore them, or move {split_dir} away "
            "(or pass data.split_dir=<new folder>) to split the folder as it is now."
        )
    try:
        present = set(pd.concat(scan_image_folder(root).values())["path"])
    except SkinclfError:  # CSVs made by hand for a folder of another layout: nothing to compare
        return
    unlisted = sorted(present - listed - set(metadata.get("skipped_unreadable", [])))
    if unlisted:
        log.warning(
            "%d image(s) under %s are not in the splits of %s and will not be used, e.g. %s. "
            "Move %s away (or pass data.split_dir=<new folder>) to split again.",
            len(unlisted),
            root,
            split_dir,
            examples(unlisted, 3),
            split_dir,
        )


def load_splits(split_dir: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read the split CSVs and their metadata from split_dir."""
    tables = {}
    for name in SPLITS:
        path = split_dir / f"{name}.csv"
        try:
            table = pd.read_csv(path, dtype={"path": str, "group": str, "sha1": str})
        except (OSError, pd.errors.ParserError) as error:
            raise SkinclfError(f"cannot read split file {path}: {error}") from error
        missing = [c for c in ("path", "label") if c not in table.columns]
        if missing:
            raise SkinclfError(f"{path} lacks the column(s) {missing}: a split CSV needs path,label")
        tables[name] = checked_labels(table, path)
    metadata_path = split_dir / METADATA_FILE
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    return tables, metadata


def prepare_splits(
    root: Path,
    split_dir: Path,
    settings: SplitSettings,
    check_images: bool = True,
    skip_corrupt: bool = False,
) -> dict[str, pd.DataFrame]:
    """Reuse the split CSVs in split_dir after checking them against the folder, or create them."""
    existing = [name for name in SPLITS if (split_dir / f"{name}.csv").exists()]
    if existing and len(existing) < len(SPLITS):
        raise SkinclfError(
            f"{split_dir} holds {examples([n + '.csv' for n in existing])} but not all of "
            f"{', '.join(n + '.csv' for n in SPLITS)}: complete it or move it away to split again"
        )
    if existing:
        tables, metadata = load_splits(split_dir)
        differ = _settings_that_differ(metadata.get("settings", {}), settings, metadata.get("test_source", ""))
        if metadata and differ:
            raise SkinclfError(
                f"the splits in {split_dir} were made with other settings: {'; '.join(differ)}. "
                "Pass data.split_dir=<new folder> to make new splits beside them, or go back to "
                "the settings they were made with."
            )
        _check_against_folder(root, split_dir, tables, metadata)
        log.info("using the splits in %s", split_dir)
        return tables
    tables, metadata = create_splits(root, settings, check_images, skip_corrupt)
    files = {f"{name}.csv": table.to_csv(index=False) for name, table in tables.items()}
    try:
        split_dir.mkdir(parents=True, exist_ok=True)
        for name, text in {**files, METADATA_FILE: json.dumps(metadata, indent=2)}.items():
            with atomic_path(split_dir / name) as partial:
                partial.write_text(text)
    except OSError as error:
        raise SkinclfError(
            f"cannot write the split CSVs to {split_dir} ({error}): pass data.split_dir=<a writable folder>"
        ) from error
    counts = ", ".join(f"{n} {c['images']} ({c['malignant']} malignant)" for n, c in metadata["counts"].items())
    log.info("wrote splits to %s: %s", split_dir, counts)
    return tables
