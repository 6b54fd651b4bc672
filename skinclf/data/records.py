"""The images a split is made from, as records: read from an image folder or from tables, checked and grouped.

A record is a row with ``path`` (relative to the data root), ``label`` (1 = malignant) and
``split`` (train, val or test where the data says so: the folder an image lies in, or the table's
split column; "" where it does not), and from tables ``diagnosis``, ``group``, ``source`` and the
tables' other columns. Every image is read once (on every core): its bytes are hashed (identical
files stay in one group) and, as asked, it is decoded to check it, to hash its pixels with
``data.near_duplicates`` (near-identical ones too) and to stage its cached pixels.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from skinclf.config.schema import SplitSettings
from skinclf.core.errors import SkinclfError, examples
from skinclf.data.cache import Staging, staging
from skinclf.data.folder import scan_image_folder
from skinclf.data.near_duplicates import merged_groups
from skinclf.data.reading import Wanted, read_images
from skinclf.data.table import read_table_sources, require_columns, table_root, table_sources

log = logging.getLogger(__name__)


def reads_tables(settings: SplitSettings) -> bool:
    """True when the images are listed in tables (data.table or data.sources), not laid out in class folders."""
    return bool(settings.table or settings.sources)


def data_root(root: str | None, settings: SplitSettings) -> Path | None:
    """The folder the records' paths are relative to: data.root, or for tables the common parent of their images."""
    if root:
        return Path(root).expanduser()
    return table_root(settings) if reads_tables(settings) else None


def default_split_dir(root: Path, settings: SplitSettings) -> Path:
    """Where the split CSVs go unless data.split_dir says: <root>/splits, or splits/ beside the (first) table."""
    if not reads_tables(settings):
        return root / "splits"
    first = table_sources(settings)[0]
    return (first.table.parent if first.table is not None else first.images[0]) / "splits"


def read_records(root: Path, settings: SplitSettings) -> pd.DataFrame:
    """The records of the data: from tables, or from ``root/<train|val|test>/<class>/``."""
    if reads_tables(settings):
        table_records_root, records = read_table_sources(settings)
        if table_records_root != root:
            records["path"] = [(table_records_root / p).relative_to(root).as_posix() for p in records["path"]]
        return records
    scanned = scan_image_folder(root)
    return pd.concat([table.assign(split=name) for name, table in scanned.items()], ignore_index=True)


def check_and_hash(
    records: pd.DataFrame,
    root: Path,
    check_images: bool,
    skip_corrupt: bool,
    perceptual: bool,
    workers: int | None = None,
    staged: Staging | None = None,
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Hash every image (and with check_images or perceptual, decode it); drop or refuse unreadable ones.

    Each file is read once, in ``workers`` processes (null: every usable CPU; see skinclf.data.reading); with
    ``staged``, the decode also gives its cached pixels, staged for the split caches. Returns the readable records
    with their ``sha1``, their perceptual hashes (rows of packed words, empty without ``perceptual``) and the
    paths left out.
    """
    paths = records["path"].tolist()
    wanted = Wanted(check_images, perceptual, staged.pixels if staged is not None else None)
    kept, hashes, pixel_hashes, failures = [], [], [], []
    with staging(staged, root, paths) as stage:
        for row, (path, read) in enumerate(
            zip(paths, read_images(root, paths, wanted, workers, "checking images"), strict=True)
        ):
            if read["error"]:
                failures.append((path, read["error"]))
                continue
            kept.append(row)
            hashes.append(read["sha1"])
            if perceptual:
                pixel_hashes.append(read["perceptual"])
            if stage is not None:
                stage(path, read["sha1"], read["pixels"])
        if failures and not skip_corrupt:
            listing = "\n".join(f"  {root / p}: {reason}" for p, reason in failures[:20])
            more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
            raise SkinclfError(
                f"{len(failures)} image(s) under {root} cannot be read:\n{listing}{more}\n"
                "Remove or replace them, or pass data.skip_corrupt=true to leave them out."
            )
    if failures:
        log.warning("left out %d unreadable image(s), e.g. %s", len(failures), failures[0][0])
    readable = records.iloc[kept].assign(sha1=hashes).reset_index(drop=True)
    perceptual_hashes = np.stack(pixel_hashes) if pixel_hashes else np.zeros((len(readable), 3), dtype=np.uint64)
    return readable, perceptual_hashes, [p for p, _ in failures]


def groups_from_csv(records: pd.DataFrame, settings: SplitSettings) -> pd.Series:
    """For image folders: the group of each record from data.groups_csv ("" where it names none)."""
    groups_path = Path(settings.groups_csv).expanduser()
    if not groups_path.is_file():
        raise SkinclfError(f"data.groups_csv={groups_path} does not exist: name a CSV file")
    groups = pd.read_csv(groups_path, dtype=str)
    needed = [settings.group_image_column, settings.group_column]
    require_columns(
        groups, needed, groups_path, "Set data.group_image_column and data.group_column to its column names"
    )
    group_of = dict(zip(groups[settings.group_image_column], groups[settings.group_column], strict=True))
    keys = [next((k for k in (p, Path(p).name, Path(p).stem) if k in group_of), None) for p in records["path"]]
    found = pd.Series(["group:" + group_of[k] if k is not None else "" for k in keys], index=records.index)
    if (found == "").all():
        raise SkinclfError(
            f"no image matches a row of {groups_path}: its column "
            f"'{settings.group_image_column}' must hold image paths, file names or stems"
        )
    if (found == "").any():
        log.warning("%d images are not in %s; each becomes a group of its own", int((found == "").sum()), groups_path)
    return found


def attach_groups(records: pd.DataFrame, settings: SplitSettings, near_pairs: list[tuple[int, int]]) -> pd.DataFrame:
    """Fill the group column, so that a split never separates what belongs together.

    A record's group is its patient or lesion (the table's group column, or data.groups_csv), else
    its own (its bytes' hash); byte-identical files share a group, and with
    ``data.near_duplicates=group`` near-identical images (near_pairs, rows of records) do too.
    """
    given = records["group"] if "group" in records.columns else pd.Series("", index=records.index)
    if settings.groups_csv and not (given != "").any():
        given = groups_from_csv(records, settings)
    base = given.where(given != "", records["sha1"]).tolist()
    pairs = [pair for rows in records.groupby("sha1").groups.values() for pair in itertools.pairwise(rows)]
    if settings.near_duplicates == "group":
        pairs += near_pairs
    return records.assign(group=merged_groups(base, pairs))


def report_near_duplicates(records: pd.DataFrame, near_pairs: list[tuple[int, int]]) -> list[list[str]]:
    """Near-identical images (near_pairs, rows of records) in two different splits, as [path, path] pairs;
    each pair is warned about."""
    pairs = [
        [records["path"][i], records["path"][j]]
        for i, j in near_pairs
        if records["split"][i] != records["split"][j] and records["sha1"][i] != records["sha1"][j]
    ]
    if pairs:
        log.warning(
            "%d pair(s) of near-identical images (resized, re-encoded or cropped copies) lie in different splits, "
            "e.g. %s. Remove one of each, or let data.near_duplicates=group keep them together where the splits "
            "are not given by the data.",
            len(pairs),
            examples([" ~ ".join(pair) for pair in pairs], 3),
        )
    return pairs
