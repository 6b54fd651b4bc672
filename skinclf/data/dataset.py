"""A torch Dataset over one split table."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import pandas as pd
import torch
from torch.utils.data import Dataset

from skinclf.data.images import load_rgb
from skinclf.errors import SkinclfError


class LesionDataset(Dataset):
    """Images listed in a split table (path relative to root, label): yields (uint8 CHW image, float label)."""

    def __init__(self, root: Path, table: pd.DataFrame, transform: A.Compose) -> None:
        self.root = root
        self.paths = table["path"].tolist()
        self.labels = torch.tensor(table["label"].to_numpy(), dtype=torch.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.root / self.paths[index]
        try:
            image = load_rgb(path)
        except Exception as error:
            raise SkinclfError(
                f"cannot read {path} ({type(error).__name__}: {error}): it changed since the splits "
                "were checked; restore or remove it and make the splits again"
            ) from error
        return self.transform(image=image)["image"], self.labels[index]
