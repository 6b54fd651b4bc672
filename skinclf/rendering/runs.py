"""The run folders a report is about: their metrics.json, labels and test predictions."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from skinclf.metrics.plots import Curves


@dataclass(frozen=True)
class Runs:
    """Run folders (training runs, evaluations, ensembles), each labelled by its path below their common folder."""

    folders: list[Path]

    @classmethod
    def of(cls, folders: list[Path]) -> Runs:
        return cls([folder.resolve() for folder in folders])  # given relative or absolute: labelled alike

    @cached_property
    def metrics(self) -> list[dict]:
        return [json.loads((folder / "metrics.json").read_text()) for folder in self.folders]

    @property
    def common(self) -> Path:
        return Path(os.path.commonpath(self.folders))

    @property
    def labels(self) -> list[str]:
        common = self.common
        return [f.name if f == common else f.relative_to(common).as_posix() for f in self.folders]

    def test_curves(self) -> Curves:
        """Each run's test scores and labels, for curves drawn over each other."""
        curves = {}
        for label, folder, metrics in zip(self.labels, self.folders, self.metrics, strict=True):
            predictions = folder / "predictions_test.csv"
            if predictions.is_file():
                test = pd.read_csv(predictions)
                name = metrics.get("run", {}).get("name", label)
                curves[f"{label} ({name})"] = (test["probability"].to_numpy(), test["label"].to_numpy())
        return curves
