"""Adapting a model to a clinic's images at test time: its batch-norm statistics re-estimated on them (AdaBN, Li et
al. 2017; ``evaluation.adapt=batchnorm``), guarded for the class mix, in memory only (the model file is not touched).

Another camera or light moves the mean and variance of every layer's features; AdaBN takes them from the clinic's own
images, unlabelled. But the clinic's share of malignant lesions moves them too: a screening clinic with 5 %
malignant, estimated plainly, would pull the statistics towards what benign lesions look like, and the scores of its
malignant lesions with them. So the statistics are estimated on the clinic's images drawn with weights that bring
the share of malignant ones back to the training share, judged by the model's own scores before adapting: an image
of probability p weighs s * p / q + (1 - s) * (1 - p) / (1 - q), where s is the training images' share of malignant
ones and q the mean score on the clinic's images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from skinclf.models.module import LesionClassifier

#: The guard, in words for metrics.json.
GUARD = "drawn with weights that bring the share of malignant images to the training share, by the model's own scores"


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def class_mix_weights(probabilities: np.ndarray, training_share: float) -> np.ndarray:
    """Each image's weight in the draw, so that the malignant share the scores estimate becomes the training share."""
    estimated = float(np.clip(np.mean(probabilities), 1e-3, 1 - 1e-3))
    return training_share * probabilities / estimated + (1 - training_share) * (1 - probabilities) / (1 - estimated)


@torch.no_grad()
def adapt_batchnorm(
    classifier: LesionClassifier, images: Dataset, weights: np.ndarray, batch_size: int, device: torch.device
) -> int:
    """Re-estimate the classifier's batch-norm statistics (in place) on the images drawn with the weights, as many
    as there are, in training mode for the batch-norm layers alone; returns how many layers were adapted."""
    layers = batchnorm_layers(classifier)
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over every batch drawn
    classifier.to(device).eval()
    for layer in layers:
        layer.train()
    generator = torch.Generator().manual_seed(0)
    sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(weights), True, generator)
    for batch in DataLoader(images, batch_size=batch_size, sampler=sampler, drop_last=len(weights) > batch_size):
        metadata = batch["metadata"].to(device) if "metadata" in batch else None
        classifier(batch["image"].to(device), metadata)
    classifier.eval().cpu()
    return len(layers)
