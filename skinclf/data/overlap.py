"""Images an evaluation shares with the images a model trained on.

Public dermoscopy sets share images through the ISIC Archive: a model tested on another dataset may
have trained on some of its images, byte for byte or resized and re-encoded. An external evaluation
names them (the file's hash for identical bytes, the perceptual hash of skinclf.data.near_duplicates
for near-identical copies) and, with evaluation.exclude_training_duplicates, leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from skinclf.data.near_duplicates import pairs_between
from skinclf.data.records import check_and_hash

#: How many pairs of each kind metrics.json names (all are counted).
NAMED_PAIRS = 20


@dataclass(frozen=True)
class Hashed:
    """Images of a table, each with the hash of its bytes and its perceptual hash (rows of hashes, in order)."""

    root: Path
    table: pd.DataFrame
    perceptual: np.ndarray

    @classmethod
    def of(cls, root: Path, table: pd.DataFrame) -> Hashed:
        """The table's readable images, hashed (an unreadable one is left out: it has no copy to find)."""
        readable, perceptual, _ = check_and_hash(table, root, True, True, True)
        return cls(root, readable, perceptual)


@dataclass(frozen=True)
class Overlap:
    """Pairs (evaluated image, training image): identical bytes, and near-identical pixels."""

    identical: list[tuple[str, str]]
    near_identical: list[tuple[str, str]]

    @property
    def evaluated(self) -> set[str]:
        """The evaluated images that are copies of a training image."""
        return {evaluated for evaluated, _ in self.identical + self.near_identical}

    def record(self, excluded: bool) -> dict:
        """What metrics.json says of it."""
        return {
            "identical": len(self.identical),
            "near_identical": len(self.near_identical),
            "examples_identical": [list(pair) for pair in self.identical[:NAMED_PAIRS]],
            "examples_near_identical": [list(pair) for pair in self.near_identical[:NAMED_PAIRS]],
            "excluded": len(self.evaluated) if excluded else 0,
        }


def overlap(evaluated: Hashed, training: Hashed) -> Overlap:
    """The evaluated images that are copies of training images: identical files, then near-identical ones."""
    training_by_hash = dict(zip(training.table["sha1"], training.table["path"], strict=True))
    identical = [
        (path, training_by_hash[sha1])
        for path, sha1 in zip(evaluated.table["path"], evaluated.table["sha1"], strict=True)
        if sha1 in training_by_hash
    ]
    same_bytes = {path for path, _ in identical}
    near = [
        (evaluated.table["path"].iloc[i], training.table["path"].iloc[j])
        for i, j in pairs_between(evaluated.perceptual, training.perceptual)
        if evaluated.table["path"].iloc[i] not in same_bytes
    ]
    first_near = list(dict(near).items())  # one training copy named for each evaluated image
    return Overlap(identical, first_near)
