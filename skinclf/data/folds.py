"""Cross-validation folds of the training pool: stratified by label, grouped by patient or lesion; or, with
cv.leave_out=source, each source of data.sources left out in turn.

The pool is the train and val splits together; the test split stays out of every fold. Fold k's
run trains on the other folds and validates on fold k, so its validation predictions are the
out-of-fold predictions of those images. ``folds-<K>.csv`` (path, fold) in the split folder records
the folds, made once from ``data.split_seed`` and reused by every fold's job.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from skinclf.config.schema import CrossValidationSettings
from skinclf.core.atomic import write_text
from skinclf.core.errors import SkinclfError
from skinclf.core.locks import exclusive_lock
from skinclf.data.splits import group_classes

log = logging.getLogger(__name__)


def folds_file(split_dir: Path, folds: int) -> Path:
    return split_dir / f"folds-{folds}.csv"


def pool_of(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The images folds are made of: train then val, in the order of their CSVs."""
    return pd.concat([tables["train"], tables["val"]], ignore_index=True)


def assign_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of each row: whole groups at a time, each class spread evenly over the folds.

    A group takes the class of its most malignant image. Groups are dealt out largest first (ties
    in a random order from ``seed``), each to the fold holding the fewest images of its class so far.
    """
    group_of_row, group_label, group_size = group_classes(labels, groups)
    shuffled = np.random.default_rng(seed).permutation(len(group_label))
    order = shuffled[np.argsort(-group_size[shuffled], kind="stable")]
    fold_of_group = np.zeros(len(group_label), dtype=int)
    filled = np.zeros((2, folds), dtype=int)  # images of each class in each fold
    for group in order:
        label = group_label[group]
        fold = int(np.lexsort((filled.sum(0), filled[label]))[0])  # fewest of this class, then fewest in all
        fold_of_group[group] = fold
        filled[label, fold] += group_size[group]
    return fold_of_group[group_of_row]


def prepare_folds(split_dir: Path, tables: dict[str, pd.DataFrame], cv: CrossValidationSettings, seed: int) -> None:
    """Write folds-<K>.csv for the pool of these splits, once; check an existing one lists the same images."""
    path = folds_file(split_dir, cv.folds)
    pool = pool_of(tables)
    with exclusive_lock(split_dir / ".lock", f"the splits in {split_dir}"):
        if path.is_file():
            read_folds(split_dir, tables, cv.folds)
            return
        groups = pool["group"].to_numpy() if "group" in pool.columns else pool["path"].to_numpy()
        fold = assign_folds(pool["label"].to_numpy(), groups.astype(str), cv.folds, seed)
        counts = np.bincount(fold[pool["label"].to_numpy() == 1], minlength=cv.folds)
        if counts.min() == 0:
            raise SkinclfError(
                f"cv.folds={cv.folds}: some folds would hold no malignant image ({counts.tolist()} malignant per "
                "fold): use fewer folds"
            )
        write_text(path, pd.DataFrame({"path": pool["path"], "fold": fold}).to_csv(index=False))
    log.info("wrote %d folds of %d images (%s malignant per fold) to %s", cv.folds, len(pool), counts.tolist(), path)


def read_folds(split_dir: Path, tables: dict[str, pd.DataFrame], folds: int) -> np.ndarray:
    """The fold of each image of the pool, from folds-<K>.csv, in the pool's order."""
    path = folds_file(split_dir, folds)
    try:
        recorded = pd.read_csv(path, dtype={"path": str})
    except (OSError, pd.errors.ParserError) as error:
        raise SkinclfError(f"cannot read the folds in {path} ({error}): remove it to make the folds again") from error
    pool = pool_of(tables)
    if recorded["path"].tolist() != pool["path"].tolist():
        raise SkinclfError(
            f"{path} lists other images than the train and val splits of {split_dir}: it was made for other "
            "splits; remove it to make the folds again"
        )
    return recorded["fold"].to_numpy()


def fold_tables(tables: dict[str, pd.DataFrame], fold_of_row: np.ndarray, fold: int) -> dict[str, pd.DataFrame]:
    """The splits of one fold: train on the other folds, validate on this one, test as before."""
    pool = pool_of(tables)
    held = fold_of_row == fold
    return {
        "train": pool[~held].reset_index(drop=True),
        "val": pool[held].reset_index(drop=True),
        "test": tables["test"],
    }


def source_names(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The sources of the splits' images, in the order data.sources names them."""
    every = pd.concat(tables.values())
    if "source" not in every.columns or every["source"].nunique() < 2:
        raise SkinclfError(
            "cv.leave_out=source needs images of two sources or more: name them in data.sources (data=sources)"
        )
    return list(pd.unique(every["source"]))


def leave_source_out(tables: dict[str, pd.DataFrame], source: str) -> dict[str, pd.DataFrame]:
    """Leaving one source out: train and val of the other sources, the test split of every source (the same for each
    source left out, as the folds share theirs), and as ``left_out`` every image of the source left out, the one
    set the run is judged on as a clinic it never saw."""
    every = pd.concat(tables.values(), ignore_index=True)
    return {
        **{name: tables[name][tables[name]["source"] != source].reset_index(drop=True) for name in ("train", "val")},
        "test": tables["test"],
        "left_out": every[every["source"] == source].reset_index(drop=True),
    }
