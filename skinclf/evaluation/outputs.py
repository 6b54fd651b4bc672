"""Predicting with a classifier and writing an evaluation's files: metrics.json, CSVs, plots, TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader
from torchvision.utils import make_grid

from skinclf.atomic import atomic_path
from skinclf.data.dataset import LesionDataset
from skinclf.evaluation.bootstrap import BootstrapSettings
from skinclf.evaluation.metrics import evaluate
from skinclf.evaluation.plots import plot_pr_curves, plot_reliability, plot_roc_curves
from skinclf.models import LesionClassifier

#: How many of the most confident misses of each kind the error grid shows.
ERROR_GRID_SIZE = 8


def predict_dataset(trainer: pl.Trainer, model: LesionClassifier, loader: DataLoader) -> pd.DataFrame:
    """Probability of malignancy for every image of the loader's LesionDataset, in its order.

    Columns: path, label (when known), probability, and error where the dataset tolerates
    unreadable images.
    """
    dataset: LesionDataset = loader.dataset
    batches = trainer.predict(model, dataloaders=loader)
    table = pd.DataFrame({"path": dataset.paths})
    labels = torch.cat([b["label"] for b in batches]).numpy()
    if not np.isnan(labels).all():
        table["label"] = labels.astype(int)
    table["probability"] = torch.cat([b["probability"] for b in batches]).numpy()
    if dataset.tolerate_unreadable:
        table["error"] = [error for b in batches for error in b["error"]]
    return table


def write_json(path: Path, content: dict) -> None:
    """Write JSON atomically: never a half-written file."""
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(content, indent=2))


def write_evaluation(
    run_dir: Path,
    predictions: dict[str, pd.DataFrame],
    target_recalls: list[float],
    bootstrap: BootstrapSettings | None,
    run_info: dict,
    images: tuple[Path, object],
    logger: TensorBoardLogger | None = None,
    step: int = 0,
) -> dict:
    """Metrics from val (threshold choice) and test predictions; writes every file of an evaluation.

    metrics.json, predictions_<split>.csv, pr_curve.png, roc_curve.png, reliability.png and
    errors.png (the most confident errors, whose images are read from ``images``: the root the
    test paths are relative to and the eval pipeline); the same to TensorBoard if a logger is given.
    """
    val, test = predictions["val"], predictions["test"]
    metrics = evaluate(
        val["probability"].to_numpy(),
        val["label"].to_numpy(),
        test["probability"].to_numpy(),
        test["label"].to_numpy(),
        target_recalls,
        bootstrap,
    )
    metrics = {"run": run_info, **metrics}
    for split, table in predictions.items():
        with atomic_path(run_dir / f"predictions_{split}.csv") as partial:
            table.to_csv(partial, index=False)
    name = run_info.get("name", "")
    curves = {
        f"{split} ({int(t['label'].sum())} malignant of {len(t)})": (t["probability"].to_numpy(), t["label"].to_numpy())
        for split, t in predictions.items()
    }
    plot_pr_curves(curves, run_dir / "pr_curve.png", f"{name}: precision-recall", metrics["operating_points"])
    plot_roc_curves(curves, run_dir / "roc_curve.png", f"{name}: ROC")
    plot_reliability(
        test["probability"].to_numpy(),
        test["label"].to_numpy(),
        run_dir / "reliability.png",
        f"{name}: test calibration",
    )
    errors = most_confident_errors(*images, test)
    save_error_figure(errors, run_dir / "errors.png")
    write_json(run_dir / "metrics.json", metrics)
    if logger is not None:
        log_to_tensorboard(logger, metrics, predictions, errors, step)
    return metrics


#: Kinds of confident error: rows of the test predictions, images of them.
Errors = dict[str, tuple[pd.DataFrame, list[torch.Tensor]]]


def most_confident_errors(root: Path, transform: object, test: pd.DataFrame, count: int = ERROR_GRID_SIZE) -> Errors:
    """The malignant lesions scored lowest and the benign ones scored highest, with their images."""
    kinds = {
        "malignant, scored lowest": test[test["label"] == 1].nsmallest(count, "probability"),
        "benign, scored highest": test[test["label"] == 0].nlargest(count, "probability"),
    }
    errors = {}
    for kind, rows in kinds.items():
        dataset = LesionDataset(root, rows, transform, tolerate_unreadable=True)
        errors[kind] = (rows, [dataset[i]["image"] for i in range(len(rows))])
    return errors


def error_grid(errors: Errors, count: int = ERROR_GRID_SIZE) -> torch.Tensor:
    """One image grid, a row per kind of error, for TensorBoard."""
    blank = torch.zeros_like(next(image for _, row in errors.values() for image in row))
    padded = [image for _, row in errors.values() for image in row + [blank] * (count - len(row))]
    return make_grid(torch.stack(padded), nrow=count, padding=2)


def save_error_figure(errors: Errors, path: Path, count: int = ERROR_GRID_SIZE) -> Path:
    """The most confident errors as a PNG, each image with its probability."""
    figure = Figure(figsize=(1.5 * count, 1.8 * len(errors) + 0.4), layout="constrained")
    axes = figure.subplots(len(errors), count, squeeze=False)
    for axis_row, (kind, (rows, images)) in zip(axes, errors.items(), strict=True):
        axis_row[0].set_ylabel(kind, fontsize=8)
        for axis, image, probability in zip(axis_row, images, rows["probability"], strict=False):
            axis.imshow(image.permute(1, 2, 0).numpy())
            axis.set_title(f"p = {probability:.3f}", fontsize=8)
        for axis in axis_row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle("most confident errors on test")
    figure.savefig(path, dpi=110)
    return path


def log_to_tensorboard(
    logger: TensorBoardLogger, metrics: dict, predictions: dict[str, pd.DataFrame], errors: Errors, step: int
) -> None:
    """Test scalars, the final PR curves and the error grid."""
    logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)}, step=step)
    for split, table in predictions.items():
        labels, scores = table["label"].to_numpy(), table["probability"].to_numpy(np.float32)
        logger.experiment.add_pr_curve(f"{split}/pr_curve_final", labels, scores, step)
    logger.experiment.add_image("test/most_confident_errors", error_grid(errors), step)
