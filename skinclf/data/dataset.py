"""A torch Dataset over a table of image paths, with labels when they are known."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from skinclf.config.schema import Preprocessing
from skinclf.core.errors import SkinclfError
from skinclf.data.cache import ImageCache
from skinclf.data.preprocessing import BLANK, decoding, eval_transform


class LesionDataset(Dataset):
    """Images listed in a table (path relative to root, optional label).

    Items are dicts: ``image`` (uint8, 3 x H x W) and ``label`` (float; NaN when unknown), and with
    ``diagnoses`` (the classes of task=diagnosis) ``diagnosis``, the index of the row's one. With
    ``tolerate_unreadable`` an image that cannot be read gives a black image and its reason in
    ``error`` ("" for the others) instead of stopping the run. With a ``cache`` the decoded,
    resized pixels come from it rather than from the files. With ``metadata`` (the encoded
    metadata of each row, see :mod:`skinclf.data.metadata`) items carry their row as ``metadata``.
    ``decode`` turns a file into pixels (the model's decoder: DCT scaling, colour constancy; a cache holds the
    pixels decoded so).
    """

    def __init__(
        self,
        root: Path,
        table: pd.DataFrame,
        transform: A.Compose,
        decode: Callable[[Path], np.ndarray],
        tolerate_unreadable: bool = False,
        cache: ImageCache | None = None,
        diagnoses: list[str] | None = None,
        metadata: np.ndarray | None = None,
    ) -> None:
        self.root = root
        self.table = table
        self.paths = table["path"].tolist()
        labels = table["label"].to_numpy() if "label" in table.columns else [float("nan")] * len(table)
        self.labels = torch.tensor(labels, dtype=torch.float32)
        self.diagnoses = None
        if diagnoses is not None:
            index = {name: i for i, name in enumerate(diagnoses)}
            self.diagnoses = torch.tensor([index[d] for d in table["diagnosis"]], dtype=torch.long)
        self.metadata = torch.from_numpy(metadata) if metadata is not None else None
        self.transform = transform
        self.tolerate_unreadable = tolerate_unreadable
        self.cache = cache
        self.decode = decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        """The item at an index, or at (index, seed): then the pipeline's randomness starts from seed."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is not None:
            self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        path = self.root / self.paths[index]
        item: dict[str, torch.Tensor | str] = {"label": self.labels[index]}
        if self.diagnoses is not None:
            item["diagnosis"] = self.diagnoses[index]
        if self.metadata is not None:
            item["metadata"] = self.metadata[index]
        try:
            pixels = self.cache.image(index) if self.cache is not None else self.decode(path)
            item["image"] = self.transform(image=pixels)["image"]
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            if not self.tolerate_unreadable:
                raise SkinclfError(
                    f"cannot read {path} ({reason}): it changed since the splits were checked; "
                    "restore or remove it and make the splits again"
                ) from error
            item["image"] = self.transform(image=BLANK)["image"]  # a stand-in of the right size
            item["error"] = reason
            return item
        if self.tolerate_unreadable:
            item["error"] = ""
        return item


def eval_dataset(
    preprocessing: Preprocessing,
    root: Path,
    table: pd.DataFrame,
    tolerate_unreadable: bool = False,
    metadata: np.ndarray | None = None,
    cache: ImageCache | None = None,
    diagnoses: list[str] | None = None,
) -> LesionDataset:
    """The images of a table as a model with this preprocessing sees them: validation and test in training, and
    every image evaluate, predict, explain and the error gallery read."""
    transform = eval_transform(preprocessing)
    return LesionDataset(
        root, table, transform, decoding(preprocessing), tolerate_unreadable, cache, diagnoses, metadata
    )
