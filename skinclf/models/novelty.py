"""How unlike the images it trained on an image is to a model, and whether a whole set is: the scores behind referral
and the set alarm.

Both read the image's early statistics: the mean and standard deviation of each channel of the backbone's last
feature map at 1/4 of the image's side (the input of its second stage: ResNets' layer1 output, EfficientNets' second
stage's), where how the image was taken shows: the dermoscope or the camera, the light, the field of view. The pooled
features the head reads have learnt the lesion and forgotten the rest; on a model pretrained on ImageNet they could
not tell a smartphone photograph from dermoscopy (studies/referral_rule.py; docs/evaluation.md).

- An image's ``ood_score`` is the distance of its L2-normalised statistics to their K-th nearest neighbour among the
  training images' (Sun et al., ICML 2022). pytorch-ood's KNN computes the same distance through scikit-learn's
  NearestNeighbors (refitted from the bank at every load, on the CPU); here it is one cdist and topk, on the model's
  device, the bank a tensor in the checkpoint (tests/test_referral.py checks the two agree).
- A set is tested against the validation images' statistics (held out from training, as a set from the same clinic
  would be) by skinclf.metrics.shift.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

#: Neighbours of the kNN distance (Sun et al.'s choice for a full training set).
K = 50
#: Training images kept in the bank, and validation images kept as the set test's reference (drawn at random).
BANK = 2000
REFERENCE = 500


@dataclass(frozen=True)
class Familiarity:
    """The L2-normalised early statistics of training images (the bank of the kNN distance) and of validation images
    (the reference of the set test)."""

    bank: torch.Tensor
    reference: torch.Tensor

    @classmethod
    def fit(cls, training: torch.Tensor, validation: torch.Tensor, seed: int = 0) -> Familiarity:
        """From the early statistics (N, D) of the training and of the validation images, at most BANK and REFERENCE
        of them."""
        generator = torch.Generator().manual_seed(seed)

        def drawn(statistics: torch.Tensor, most: int) -> torch.Tensor:
            kept = torch.randperm(len(statistics), generator=generator)[:most].sort().values
            return nn.functional.normalize(statistics[kept].float(), dim=1)

        return cls(drawn(training, BANK), drawn(validation, REFERENCE))

    def score(self, statistics: torch.Tensor) -> torch.Tensor:
        """The distance of each image's normalised statistics (N, D) to its K-th nearest training image: higher is
        less like training."""
        bank = self.bank.to(statistics.device)
        with torch.autocast(statistics.device.type, enabled=False):
            distances = torch.cdist(nn.functional.normalize(statistics.float(), dim=1), bank)
            return distances.topk(min(K, len(bank)), dim=1, largest=False).values[:, -1]

    def state(self) -> dict[str, torch.Tensor]:
        """As a checkpoint keeps it."""
        return {"bank": self.bank, "reference": self.reference}


class Caught:
    """What a hook caught of every forward pass inside its block, in order."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    @property
    def last(self) -> torch.Tensor:
        return self.batches[-1]


@contextmanager
def early_statistics(stage: nn.Module) -> Iterator[Caught]:
    """Catch, for every forward pass inside the block, each image's early statistics: the mean and standard deviation
    of each channel of the input of ``stage`` (skinclf.models.layers.early_stage_input)."""
    caught = Caught()

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        maps = inputs[0].detach().float()
        caught.batches.append(torch.cat([maps.mean((2, 3)), maps.std((2, 3))], 1))

    handle = stage.register_forward_pre_hook(hook)
    try:
        yield caught
    finally:
        handle.remove()
