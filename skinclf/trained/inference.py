"""Running a trained classifier on images: the one place where predictions are made.

Training (on val and test) and every trained model (:mod:`skinclf.trained.model`) predict through here,
so that a probability means the same everywhere: the classifier's own eval pipeline, one device,
the model's ``predict_step``, and the same test-time views when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from skinclf.config.schema import DataSettings, TrainerSettings
from skinclf.data.dataset import LesionDataset, eval_dataset
from skinclf.data.metadata import encode
from skinclf.metrics.diagnosis import PROBABILITY_PREFIX
from skinclf.models import LesionClassifier
from skinclf.models.adaptation import adapt_batchnorm, class_mix_weights

#: Columns of a split table that say nothing about the image (its metadata columns are kept beside its predictions).
BOOKKEEPING_COLUMNS = ("group", "sha1")

#: Test-time augmentation (evaluation.tta): the views of an image whose probabilities are averaged,
#: as (quarter turns, flipped left-right): the image as it is; its four flips (by the two axes);
#: and all eight symmetries of the square (dermoscopy images have no upright).
VIEWS = {
    "none": [(0, False)],
    "flips": [(0, False), (0, True), (2, False), (2, True)],
    "flips_rot": [(turns, flipped) for turns in range(4) for flipped in (False, True)],
}


def view(images: torch.Tensor, turns: int, flipped: bool) -> torch.Tensor:
    """Images (N, C, H, W) turned by quarter turns and optionally flipped left-right."""
    images = images.flip(-1) if flipped else images
    return torch.rot90(images, turns, dims=(-2, -1)) if turns else images


class Predictor(pl.LightningModule):
    """A classifier at prediction time: its probabilities, averaged over the test-time views."""

    def __init__(self, classifier: LesionClassifier, tta: str = "none") -> None:
        super().__init__()
        self.classifier = classifier
        self.views = VIEWS[tta]

    def on_predict_start(self) -> None:
        self.classifier.on_predict_start()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        images = batch["image"]
        outputs = [
            self.classifier.predict_step({**batch, "image": view(images, turns, flipped)}, batch_idx)
            for turns, flipped in self.views
        ]
        averaged = [key for key in ("probability", "diagnosis_probabilities", "ood_score") if key in outputs[0]]
        return {**outputs[0], **{key: torch.stack([o[key] for o in outputs]).mean(0) for key in averaged}}


def inference_trainer(accelerator: str = "auto", precision: str = "32-true", progress_bar: bool = True) -> pl.Trainer:
    """A Trainer for prediction only: one device, no logger, no checkpoints, a progress bar unless not wanted."""
    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
    )


@dataclass(frozen=True)
class Inference:
    """Where and how images are predicted: a one-device Trainer, and the loader's batch size and workers."""

    trainer: pl.Trainer
    batch_size: int
    num_workers: int

    @classmethod
    def of(cls, data: DataSettings, trainer: TrainerSettings) -> Inference:
        """From the data group (batch_size, num_workers) and the trainer group (accelerator, precision)."""
        return cls(inference_trainer(trainer.accelerator, trainer.precision), data.batch_size, data.num_workers)


def predict_loader(
    trainer: pl.Trainer, classifier: LesionClassifier, loader: DataLoader, tta: str = "none"
) -> pd.DataFrame:
    """Probability of malignancy for every image of the loader's LesionDataset, in its order.

    Columns: path, label (when known), probability, and error where the dataset tolerates
    unreadable images.
    """
    dataset: LesionDataset = loader.dataset
    batches = trainer.predict(Predictor(classifier, tta), dataloaders=loader)
    table = pd.DataFrame({"path": dataset.paths})
    labels = torch.cat([b["label"] for b in batches]).numpy()
    if not np.isnan(labels).all():
        table["label"] = labels.astype(int)
    table["probability"] = torch.cat([b["probability"] for b in batches]).numpy()
    diagnoses = classifier.settings.head.diagnoses
    if diagnoses:  # task=diagnosis: the probability of each diagnosis too
        per_diagnosis = torch.cat([b["diagnosis_probabilities"] for b in batches]).numpy()
        for i, name in enumerate(diagnoses):
            table[PROBABILITY_PREFIX + name] = per_diagnosis[:, i]
    if "ood_score" in batches[0]:
        table["ood_score"] = torch.cat([b["ood_score"] for b in batches]).numpy()
    if dataset.tolerate_unreadable:
        table["error"] = [error for b in batches for error in b["error"]]
    described = dataset.table.drop(
        columns=[c for c in (*table.columns, *BOOKKEEPING_COLUMNS) if c in dataset.table.columns]
    )
    return pd.concat([table, described.reset_index(drop=True)], axis=1)


def predict_images(
    inference: Inference,
    classifier: LesionClassifier,
    root: Path,
    table: pd.DataFrame,
    tolerate_unreadable: bool = False,
    tta: str = "none",
) -> pd.DataFrame:
    """Probabilities for the images of a table, preprocessed as the classifier was trained (its metadata
    columns encoded as in training, for a model with metadata)."""
    dataset = images_as_seen(classifier, root, table, tolerate_unreadable)
    loader = DataLoader(dataset, batch_size=inference.batch_size, num_workers=inference.num_workers)
    return predict_loader(inference.trainer, classifier, loader, tta)


def images_as_seen(classifier: LesionClassifier, root: Path, table: pd.DataFrame, tolerant: bool = False) -> Dataset:
    """The images of a table as the classifier sees them: its preprocessing, and its metadata encoded as in training."""
    encoding = classifier.settings.metadata_encoding
    metadata = encode(table, encoding, "the table of images") if encoding else None
    return eval_dataset(classifier.settings.model.preprocessing, root, table, tolerant, metadata)


def adapted_to(
    inference: Inference,
    classifier: LesionClassifier,
    root: Path,
    table: pd.DataFrame,
    probabilities: np.ndarray,
    training_share: float,
) -> int:
    """Re-estimate the classifier's batch-norm statistics on the images of a table (see skinclf.models.adaptation),
    guarded for their class mix by its probabilities of them; returns how many layers were adapted."""
    weights = class_mix_weights(probabilities, training_share)
    dataset = images_as_seen(classifier, root, table)
    device = inference.trainer.strategy.root_device
    return adapt_batchnorm(classifier, dataset, weights, inference.batch_size, device)
