"""Running a trained classifier on images outside training: shared by evaluate and predict."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from skinclf.data.dataset import LesionDataset
from skinclf.data.transforms import eval_pipeline
from skinclf.evaluation.outputs import predict_dataset
from skinclf.models import LesionClassifier


def inference_trainer(accelerator: str = "auto", precision: str = "32-true") -> pl.Trainer:
    """A Trainer for prediction only: one device, no logger, no checkpoints, a progress bar."""
    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


def predict_images(
    trainer: pl.Trainer,
    model: LesionClassifier,
    root: Path,
    table: pd.DataFrame,
    batch_size: int = 64,
    num_workers: int = 2,
    tolerate_unreadable: bool = False,
) -> pd.DataFrame:
    """Probabilities for the images of a table, preprocessed as the checkpoint says."""
    transform = eval_pipeline(model.hparams.resize_size, model.hparams.crop_size)
    dataset = LesionDataset(root, table, transform, tolerate_unreadable=tolerate_unreadable)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    return predict_dataset(trainer, model, loader)
