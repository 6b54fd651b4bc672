"""Lightning plugins and callbacks: a run's files whole, its numbers finite, its checkpoints self-contained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO

import skinclf
from skinclf.core.atomic import save_torch
from skinclf.core.errors import SkinclfError
from skinclf.models.checkpoints import (
    DATA_KEY,
    NOVELTY_KEY,
    RUN_KEY,
    VALIDATION_KEY,
    VERSION_KEY,
    validation_key,
    validation_record,
)
from skinclf.models.novelty import Familiarity


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint under a temporary name in its own folder, then renames it.

    A kill at any moment leaves either the previous checkpoint or the new one, never half a
    file. (Lightning's own save goes through a temporary file in the system temp folder, which
    is a copy, not a rename, when that lies on another file system.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch(checkpoint, path)


class FiniteLossGuard(pl.Callback):
    """Stops training with a clear message when the loss becomes NaN or infinite.

    The check reads the loss back from the device only every ``every_n_steps`` steps and at the
    end of each epoch, before any checkpoint of that epoch is written, so that a checkpoint never
    holds weights trained through a non-finite loss.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self._bad_steps: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        bad = (~torch.isfinite(loss.detach())).int()
        self._bad_steps = bad if self._bad_steps is None else self._bad_steps + bad
        last_of_epoch = batch_idx + 1 == trainer.num_training_batches
        if (trainer.global_step % self.every_n_steps == 0 or last_of_epoch) and self._bad_steps.item() > 0:
            saved = sorted({c.best_model_path for c in trainer.checkpoint_callbacks if c.best_model_path})
            raise SkinclfError(
                f"the training loss became NaN or infinite (epoch {trainer.current_epoch}, by step "
                f"{trainer.global_step}); training stopped, and the checkpoints saved before it are kept "
                f"({', '.join(saved) or 'none yet'}). Lower optim.lr, check the images, or train in 32-bit "
                "(trainer.precision=32-true)."
            )


class CheckpointContents(pl.Callback):
    """The one writer of what a skinclf checkpoint holds besides Lightning's own (see skinclf.models.checkpoints):
    the skinclf version, the run's description, where its data is, and for a validated epoch its validation
    predictions, so that evaluate, predict and export can choose thresholds from any checkpoint of a run (last.ckpt
    as well as the best) without the data."""

    def __init__(self, run_info: dict[str, Any]) -> None:
        self.run_info = run_info

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[VERSION_KEY] = skinclf.__version__
        checkpoint[RUN_KEY] = self.run_info
        datamodule = trainer.datamodule
        if datamodule is None:
            return
        checkpoint[DATA_KEY] = datamodule.location()
        scores, paths = module.validation_scores, datamodule.datasets["val"].paths
        if scores is not None and scores.epoch == trainer.current_epoch and len(scores.labels) == len(paths):
            predictions = {"path": paths, "label": scores.labels.numpy(), "probability": scores.probabilities.numpy()}
            checkpoint[VALIDATION_KEY] = validation_record(pd.DataFrame(predictions))

    @staticmethod
    def add_evaluated(
        path: Path, checkpoint: dict[str, Any], validation: pd.DataFrame, tta: str, novelty: Familiarity | None
    ) -> None:
        """Store, in the checkpoint a run evaluates (its contents, as read from path), atomically: the validation
        predictions made with the views ``tta`` (with their ood_score), on which later commands choose thresholds and
        referral, and the novelty detector fitted on the training images."""
        checkpoint[validation_key(tta)] = validation_record(validation)
        if novelty is not None:
            checkpoint[NOVELTY_KEY] = novelty.state()
        save_torch(checkpoint, path)
