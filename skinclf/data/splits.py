"""Train/val/test split CSVs: created once from an image folder or tables, then reused and checked.

The CSVs live in a split folder (``<root>/splits`` for a folder, beside the table for tables,
unless ``data.split_dir`` names another) with columns ``path`` (relative to the data root),
``label`` (1 = malignant), ``group`` and ``sha1``, and from tables ``diagnosis``, ``source`` and the
tables' other columns; ``split.json`` records the settings they were made with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from skinclf.config.schema import SplitSettings
from skinclf.core.atomic import write_text
from skinclf.core.errors import SkinclfError, examples
from skinclf.core.locks import exclusive_lock
from skinclf.data.cache import Staging
from skinclf.data.folder import check_root, checked_labels
from skinclf.data.near_duplicates import near_duplicate_pairs
from skinclf.data.records import attach_groups, check_and_hash, read_records, reads_tables, report_near_duplicates
from skinclf.data.table import SOURCE_KEYS

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
COLUMNS = ["path", "label", "group", "sha1"]
METADATA_FILE = "split.json"

#: The largest share of the training pool that validation may take to reach val_min_malignant.
MAX_VAL_FRACTION = 0.25

#: Settings that only tables use: they play no part in the splits of an image folder.
TABLE_SETTINGS = frozenset({*SOURCE_KEYS, "sources", "skip_unlabelled", "missing_groups"}) - {"group_column"}


def group_classes(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group of each row, class of each group, size of each group): a group takes the class of its most malignant
    image, so that stratifying groups keeps every malignant image's group on the malignant side."""
    group_ids, group_of_row = np.unique(groups, return_inverse=True)
    group_label = np.zeros(len(group_ids), dtype=int)
    np.maximum.at(group_label, group_of_row, labels)
    return group_of_row, group_label, np.bincount(group_of_row, minlength=len(group_ids))


def stratified_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int | list[int]) -> np.ndarray:
    """Choose about ``fraction`` of each class's rows to hold out, whole groups at a time.

    A group takes the class of its most malignant image. Each class with two or more groups keeps
    at least one group on each side. Returns a boolean mask of the rows held out.
    """
    rng = np.random.default_rng(seed)
    group_of_row, group_label, group_size = group_classes(labels, groups)
    held = np.zeros(len(group_label), dtype=bool)
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


def validation_fraction(labels: np.ndarray, settings: SplitSettings) -> float:
    """val_fraction, raised up to MAX_VAL_FRACTION until it holds about val_min_malignant malignant images."""
    malignant = int(np.sum(labels))
    needed = settings.val_min_malignant / malignant if malignant else 0.0
    return max(settings.val_fraction, min(MAX_VAL_FRACTION, needed))


def validation_reach(pool_malignant: int, needed: int) -> str:
    """What data.val_min_malignant can do for a rule that needs ``needed`` malignant validation images, given the
    malignant images of the pool validation is drawn from (the training and validation splits together)."""
    most = round(MAX_VAL_FRACTION * pool_malignant)
    share = f"{MAX_VAL_FRACTION:.0%} of the training images: {most} of their {pool_malignant} malignant"
    if most >= needed:
        return f"or, when training, data.val_min_malignant={needed} (validation may take up to {share})"
    return f"data.val_min_malignant cannot help here (validation takes at most {share}, fewer than {needed})"


def _report_small_validation(malignant: int, settings: SplitSettings) -> None:
    if malignant < settings.val_min_malignant:
        log.warning(
            "validation holds %d malignant images, fewer than data.val_min_malignant=%d: the data cannot give "
            "more without taking over %d %% of the training images. Thresholds for high target recalls will "
            "rest on few images (metrics.json and the summary say which).",
            malignant,
            settings.val_min_malignant,
            round(100 * MAX_VAL_FRACTION),
        )


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
    root: Path,
    settings: SplitSettings,
    check_images: bool = True,
    skip_corrupt: bool = False,
    workers: int | None = None,
    staged: Staging | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read the data (a folder or tables), check and group its images and split it; the images are read in
    ``workers`` processes and, with ``staged``, their cached pixels staged on the way (see check_and_hash).

    Returns the tables and the metadata to save with them.
    """
    records = read_records(root, settings)
    perceptual = settings.near_duplicates != "off"
    records, hashes, skipped = check_and_hash(records, root, check_images, skip_corrupt, perceptual, workers, staged)
    near_pairs = near_duplicate_pairs(hashes) if perceptual else []  # all pairs compared once, used twice
    records = attach_groups(records, settings, near_pairs)
    tables, sources = assign_splits(records, settings)
    extra = [c for c in records.columns if c not in (*COLUMNS, "split")]
    tables = {name: t[[*COLUMNS, *extra]].reset_index(drop=True) for name, t in tables.items()}
    _check_both_classes(tables, settings)
    _report_duplicates(tables)
    split_of = pd.concat([t.assign(split=n) for n, t in tables.items()]).set_index("path")["split"]
    near = report_near_duplicates(records.assign(split=records["path"].map(split_of)), near_pairs)
    metadata = {
        "settings": dataclasses.asdict(settings),
        "input": "tables" if reads_tables(settings) else "folder",
        "val_source": sources["val"],
        "test_source": sources["test"],
        "skipped_unreadable": skipped,
        "near_duplicates_across_splits": near,
        "counts": {n: {"images": len(t), "malignant": int(t["label"].sum())} for n, t in tables.items()},
    }
    return tables, metadata


def assign_splits(records: pd.DataFrame, settings: SplitSettings) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Keep the splits the data gives (folders, a split column); carve the missing test, then val, from train. With
    several sources (data.sources), each source is split on its own: every split holds images of each, and a source
    that gives its splits keeps them.

    Returns the three tables and where val and test came from ("folder", "table" or "carved"; "mixed" where the
    sources differ).
    """
    if "source" in records.columns and records["source"].nunique() > 1:
        each = [single_source_splits(rows, settings) for _, rows in records.groupby("source", sort=False)]
        tables = {name: pd.concat([split[name] for split, _ in each]) for name in SPLITS}
        where = {name: {origin[name] for _, origin in each} for name in ("val", "test")}
        return tables, {name: kinds.pop() if len(kinds) == 1 else "mixed" for name, kinds in where.items()}
    return single_source_splits(records, settings)


def single_source_splits(
    records: pd.DataFrame, settings: SplitSettings
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """assign_splits of the images of one source."""
    given = "table" if reads_tables(settings) else "folder"
    pool = records[records["split"].isin(["", "train"])]
    tables = {name: records[records["split"] == name] for name in ("val", "test")}
    sources = {name: given if len(table) else "carved" for name, table in tables.items()}
    if tables["test"].empty:
        labels, groups = pool["label"].to_numpy(), pool["group"].to_numpy()
        held = stratified_holdout(labels, groups, settings.test_fraction, [settings.split_seed, 1])
        pool, tables["test"] = pool[~held], pool[held]
    if tables["val"].empty:
        labels = pool["label"].to_numpy()
        fraction = validation_fraction(labels, settings)
        held = stratified_holdout(labels, pool["group"].to_numpy(), fraction, settings.split_seed)
        pool, tables["val"] = pool[~held], pool[held]
        _report_small_validation(int(tables["val"]["label"].sum()), settings)
    return {"train": pool, "val": tables["val"], "test": tables["test"]}, sources


def _settings_that_differ(saved: dict, settings: SplitSettings, metadata: dict) -> list[str]:
    """The settings that would make other splits than the saved ones (given where the data's splits came from)."""
    wanted = dataclasses.asdict(settings)
    unused = set() if metadata.get("input") == "tables" else set(TABLE_SETTINGS)
    if metadata.get("test_source") in ("folder", "table"):
        unused.add("test_fraction")
    if metadata.get("val_source") in ("folder", "table"):
        unused |= {"val_fraction", "val_min_malignant"}
    return [
        f"data.{k}={saved.get(k)!r} (config asks {wanted[k]!r})"
        for k in wanted
        if k not in unused and saved.get(k) != wanted[k]
    ]


def _check_against_data(
    root: Path, split_dir: Path, tables: dict[str, pd.DataFrame], metadata: dict, settings: SplitSettings
) -> None:
    """Refuse CSVs that list missing images; warn about images of the folder or tables that they do not list."""
    listed = set(pd.concat(tables.values())["path"])
    missing = sorted(p for p in listed if not (root / p).is_file())
    if missing:
        raise SkinclfError(
            f"{len(missing)} image(s) listed in the split CSVs of {split_dir} no longer exist under "
            f"{root}, e.g. {examples(missing, 3)}. Restore them, or move {split_dir} away "
            "(or pass data.split_dir=<new folder>) to split the folder as it is now."
        )
    try:
        present = set(read_records(root, settings)["path"])
    except SkinclfError:  # CSVs made by hand for data of another layout: nothing to compare
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
            table = pd.read_csv(path, dtype={"path": str, "group": str, "sha1": str, "diagnosis": str, "source": str})
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
    workers: int | None = None,
    staged: Staging | None = None,
) -> dict[str, pd.DataFrame]:
    """The split CSVs of split_dir as read (each once): reused after checking them against the data, or created
    (see create_splits).

    Jobs started together make them once: the first takes the lock, the others wait and reuse them.
    """
    check_root(root)  # before the lock creates split_dir, which may lie inside it
    with exclusive_lock(split_dir / ".lock", f"the splits in {split_dir}"):
        if any((split_dir / f"{name}.csv").exists() for name in SPLITS):
            return _reuse_splits(root, split_dir, settings)
        _make_folder(split_dir)  # a folder the user may not write to is said before any image is read
        created, metadata = create_splits(root, settings, check_images, skip_corrupt, workers, staged)
        _write_splits(split_dir, created, metadata)
        tables, _ = load_splits(split_dir)  # as every later run reads them
    counts = ", ".join(f"{n} {c['images']} ({c['malignant']} malignant)" for n, c in metadata["counts"].items())
    log.info("wrote splits to %s: %s", split_dir, counts)
    return tables


def _reuse_splits(root: Path, split_dir: Path, settings: SplitSettings) -> dict[str, pd.DataFrame]:
    existing = [name for name in SPLITS if (split_dir / f"{name}.csv").exists()]
    if len(existing) < len(SPLITS):
        raise SkinclfError(
            f"{split_dir} holds {examples([n + '.csv' for n in existing])} but not all of "
            f"{', '.join(n + '.csv' for n in SPLITS)}: complete it or move it away to split again"
        )
    tables, metadata = load_splits(split_dir)
    differ = _settings_that_differ(metadata.get("settings", {}), settings, metadata)
    if metadata and differ:
        raise SkinclfError(
            f"the splits in {split_dir} were made with other settings: {'; '.join(differ)}. "
            "Pass data.split_dir=<new folder> to make new splits beside them, or go back to "
            "the settings they were made with."
        )
    _check_against_data(root, split_dir, tables, metadata, settings)
    log.info("using the splits in %s", split_dir)
    return tables


def _write_splits(split_dir: Path, tables: dict[str, pd.DataFrame], metadata: dict) -> None:
    """Write the CSVs and split.json, all or none: a failure removes the ones already written."""
    files = {f"{name}.csv": table.to_csv(index=False) for name, table in tables.items()}
    files[METADATA_FILE] = json.dumps(metadata, indent=2)
    written = []
    try:
        for name, text in files.items():
            write_text(split_dir / name, text)
            written.append(split_dir / name)
    except BaseException as error:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _unwritable(split_dir, error) from error
        raise


def _make_folder(split_dir: Path) -> None:
    try:
        split_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(split_dir, error) from error


def _unwritable(split_dir: Path, error: OSError) -> SkinclfError:
    return SkinclfError(
        f"cannot write the split CSVs to {split_dir} ({error}): pass data.split_dir=<a writable folder>"
    )
