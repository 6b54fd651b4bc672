"""skinclf checkpoints: loading them with a clear error, and the validation predictions they carry.

A checkpoint written by ``skinclf.train`` is a Lightning checkpoint with, besides the weights and
the hyperparameters of :class:`LesionClassifier` (architecture, preprocessing):

- ``skinclf_version``: marks it as a skinclf checkpoint;
- ``LesionDataModule``: the data root and split folder of the run;
- ``skinclf_validation`` and ``skinclf_run`` (in the checkpoint training evaluated): path, label
  and probability of every validation image, from which a threshold for any target recall can be
  chosen later, and the run's name, architecture, augmentation and seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from skinclf.atomic import atomic_path
from skinclf.errors import SkinclfError
from skinclf.evaluation.curves import best_precision_at_recall, rank
from skinclf.models import LesionClassifier
from skinclf.models.module import VERSION_KEY

VALIDATION_KEY = "skinclf_validation"
RUN_KEY = "skinclf_run"
DATA_KEY = "LesionDataModule"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded with ``weights_only`` (no code runs from the file)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SkinclfError(f"checkpoint {path} does not exist: name a .ckpt file written by skinclf.train")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SkinclfError(f"cannot load {path} as a checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or VERSION_KEY not in checkpoint:
        raise SkinclfError(
            f"{path} is not a skinclf checkpoint (no '{VERSION_KEY}' entry): "
            "expected a .ckpt file from the checkpoints/ folder of a skinclf.train run"
        )
    return checkpoint


def load_classifier(path: str | Path) -> tuple[LesionClassifier, dict[str, Any]]:
    """The trained classifier of a skinclf checkpoint, in eval mode, and the checkpoint's contents."""
    checkpoint = read_checkpoint(path)
    model = LesionClassifier(**checkpoint["hyper_parameters"], load_pretrained_weights=False)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise SkinclfError(f"the weights in {path} do not fit its own architecture: {error}") from error
    return model.eval(), checkpoint


def store_validation(path: str | Path, predictions: pd.DataFrame, run_info: dict[str, Any]) -> None:
    """Store validation predictions (path, label, probability) and run info in the checkpoint, atomically."""
    path = Path(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint[RUN_KEY] = run_info
    checkpoint[VALIDATION_KEY] = {
        "path": predictions["path"].astype(str).tolist(),
        "label": predictions["label"].astype(int).tolist(),
        "probability": predictions["probability"].astype(float).tolist(),
    }
    with atomic_path(path) as partial:
        torch.save(checkpoint, partial)


def stored_validation(checkpoint: dict[str, Any]) -> pd.DataFrame | None:
    """The validation predictions stored in a checkpoint, or None."""
    stored = checkpoint.get(VALIDATION_KEY)
    return pd.DataFrame(stored) if stored else None


def stored_run_info(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Name, architecture, augmentation and seed of the run that wrote the checkpoint, if stored."""
    return dict(checkpoint.get(RUN_KEY, {}))


def threshold_for_recall(validation: pd.DataFrame, target_recall: float) -> float:
    """The threshold with the highest validation precision among those reaching target_recall."""
    ranked = rank(validation["probability"].to_numpy(), validation["label"].to_numpy())
    return float(best_precision_at_recall(ranked, target_recall)[1][0])


def thresholds_for_recalls(validation: pd.DataFrame, target_recalls: list[float]) -> dict[str, float]:
    """{target recall as text: threshold} for each target."""
    return {f"{t:g}": threshold_for_recall(validation, t) for t in target_recalls}


def data_location(checkpoint: dict[str, Any]) -> tuple[Path, Path] | None:
    """(data root, split folder) of the run that wrote the checkpoint, if recorded."""
    data = checkpoint.get(DATA_KEY)
    return (Path(data["root"]), Path(data["split_dir"])) if data else None
