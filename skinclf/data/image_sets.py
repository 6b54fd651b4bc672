"""Sets of images a trained model runs on: a folder's, a table's or a split's, with their labels where known."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from skinclf.config.schema import DataSettings
from skinclf.core.errors import SkinclfError
from skinclf.data.records import check_and_hash, data_root, read_records
from skinclf.data.table import SPLIT_NAMES


@dataclass(frozen=True)
class Images:
    """Images to run a model on: ``table.path`` relative to ``root``, with labels and the table's other columns
    where known; ``described`` says what they are (the test split, a folder...)."""

    root: Path
    table: pd.DataFrame
    described: str


def table_images(data: DataSettings, split: str | None) -> Images:
    """Every usable row of the data group's table(s), checked as training checks them, or one split of them."""
    root = data_root(data.root, data)
    records, _, _ = check_and_hash(read_records(root, data), root, data.check_images, data.skip_corrupt, False)
    described = ", ".join(str(t) for t in ([data.table] if data.table else [s["table"] for s in data.sources]))
    if split is not None:
        if not data.split_column:
            raise SkinclfError(
                f"input={split} names a split, but the table has none: set data.split_column to its split "
                "column, or leave input out to evaluate every usable row"
            )
        records = records[records["split"] == SPLIT_NAMES.get(split, split)]
        if records.empty:
            raise SkinclfError(f"no usable row of {described} is in the split {split}")
        described += f" ({split} split)"
    return Images(root, records.drop(columns=["split"]).reset_index(drop=True), described)


def union(sets: list[Images]) -> Images:
    """The images of several sets, each once, by their absolute paths (the folds of a cross-validation trained on
    the same pool)."""
    absolute = [images.table.assign(path=[str(images.root / p) for p in images.table["path"]]) for images in sets]
    table = pd.concat(absolute).drop_duplicates("path").reset_index(drop=True)
    return Images(Path("/"), table, " and ".join(dict.fromkeys(images.described for images in sets)))
