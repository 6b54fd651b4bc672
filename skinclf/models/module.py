"""The LightningModule: a torchvision backbone with one logit, trained with BCE, Adam and warmup-cosine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from skinclf.models.backbones import build_backbone, load_pretrained
from skinclf.models.schedule import WarmupCosine

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        load_pretrained_weights: bool = True,
    ) -> None:
        """``weights``: torchvision weights name or .pth file the backbone starts from (None: random).

        ``load_pretrained_weights=False`` builds the architecture without fetching them;
        :meth:`load_from_checkpoint` does so, since the checkpoint holds every weight.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["load_pretrained_weights"])
        self.backbone = build_backbone(arch)
        if weights and load_pretrained_weights:
            load_pretrained(self.backbone, arch, weights)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        pos_weight_tensor = torch.tensor(pos_weight) if pos_weight is not None else None
        self.loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight_tensor)
        self.val_auroc = BinaryAUROC()
        self.val_auprc = BinaryAveragePrecision()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, **kwargs: Any) -> LesionClassifier:  # type: ignore[override]
        """Restore a trained classifier; never fetches the ImageNet weights it started from."""
        kwargs.setdefault("load_pretrained_weights", False)
        return super().load_from_checkpoint(checkpoint_path, **kwargs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits, shape (B,), for images of pixel values 0-255."""
        normalised = (images.float() - self.pixel_mean) / self.pixel_std
        return self.backbone(normalised).squeeze(1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = self.loss(self(images), labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val/loss", self.loss(logits, labels), sync_dist=True)
        if self.trainer.sanity_checking:  # a couple of batches, maybe of one class: no ranking metrics
            return
        probabilities = logits.sigmoid()
        self.val_auroc.update(probabilities, labels.int())
        self.val_auprc.update(probabilities, labels.int())
        self.log("val/auroc", self.val_auroc)
        self.log("val/auprc", self.val_auprc, prog_bar=True)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        images, labels = batch
        return {"probability": self(images).sigmoid().float(), "label": labels}

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
