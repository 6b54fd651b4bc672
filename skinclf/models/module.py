"""The LightningModule: a torchvision backbone with one logit, trained with BCE, Adam and warmup-cosine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics.aggregation import CatMetric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

import skinclf
from skinclf.models.backbones import build_backbone, load_pretrained
from skinclf.models.schedule import WarmupCosine

#: Checkpoint entry that marks a checkpoint as written by this class, with the package version.
VERSION_KEY = "skinclf_version"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PixelNormalize(nn.Module):
    """(pixels / 255 - mean) / std for images of pixel values 0-255, uint8 or float."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std


class LesionClassifier(pl.LightningModule):
    """Benign (0) vs malignant (1) from images of pixel values 0-255, uint8 or float, (B, 3, H, W).

    The preprocessing a checkpoint needs at inference is part of its hyperparameters: resize and
    crop sizes for the image pipeline, mean and std applied here as the first step of forward.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        weights: str | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        resize_size: int = 256,
        crop_size: int = 224,
        optimizer: str = "torch.optim.Adam",
        lr: float = 2e-4,
        optimizer_kwargs: dict[str, Any] | None = None,
        warmup_epochs: float = 2.0,
        pos_weight: float | None = None,
        channels_last: bool | None = None,
        load_pretrained_weights: bool = True,
    ) -> None:
        """``weights``: torchvision weights name or .pth file the backbone starts from (None: random).

        ``channels_last``: NHWC weights and batches, faster convolutions on GPUs with AMP and
        slower on CPUs; None chooses it on CUDA devices.

        ``load_pretrained_weights=False`` builds the architecture without fetching them;
        :meth:`load_from_checkpoint` does so, since the checkpoint holds every weight.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["load_pretrained_weights"])
        self.backbone = build_backbone(arch)
        if weights and load_pretrained_weights:
            load_pretrained(self.backbone, arch, weights)
        self.normalize = PixelNormalize(mean, std)
        pos_weight_tensor = torch.tensor(pos_weight) if pos_weight is not None else None
        self.loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight_tensor)
        # validation outputs of an epoch for AUROC, AUPRC and the PR curve; every process validates
        # on the whole validation set (trainer.use_distributed_sampler=false), so nothing to gather
        self.val_probabilities = CatMetric(sync_on_compute=False)
        self.val_labels = CatMetric(sync_on_compute=False)
        #: set by the predict command: average the predictions over horizontal and vertical flips
        self.flip_tta = False

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, **kwargs: Any) -> LesionClassifier:  # type: ignore[override]
        """Restore a trained classifier; never fetches the ImageNet weights it started from."""
        kwargs.setdefault("load_pretrained_weights", False)
        return super().load_from_checkpoint(checkpoint_path, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[VERSION_KEY] = skinclf.__version__

    def probability_model(self) -> nn.Sequential:
        """A plain module from pixels 0-255 to probabilities of malignancy, for export."""
        return nn.Sequential(self.normalize, self.backbone, nn.Flatten(0), nn.Sigmoid()).eval()

    def uses_channels_last(self) -> bool:
        chosen = self.hparams.channels_last
        return self.device.type == "cuda" if chosen is None else chosen

    def _set_memory_format(self) -> None:
        if self.uses_channels_last():
            self.backbone.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        self._set_memory_format()

    def on_predict_start(self) -> None:
        self._set_memory_format()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits, shape (B,), for images of pixel values 0-255."""
        if self.uses_channels_last():
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(self.normalize(images)).squeeze(1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        self.log("val/loss", self.loss(logits, batch["label"]), sync_dist=True)
        if self.trainer.sanity_checking:  # a couple of batches, maybe of one class: no ranking metrics
            return
        self.val_probabilities.update(logits.sigmoid().float())
        self.val_labels.update(batch["label"])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        probabilities, labels = self.val_probabilities.compute(), self.val_labels.compute().int()
        self.val_probabilities.reset()
        self.val_labels.reset()
        self.log("val/auroc", binary_auroc(probabilities, labels))
        self.log("val/auprc", binary_average_precision(probabilities, labels), prog_bar=True)
        if isinstance(self.logger, TensorBoardLogger):
            self.logger.experiment.add_pr_curve("val/pr_curve", labels, probabilities, self.global_step)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Probabilities of malignancy; with ``flip_tta`` the mean over the four flips of each image."""
        images = batch["image"]
        if self.flip_tta:
            views = (images, images.flip(-1), images.flip(-2), images.flip(-2, -1))
            probabilities = torch.stack([self(view).sigmoid() for view in views]).mean(0)
        else:
            probabilities = self(images).sigmoid()
        # label, and the error of an unreadable image where the dataset reports them, pass through
        return {**{k: v for k, v in batch.items() if k != "image"}, "probability": probabilities.float()}

    def configure_optimizers(self) -> dict[str, Any]:
        """The optim group's optimizer with warmup then cosine decay, stepped every batch."""
        optimizer_class = get_class(self.hparams.optimizer)
        optimizer = optimizer_class(self.parameters(), lr=self.hparams.lr, **(self.hparams.optimizer_kwargs or {}))
        total_steps = int(self.trainer.estimated_stepping_batches)
        warmup_steps = round(total_steps * self.hparams.warmup_epochs / self.trainer.max_epochs)
        schedule = WarmupCosine(min(warmup_steps, total_steps - 1), total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "step"},
        }
