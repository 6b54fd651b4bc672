"""Lightning plugins and callbacks that keep a run's files whole and its numbers finite."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO

from skinclf.atomic import atomic_path
from skinclf.errors import SkinclfError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint under a temporary name in its own folder, then renames it.

    A kill at any moment leaves either the previous checkpoint or the new one, never half a
    file. (Lightning's own save goes through a temporary file in the system temp folder, which
    is a copy, not a rename, when that lies on another file system.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as partial, open(partial, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())


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
