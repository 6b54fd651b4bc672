"""skinclf checkpoints: what they carry besides the weights, and reading them back with a clear error.

A checkpoint written by ``skinclf.train`` is a Lightning checkpoint (the weights, and the settings of
:class:`LesionClassifier`: its architecture and preprocessing) whose other entries
:class:`~skinclf.training.callbacks.CheckpointContents` writes, the one writer of them:

- ``skinclf_version``: the skinclf version that wrote it; a checkpoint of another major or minor version is refused;
- ``skinclf_run``: the run's name, architecture, augmentation, seed, recipe and evaluation settings;
- ``skinclf_data``: the data root and split folder of the run (and its fold, under cross-validation);
- ``skinclf_novelty`` (in the checkpoint a run evaluated): the early statistics of its training images, which score
  how unlike them an image is, and of its validation images, which a set is tested against (skinclf.models.novelty);
- ``skinclf_validation`` (in every checkpoint of a validated epoch): path, label and probability of every
  validation image, from which a threshold for any target recall can be chosen later;
  ``skinclf_validation_<tta>`` the same predicted with test-time views (evaluation.tta), in the checkpoint a run
  with them evaluated. A checkpoint without them gets them from the run's validation split (skinclf.trained).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

import skinclf
from skinclf.core.atomic import load_torch
from skinclf.core.errors import SkinclfError
from skinclf.data.folds import fold_tables, leave_source_out, read_folds
from skinclf.data.splits import load_splits
from skinclf.metrics.diagnosis import PROBABILITY_PREFIX
from skinclf.models import LesionClassifier
from skinclf.models.novelty import Familiarity

VERSION_KEY = "skinclf_version"
RUN_KEY = "skinclf_run"
DATA_KEY = "skinclf_data"
VALIDATION_KEY = "skinclf_validation"
NOVELTY_KEY = "skinclf_novelty"


def release(version: str) -> str:
    """The major.minor of a version: checkpoints of one release read alike."""
    return ".".join(version.split(".")[:2])


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded with ``weights_only`` (no code runs from the file)."""
    path = Path(path).expanduser()
    checkpoint = load_torch(path, "checkpoint", "name a .ckpt file written by skinclf.train")
    if not isinstance(checkpoint, dict) or VERSION_KEY not in checkpoint:
        raise SkinclfError(
            f"{path} is not a skinclf checkpoint (no '{VERSION_KEY}' entry): "
            "expected a .ckpt file from the checkpoints/ folder of a skinclf.train run"
        )
    written_by = str(checkpoint[VERSION_KEY])
    if release(written_by) != release(skinclf.__version__):
        raise SkinclfError(
            f"{path} was written by skinclf {written_by}, and this is skinclf {skinclf.__version__}: checkpoints are "
            f"read by the release that wrote them (install skinclf=={written_by} to use it), or train the model again"
        )
    return checkpoint


def load_classifier(path: str | Path) -> tuple[LesionClassifier, dict[str, Any]]:
    """The trained classifier of a skinclf checkpoint, in eval mode, and the checkpoint's contents."""
    checkpoint = read_checkpoint(path)
    model = LesionClassifier(**checkpoint["hyper_parameters"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise SkinclfError(f"the weights in {path} do not fit its own architecture: {error}") from error
    if NOVELTY_KEY in checkpoint:
        model.novelty = Familiarity(**checkpoint[NOVELTY_KEY])
    return model.eval(), checkpoint


def validation_record(predictions: pd.DataFrame) -> dict[str, list]:
    """Validation predictions as a checkpoint stores them: path, label, probability, and for a diagnosis head the
    true diagnosis and each diagnosis' probability (what temperature scaling is fitted on)."""
    record = {
        "path": predictions["path"].astype(str).tolist(),
        "label": predictions["label"].astype(int).tolist(),
        "probability": predictions["probability"].astype(float).tolist(),
        **({"ood_score": predictions["ood_score"].astype(float).tolist()} if "ood_score" in predictions else {}),
    }
    per_diagnosis = [c for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)]
    if per_diagnosis and "diagnosis" in predictions.columns:
        record["diagnosis"] = predictions["diagnosis"].astype(str).tolist()
        record |= {column: predictions[column].astype(float).tolist() for column in per_diagnosis}
    return record


def validation_key(tta: str) -> str:
    """Where a checkpoint keeps its validation predictions made with the test-time views ``tta``."""
    return VALIDATION_KEY if tta == "none" else f"{VALIDATION_KEY}_{tta}"


def stored_validation(checkpoint: dict[str, Any], tta: str = "none") -> pd.DataFrame | None:
    """The validation predictions (made with the views ``tta``) stored in a checkpoint, or None; for a diagnosis
    head, None unless they hold each diagnosis' probability."""
    stored = checkpoint.get(validation_key(tta))
    diagnoses = checkpoint["hyper_parameters"]["settings"]["head"]["diagnoses"]
    if not stored or (diagnoses and "diagnosis" not in stored):
        return None
    return pd.DataFrame(stored)


def stored_run_info(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Name, architecture, augmentation and seed of the run that wrote the checkpoint."""
    return dict(checkpoint.get(RUN_KEY, {}))


def data_location(checkpoint: dict[str, Any]) -> tuple[Path, Path] | None:
    """(data root, split folder) of the run that wrote the checkpoint, if recorded."""
    data = checkpoint.get(DATA_KEY)
    return (Path(data["root"]), Path(data["split_dir"])) if data else None


def run_split(checkpoint: dict[str, Any], split: str, root: str | None = None) -> tuple[Path, pd.DataFrame]:
    """(data root, table) of a split of the run that wrote the checkpoint; root= overrides a root that moved."""
    location = data_location(checkpoint)
    if location is None:
        raise SkinclfError("the checkpoint does not record its data root: pass input=<folder or CSV> instead")
    recorded_root, split_dir = location
    tables, _ = load_splits(split_dir)
    data = checkpoint[DATA_KEY]
    if data.get("cv_folds"):  # a cross-validation run: its train and val are those of its fold
        tables = fold_tables(tables, read_folds(split_dir, tables, data["cv_folds"]), data["cv_fold"])
    if data.get("left_out"):  # a source left out: its images are the left_out split
        tables = leave_source_out(tables, data["left_out"])
    return (Path(root).expanduser() if root else recorded_root), tables[split]
