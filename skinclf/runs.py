"""The folder a run leaves (a training run, an evaluation, an ensemble): its files' names, reading it back, and the
record of who its model is (metrics.json's ``run``, which every checkpoint of a training run also holds).

Only this module knows the names of a run folder's files; reports, ensembles and trained models read runs through it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skinclf.config.schema import TrainConfig
from skinclf.core.errors import SkinclfError

#: A run folder's files and folders.
METRICS = "metrics.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_FIGURE = "report.png"
PR_CURVE = "pr_curve.png"
ROC_CURVE = "roc_curve.png"
RELIABILITY = "reliability.png"
RISK_COVERAGE = "risk_coverage.png"
CONFUSION_MATRIX = "confusion_matrix.png"
ERRORS = "errors.png"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
EXPLANATIONS = "explanations"
#: Where a run that left a source out (cv.leave_out=source) judges it.
LEFT_OUT = "left_out"


def predictions_file(split: str) -> str:
    """The CSV of a split's predictions (val, test)."""
    return f"predictions_{split}.csv"


#: metrics.json of an ensemble says so in run.kind.
ENSEMBLE = "ensemble"


# -- who a model is ----------------------------------------------------------------------------------


def training_identity(settings: TrainConfig, weights_origin: dict[str, Any] | None) -> dict[str, Any]:
    """Who a training run is: what metrics.json and every checkpoint record of it; ``weights_origin``: where its
    starting weights came from (skinclf.models.backbones.load_pretrained), None from random initialisation."""
    return {
        "name": settings.name,
        "arch": settings.model.arch,
        **({"library": settings.model.library} if settings.model.library != "torchvision" else {}),
        "weights": settings.model.weights,
        **({"weights_origin": weights_origin} if weights_origin else {}),
        "aug": settings.aug.name,
        "task": settings.task.name,
        "seed": settings.seed,
        "callbacks": sorted(settings.callbacks),
        **({"cv": {"folds": settings.cv.folds, "fold": settings.cv.fold}} if settings.cv.folds else {}),
        **({"cv": {"leave_out": settings.cv.leave_out, "fold": settings.cv.fold}} if settings.cv.leave_out else {}),
        "recipe": training_recipe(settings),
        "evaluation": dataclasses.asdict(settings.evaluation),
    }


def training_recipe(settings: TrainConfig) -> dict[str, Any]:
    """How the model was trained, in words a model card shows."""
    optim, preprocessing = settings.optim, settings.model.preprocessing
    optimizer = optim.optimizer.rsplit(".", 1)[-1]
    return {
        "optimizer": f"{optimizer}, learning rate {optim.lr:g}, warmup {optim.warmup_epochs:g} epoch(s), cosine decay",
        "epochs": settings.trainer.max_epochs,
        "batch": settings.data.batch_size,
        "images": f"shorter side {preprocessing.resize_size} px, centre {preprocessing.crop_size} px",
        "colour constancy": preprocessing.color_constancy,
        "augmentation": settings.aug.name,
        "loss": "cross-entropy over the diagnoses" if settings.task.name == "diagnosis" else "BCE with logits",
    }


def ensemble_identity(members: list[Run], combine: str) -> dict[str, Any]:
    """Who an ensemble of the member runs is: its rule, its members and their spread on test."""
    tested = [m.metrics["test/auroc"] for m in members]
    return {
        "kind": ENSEMBLE,
        "name": f"ensemble of {len(members)}",
        "combine": combine,
        "members": [member_figures(m) for m in members],
        "members_test_auroc": {"mean": float(np.mean(tested)), "sd": float(np.std(tested, ddof=1))},
    }


def member_figures(member: Run) -> dict:
    """What the ensemble's metrics.json records of a member."""
    run = member.metrics.get("run", {})
    return {
        "run_folder": str(member.folder.resolve()),
        **{key: run[key] for key in ("name", "arch", "seed", "cv") if key in run},
        **{key: member.metrics.get(key) for key in ("val/auroc", "test/auroc", "test/auprc")},
    }


# -- reading run folders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A finished run's folder (a training run, an evaluation or an ensemble): its metrics.json and predictions."""

    folder: Path
    metrics: dict

    @cached_property
    def val(self) -> pd.DataFrame:
        return self._predictions("val")

    @cached_property
    def test(self) -> pd.DataFrame:
        return self._predictions("test")

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint the run evaluated; None for evaluations and ensembles, which trained nothing."""
        recorded = self.metrics.get("run", {}).get("checkpoint")
        if recorded is None or not (self.folder / CHECKPOINTS).is_dir():
            return None
        return self.folder / recorded

    @property
    def recorded_evaluation(self) -> dict[str, Any]:
        """The evaluation settings it was evaluated with."""
        return self.metrics["run"]["evaluation"]

    @property
    def tta(self) -> str:
        """The test-time views its predictions were made with (evaluation.tta)."""
        return self.recorded_evaluation["tta"]

    def _predictions(self, split: str) -> pd.DataFrame:
        path = self.folder / predictions_file(split)
        if not path.is_file():
            raise SkinclfError(f"{self.folder} is not a finished run: {path.name} is missing")
        return pd.read_csv(path, dtype={"path": str})


def read_run(folder: Path) -> Run:
    metrics = folder / METRICS
    if not metrics.is_file():
        raise SkinclfError(f"{folder} is not the folder of a finished run: it has no metrics.json")
    return Run(folder, json.loads(metrics.read_text()))


def find_runs(folders: Sequence[str | Path]) -> list[Run]:
    """Every run (a folder holding metrics.json) at or below the folders, in order."""
    runs = []
    for folder in map(Path, folders):
        folder = folder.expanduser()
        if not folder.is_dir():
            raise SkinclfError(f"{folder} is not a folder: name run or multirun folders in runs=[...]")
        found = sorted(p.parent for p in folder.rglob(METRICS))
        if not found:
            raise SkinclfError(f"{folder} holds no run (no metrics.json below it)")
        runs += [read_run(run_folder) for run_folder in found]
    return runs


def is_ensemble(path: Path) -> bool:
    """True for a folder written by skinclf.ensemble."""
    metrics = path / METRICS
    return (
        path.is_dir() and metrics.is_file() and json.loads(metrics.read_text()).get("run", {}).get("kind") == ENSEMBLE
    )


@dataclass(frozen=True)
class Runs:
    """Run folders a report is about, each labelled by its path below their common folder."""

    folders: list[Path]

    @classmethod
    def of(cls, folders: list[Path]) -> Runs:
        return cls([folder.resolve() for folder in folders])  # given relative or absolute: labelled alike

    @cached_property
    def metrics(self) -> list[dict]:
        return [json.loads((folder / METRICS).read_text()) for folder in self.folders]

    @property
    def common(self) -> Path:
        return Path(os.path.commonpath(self.folders))

    @property
    def labels(self) -> list[str]:
        common = self.common
        return [f.name if f == common else f.relative_to(common).as_posix() for f in self.folders]

    def test_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each run's test scores and labels, for curves drawn over each other."""
        curves = {}
        for label, folder, metrics in zip(self.labels, self.folders, self.metrics, strict=True):
            predictions = folder / predictions_file("test")
            if predictions.is_file():
                test = pd.read_csv(predictions)
                name = metrics.get("run", {}).get("name", label)
                curves[f"{label} ({name})"] = (test["probability"].to_numpy(), test["label"].to_numpy())
        return curves
