"""Where a run is tracked: Lightning's loggers (logger=tensorboard|csv|mlflow|wandb, several at once),
given the composed config, the curves (Lightning logs them), the test metrics and the run's files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from pytorch_lightning.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid

from skinclf.core.errors import SkinclfError
from skinclf.reports.outputs import ERROR_GRID_SIZE, Errors
from skinclf.runs import METRICS, REPORT_MD, predictions_file

#: The files of a finished run that loggers with artifacts receive (the chosen checkpoint is Lightning's log_model).
ARTIFACTS = (METRICS, REPORT_MD, predictions_file("val"), predictions_file("test"), "*.png")


def build_loggers(loggers: dict[str, Any], save_dir: Path) -> list[Logger]:
    """The selected loggers (logger=...); those that keep files in a folder (tensorboard, csv, wandb) keep them
    below save_dir, MLflow where its tracking_uri says."""
    built = []
    for name, config in loggers.items():
        if not isinstance(config, dict) or "_target_" not in config:
            raise SkinclfError(f"logger.{name} is not a logger: select one with logger=[...] (conf/logger/*.yaml)")
        try:
            built.append(instantiate(config, save_dir=str(save_dir)))
        except InstantiationException as error:
            if isinstance(error.__cause__, ImportError):
                raise SkinclfError(
                    f"logger={name} needs its optional package: pip install 'skinclf[{name}]'"
                ) from error
            raise SkinclfError(f"logger={name} cannot start: {error.__cause__ or error}") from error
    return built


def config_params(settings: Any) -> dict[str, Any]:
    """The composed config (the typed settings of a command), for the loggers' params (each flattens it its own way)."""
    return dataclasses.asdict(settings)


def flat_metrics(metrics: dict) -> dict[str, float]:
    """The numbers of metrics.json under names every tracker accepts: intervals as <key>_low/_high,
    each operating point as recall_<target>/<figure>."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            flat[key] = float(value)
        elif key.endswith("_ci") and isinstance(value, list) and None not in value:
            flat[f"{key}_low"], flat[f"{key}_high"] = (float(v) for v in value)
    for point in metrics.get("operating_points", []):
        for figure, value in point.items():
            if figure != "target_recall" and isinstance(value, float | int) and not isinstance(value, bool):
                flat[f"recall_{point['target_recall']:g}/{figure}"] = float(value)
    return flat


def error_grid(errors: Errors, count: int = ERROR_GRID_SIZE) -> torch.Tensor:
    """One image grid, a row per kind of error (blank where there are fewer errors than count)."""
    tiles = [[torch.from_numpy(image).permute(2, 0, 1) for image in images] for _, images in errors.values()]
    blank = torch.zeros_like(next(tile for row in tiles for tile in row))
    padded = [tile for row in tiles for tile in row + [blank] * (count - len(row))]
    return make_grid(torch.stack(padded), nrow=count, padding=2)


def run_files(folder: Path) -> list[Path]:
    return sorted({path for pattern in ARTIFACTS for path in folder.glob(pattern)})


def log_results(
    loggers: list[Logger],
    metrics: dict,
    predictions: dict[str, pd.DataFrame],
    errors: Errors,
    step: int,
    folder: Path,
) -> None:
    """The test metrics to every logger; the final PR curves and the error grid to TensorBoard; the
    run's files to the loggers that keep artifacts. Each logger is finalised: nothing is logged after this."""
    for logger in loggers:
        logger.log_metrics(flat_metrics(metrics), step=step)
        if isinstance(logger, TensorBoardLogger):
            for split, table in predictions.items():
                labels, scores = table["label"].to_numpy(), table["probability"].to_numpy(np.float32)
                logger.experiment.add_pr_curve(f"{split}/pr_curve_final", labels, scores, step)
            logger.experiment.add_image("test/most_confident_errors", error_grid(errors), step)
        elif isinstance(logger, MLFlowLogger):
            for path in run_files(folder):
                logger.experiment.log_artifact(logger.run_id, str(path))
        logger.save()
        if isinstance(logger, WandbLogger):
            for path in run_files(folder):
                logger.experiment.save(str(path), base_path=str(folder), policy="now")
            logger.experiment.finish()  # Lightning leaves the W&B run open for more; nothing more comes
        else:
            logger.finalize("success")
