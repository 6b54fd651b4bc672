"""Trained models (a checkpoint, or an ensemble of runs) and what is done with them: inference, maps of where they
looked (explain), and what an export of them takes."""

from __future__ import annotations

from pathlib import Path

from skinclf.core.errors import SkinclfError
from skinclf.runs import is_ensemble
from skinclf.trained.checkpoint import CheckpointModel
from skinclf.trained.ensemble import EnsembleModel
from skinclf.trained.model import TrainedModel

__all__ = ["CheckpointModel", "EnsembleModel", "TrainedModel", "load_model"]


def load_model(path: str | Path) -> TrainedModel:
    """The trained model at path: a checkpoint written by skinclf.train, or a folder written by skinclf.ensemble."""
    path = Path(path).expanduser()
    if path.is_dir() and not is_ensemble(path):
        raise SkinclfError(
            f"{path} is a folder but not one written by skinclf.ensemble: name a .ckpt file (a run's "
            "checkpoints/last.ckpt) or an ensemble's folder"
        )
    return EnsembleModel.of_folder(path) if path.is_dir() else CheckpointModel(path)
