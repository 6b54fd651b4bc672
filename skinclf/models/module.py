"""The LightningModule: a torchvision or timm backbone with one logit (BCE) or one per diagnosis (cross-entropy), and
the optim group's optimizer with warmup then cosine decay."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics.aggregation import CatMetric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from skinclf.core.errors import SkinclfError
from skinclf.data.metadata import feature_names
from skinclf.models.backbones import build_backbone, load_pretrained
from skinclf.models.layers import early_stage_input
from skinclf.models.novelty import Caught, Familiarity, early_statistics
from skinclf.models.schedule import WarmupCosine
from skinclf.models.settings import ClassifierSettings, as_hyperparameters, classifier_settings

#: Optimizers with a fused kernel on a CPU and CUDA in every PyTorch this package supports (2.4 on).
FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)
FUSED_DEVICES = {"cpu", "cuda"}


def optimizer_kwargs(
    optimizer_class: type, kwargs: dict[str, Any], parameters: Iterable[nn.Parameter], clips_gradients: bool = False
) -> dict[str, Any]:
    """The optim group's keyword arguments, with ``fused=True`` where the optimizer has a fused kernel and the user
    did not choose: the same update as PyTorch's per-tensor loop, in one kernel (Adam's step on a CPU is 6 times
    faster, a fifth of a small run's time; BENCHMARKS.md). Not with gradient clipping: a fused optimizer unscales
    mixed-precision gradients itself, after Lightning would clip them, and Lightning refuses the pair."""
    if clips_gradients or not issubclass(optimizer_class, FUSED_OPTIMIZERS) or "fused" in kwargs:
        return kwargs
    if any(parameter.device.type not in FUSED_DEVICES for parameter in parameters):
        return kwargs
    return {**kwargs, "fused": True}


class PixelNormalize(nn.Module):
    """(pixels / 255 - mean) / std for images of pixel values 0-255, uint8 or float."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std


def malignancy_of(logits: torch.Tensor, malignant_mask: torch.Tensor | None) -> torch.Tensor:
    """The probability of malignancy from the logits: their sigmoid (binary task, shape (B,)), or the
    malignant diagnoses' share of the softmax (diagnosis task, shape (B, diagnoses))."""
    if malignant_mask is None:
        return logits.sigmoid()
    return logits.softmax(1)[:, malignant_mask].sum(1)


#: Width of the hidden layer of the metadata branch.
METADATA_HIDDEN = 32


def metadata_branch(features: int, outputs: int, dropout: float) -> nn.Sequential:
    """Encoded metadata to logits: a hidden layer, dropout, and a linear layer that starts at zero
    (so that training starts from the image alone)."""
    last = nn.Linear(METADATA_HIDDEN, outputs, bias=False)
    nn.init.zeros_(last.weight)
    return nn.Sequential(nn.Linear(features, METADATA_HIDDEN), nn.ReLU(), nn.Dropout(dropout), last)


def joint_logits(
    backbone: nn.Module, branch: nn.Module | None, images: torch.Tensor, metadata: torch.Tensor | None
) -> torch.Tensor:
    """The image's logits, plus the metadata's for a model with a metadata branch."""
    logits = backbone(images)
    if branch is None:
        return logits
    if metadata is None:
        raise SkinclfError("this model reads metadata beside each image (model.metadata_columns), but none was given")
    return logits + branch(metadata.to(logits.dtype))


@dataclass(frozen=True)
class ValidationScores:
    """The probabilities and labels of the validation images, in the loader's order, at the end of an epoch."""

    epoch: int
    probabilities: torch.Tensor
    labels: torch.Tensor


class LesionClassifier(pl.LightningModule):
    """Benign (0) vs malignant (1) from images of pixel values 0-255, uint8 or float, (B, 3, H, W).

    task=binary: one logit, BCE. task=diagnosis (``settings.head.diagnoses``): one logit per
    diagnosis, cross-entropy, and the probability of malignancy is the sum of the probabilities of
    the malignant diagnoses; every binary figure is computed on it alike.

    How it sees an image is part of its settings (``settings.model.preprocessing``): the image pipeline's decoding
    and sizes (skinclf.data.preprocessing), and mean and std, applied here as the first step of forward.

    With a ``metadata_encoding`` (model.metadata_columns; see :mod:`skinclf.data.metadata`) a small
    branch reads the encoded metadata beside the image: a hidden layer with dropout, whose logits add
    to the image's, which is a linear head on the image features and metadata features concatenated.
    """

    def __init__(self, settings: ClassifierSettings | dict[str, Any], load_pretrained_weights: bool = False) -> None:
        """``settings``: typed, or as a checkpoint stores them. The backbone's starting weights
        (``settings.model.weights``) are loaded only with ``load_pretrained_weights`` (when a run starts),
        never when a checkpoint is restored (``load_from_checkpoint``), which holds every weight itself.
        """
        super().__init__()
        self.settings = classifier_settings(settings)
        self.save_hyperparameters({"settings": as_hyperparameters(self.settings)})
        model, head = self.settings.model, self.settings.head
        outputs = len(head.diagnoses) if head.diagnoses else 1
        self.backbone = build_backbone(model.arch, outputs, model.library, model.head_dropout)
        #: where the starting weights came from (source, file, sha256), when they were loaded here
        self.weights_origin = (
            load_pretrained(self.backbone, model.arch, model.weights, model.library)
            if model.weights and load_pretrained_weights
            else None
        )
        encoding = self.settings.metadata_encoding
        self.metadata_branch = (
            metadata_branch(len(feature_names(encoding)), outputs, model.metadata_dropout) if encoding else None
        )
        preprocessing = model.preprocessing
        self.normalize = PixelNormalize(preprocessing.mean, preprocessing.std)
        if head.diagnoses:
            weights = torch.tensor(head.class_weights) if head.class_weights else None
            self.loss = nn.CrossEntropyLoss(weight=weights)
            malignant = [d in (head.malignant_diagnoses or []) for d in head.diagnoses]
            self.register_buffer("malignant_mask", torch.tensor(malignant), persistent=False)
        else:
            pos_weight = self.settings.loss.pos_weight
            self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight) if pos_weight is not None else None)
            self.malignant_mask = None
        # outputs of a validation epoch for AUROC, AUPRC and the PR curve; every process
        # evaluates the whole set (trainer.use_distributed_sampler=false), so nothing to gather
        self.epoch_probabilities = CatMetric(sync_on_compute=False)
        self.epoch_labels = CatMetric(sync_on_compute=False)
        #: the latest validation epoch's scores, which the checkpoints of that epoch keep
        self.validation_scores: ValidationScores | None = None
        #: how unlike its training images an image is (skinclf.models.novelty), where its checkpoint holds it
        self.novelty: Familiarity | None = None

    def forward(self, images: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for images of pixel values 0-255 (and their encoded metadata, for a model with
        metadata): shape (B,), or (B, diagnoses) for task=diagnosis."""
        if self.uses_channels_last():
            images = images.contiguous(memory_format=torch.channels_last)
        logits = joint_logits(self.backbone, self.metadata_branch, self.normalize(images), metadata)
        return logits if self.malignant_mask is not None else logits.squeeze(1)

    def malignancy(self, logits: torch.Tensor) -> torch.Tensor:
        return malignancy_of(logits, self.malignant_mask)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self(batch["image"], batch.get("metadata")), batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_fit_start(self) -> None:
        self._set_memory_format()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"], batch.get("metadata"))
        self.log("val/loss", self._loss(logits, batch), sync_dist=True)
        if self.trainer.sanity_checking:  # a couple of batches, maybe of one class: no ranking metrics
            return
        self.epoch_probabilities.update(self.malignancy(logits).float())
        self.epoch_labels.update(batch["label"])

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's AUROC and AUPRC, and keep its scores for the checkpoints of the epoch."""
        if self.trainer.sanity_checking:
            return
        probabilities, labels = self.epoch_probabilities.compute(), self.epoch_labels.compute().int()
        self.epoch_probabilities.reset()
        self.epoch_labels.reset()
        self.log("val/auroc", binary_auroc(probabilities, labels))
        self.log("val/auprc", binary_average_precision(probabilities, labels), prog_bar=True)
        self.validation_scores = ValidationScores(self.current_epoch, probabilities.cpu(), labels.cpu())
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_pr_curve("val/pr_curve", labels, probabilities, self.global_step)

    @property
    def head(self) -> nn.Module:
        """The backbone's head: its input is the image's pooled features."""
        return self.backbone.get_submodule(self.backbone.head_slot)

    @functools.cached_property
    def early_stage(self) -> nn.Module | None:
        """The module whose input the early statistics are taken of (skinclf.models.novelty); None for a backbone
        with no feature map at 1/4 of the image's side."""
        return early_stage_input(self.backbone)

    @contextlib.contextmanager
    def early_statistics(self) -> Iterator[Caught | None]:
        """Catch the early statistics of every forward pass inside the block (None where the backbone has none)."""
        if self.early_stage is None:
            yield None
            return
        with early_statistics(self.early_stage) as caught:
            yield caught

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Probabilities of malignancy (and of each diagnosis), and with a novelty detector each image's ood_score;
        label and error pass through where given."""
        with self.early_statistics() as early:
            logits = self(batch["image"], batch.get("metadata"))
        passed_on = {k: v for k, v in batch.items() if k not in ("image", "metadata")}
        outputs = {**passed_on, "probability": self.malignancy(logits).float()}
        if self.malignant_mask is not None:
            outputs["diagnosis_probabilities"] = logits.softmax(1).float()
        if self.novelty is not None and early is not None:
            outputs["ood_score"] = self.novelty.score(early.last)
        return outputs

    def on_predict_start(self) -> None:
        self._set_memory_format()

    def configure_optimizers(self) -> dict[str, Any]:
        """The optim group's optimizer with warmup then cosine decay, stepped every batch."""
        trainer = self.trainer
        return self.optimizer_and_schedule(
            int(trainer.estimated_stepping_batches), trainer.max_epochs, clips_gradients=bool(trainer.gradient_clip_val)
        )

    def optimizer_and_schedule(
        self, total_steps: int, max_epochs: int, clips_gradients: bool = False
    ) -> dict[str, Any]:
        """The optimizer and its per-step schedule for a run of total_steps over max_epochs."""
        optim = self.settings.optim
        optimizer_class = get_class(optim.optimizer)
        kwargs = optimizer_kwargs(optimizer_class, dict(optim.kwargs or {}), self.parameters(), clips_gradients)
        optimizer = optimizer_class(self.parameters(), lr=optim.lr, **kwargs)
        warmup_steps = round(total_steps * optim.warmup_epochs / max_epochs)
        schedule = WarmupCosine(min(warmup_steps, total_steps - 1), total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "step"},
        }

    def probability_model(self) -> nn.Module:
        """A plain module from pixels 0-255 to the probability of malignancy (and of each diagnosis), for export."""
        return Probabilities(self).eval()

    def uses_channels_last(self) -> bool:
        chosen = self.settings.speed.channels_last
        return self.device.type == "cuda" if chosen is None else chosen

    def _set_memory_format(self) -> None:
        if self.uses_channels_last():
            self.backbone.to(memory_format=torch.channels_last)

    def _loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss(logits, batch["label"] if self.malignant_mask is None else batch["diagnosis"])


class Probabilities(nn.Module):
    """A classifier as exported: pixels 0-255 in; out the probability of malignancy and, for
    task=diagnosis, the probability of each diagnosis. It holds the classifier's layers, not the
    LightningModule, so that tracing never touches Lightning's trainer-bound attributes."""

    def __init__(self, classifier: LesionClassifier) -> None:
        super().__init__()
        self.normalize = classifier.normalize
        self.backbone = classifier.backbone
        self.metadata_branch = classifier.metadata_branch
        self.malignant_mask = classifier.malignant_mask

    def forward(
        self, images: torch.Tensor, metadata: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = joint_logits(self.backbone, self.metadata_branch, self.normalize(images), metadata)
        if self.malignant_mask is None:
            return malignancy_of(logits.squeeze(1), None)
        return malignancy_of(logits, self.malignant_mask), logits.softmax(1)
