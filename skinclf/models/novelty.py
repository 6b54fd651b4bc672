"""How unlike the images it trained on an image is to a model: the score behind referral.

The score is the Mahalanobis distance (Lee et al., NeurIPS 2018) of the image's pooled backbone features (the input of
the classifier's head) to the nearest class mean of the training images, under their shared covariance, shrunk
towards its mean variance so that it inverts however few the images (Ledoit-Wolf style, SHRINKAGE). It is fitted on
the training images when a run ends and kept in the checkpoint beside the weights. A one-logit model's own scores
(its energy or maximum softmax) measure how sure it is, not how new an image is: on a photograph or a flat colour it
can be as sure as on a lesion (measured in the note of issue 28), so referral rests on the features.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

#: How far the covariance is drawn towards a multiple of the identity (its mean variance).
SHRINKAGE = 0.1


@dataclass(frozen=True)
class FeatureDistance:
    """Class means (classes, D) and the precision matrix (D, D) of the training images' pooled features."""

    means: torch.Tensor
    precision: torch.Tensor

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor) -> FeatureDistance:
        """Fitted on features (N, D) of the training images and their labels (0 benign, 1 malignant)."""
        features = features.double()
        classes = labels.long().unique()
        means = torch.stack([features[labels.long() == c].mean(0) for c in classes])
        centred = features - means[torch.searchsorted(classes, labels.long())]
        covariance = centred.T @ centred / len(features)
        identity = torch.eye(covariance.shape[0], dtype=covariance.dtype)
        shrunk = (1 - SHRINKAGE) * covariance + SHRINKAGE * covariance.diagonal().mean() * identity
        # the pseudo-inverse: features that never vary (dead units, a model barely trained) leave it singular
        return cls(means.float(), torch.linalg.pinv(shrunk, hermitian=True).float())

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """The squared distance of each image (N, D) to its nearest class mean: higher is less like training."""
        means, precision = self.means.to(features.device), self.precision.to(features.device)
        with torch.autocast(features.device.type, enabled=False):  # distances in 32 bits under mixed precision too
            differences = features.float()[:, None, :] - means[None]
            return torch.einsum("ncd,de,nce->nc", differences, precision, differences).min(1).values

    def state(self) -> dict[str, torch.Tensor]:
        """As a checkpoint keeps it."""
        return {"means": self.means, "precision": self.precision}


class Pooled:
    """The pooled features a forward pass gives its head, caught by a hook."""

    features: torch.Tensor | None = None


@contextmanager
def pooled_features(head: nn.Module) -> Iterator[Pooled]:
    """Catch the input of the head (the pooled features) of every forward pass inside the block."""
    pooled = Pooled()

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        pooled.features = inputs[0].detach().flatten(1).float()

    handle = head.register_forward_pre_hook(hook)
    try:
        yield pooled
    finally:
        handle.remove()
