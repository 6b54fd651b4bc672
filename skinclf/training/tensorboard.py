"""A finished run's results in its TensorBoard log: test scalars, the final PR curves, the most confident errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from skinclf.evaluation.outputs import ERROR_GRID_SIZE, Errors


def error_grid(errors: Errors, count: int = ERROR_GRID_SIZE) -> torch.Tensor:
    """One image grid, a row per kind of error (blank where there are fewer errors than count)."""
    tiles = [[torch.from_numpy(image).permute(2, 0, 1) for image in images] for _, images in errors.values()]
    blank = torch.zeros_like(next(tile for row in tiles for tile in row))
    padded = [tile for row in tiles for tile in row + [blank] * (count - len(row))]
    return make_grid(torch.stack(padded), nrow=count, padding=2)


def log_results(
    logger: TensorBoardLogger, metrics: dict, predictions: dict[str, pd.DataFrame], errors: Errors, step: int
) -> None:
    """Test scalars, the final PR curves and the error grid."""
    logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)}, step=step)
    for split, table in predictions.items():
        labels, scores = table["label"].to_numpy(), table["probability"].to_numpy(np.float32)
        logger.experiment.add_pr_curve(f"{split}/pr_curve_final", labels, scores, step)
    logger.experiment.add_image("test/most_confident_errors", error_grid(errors), step)
