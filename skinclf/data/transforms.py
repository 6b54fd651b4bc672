"""Image pipelines: uint8 (H, W, 3) arrays in, uint8 (3, H, W) tensors out.

Normalisation (mean/std) is not here: the model does it on the device as its first step, so a
batch crosses to the GPU as compact uint8 and every exported model carries its own preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
from albumentations.pytorch import ToTensorV2


def resize_step(resize_size: int) -> A.SmallestMaxSize:
    """Resize the shorter side to resize_size, keeping the aspect ratio (bilinear)."""
    return A.SmallestMaxSize(max_size=resize_size)


def eval_pipeline(resize_size: int, crop_size: int) -> A.Compose:
    """Resize the shorter side to resize_size, then take the centre crop_size square."""
    return A.Compose([resize_step(resize_size), A.CenterCrop(height=crop_size, width=crop_size), ToTensorV2()])


def train_pipeline(steps: Sequence[A.BasicTransform] | None, resize_size: int, crop_size: int) -> A.Compose:
    """The aug group's steps followed by the tensor conversion; no steps means the eval pipeline.

    Its randomness is seeded per image by the dataset (see :class:`~skinclf.data.sampler.EpochSampler`).
    """
    if not steps:
        return eval_pipeline(resize_size, crop_size)
    return A.Compose([*steps, ToTensorV2()])
