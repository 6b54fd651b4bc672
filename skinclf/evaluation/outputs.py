"""Predicting a split with a checkpoint and writing a run's evaluation files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from skinclf.data.datamodule import LesionDataModule
from skinclf.evaluation.metrics import evaluate
from skinclf.evaluation.plots import plot_pr_curve
from skinclf.models import LesionClassifier


def predict_split(
    trainer: pl.Trainer, model: LesionClassifier, datamodule: LesionDataModule, split: str
) -> pd.DataFrame:
    """Probabilities of malignancy for every image of a split: columns path, label, probability."""
    loader = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}[split]()
    batches = trainer.predict(model, dataloaders=loader)
    return pd.DataFrame(
        {
            "path": loader.dataset.paths,
            "label": torch.cat([b["label"] for b in batches]).int().numpy(),
            "probability": torch.cat([b["probability"] for b in batches]).numpy(),
        }
    )


def write_json(path: Path, content: dict) -> None:
    """Write JSON in full under a temporary name, then rename: never a half-written file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2))
    os.replace(partial, path)


def write_evaluation(
    run_dir: Path,
    predictions: dict[str, pd.DataFrame],
    target_recalls: list[float],
    run_info: dict,
    logger: TensorBoardLogger | None = None,
    step: int = 0,
) -> dict:
    """Compute the metrics from val and test predictions; write metrics.json, CSVs and the PR plot."""
    val, test = predictions["val"], predictions["test"]
    metrics = evaluate(
        val["probability"].to_numpy(),
        val["label"].to_numpy(),
        test["probability"].to_numpy(),
        test["label"].to_numpy(),
        target_recalls,
    )
    metrics = {"run": run_info, **metrics}
    for split, table in predictions.items():
        table.to_csv(run_dir / f"predictions_{split}.csv", index=False)
    plot_pr_curve(
        {name: (t["probability"].to_numpy(), t["label"].to_numpy()) for name, t in predictions.items()},
        metrics["operating_points"],
        run_dir / "pr_curve.png",
        title=f"{run_info.get('name', '')}: precision-recall, val-chosen thresholds on test",
    )
    write_json(run_dir / "metrics.json", metrics)
    if logger is not None:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
        logger.log_metrics(scalars, step=step)
        for split, table in predictions.items():
            logger.experiment.add_pr_curve(
                f"{split}/pr_curve", table["label"].to_numpy(), table["probability"].to_numpy(np.float32), step
            )
    return metrics
