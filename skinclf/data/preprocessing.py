"""How a model prepares an image: the one place its preprocessing becomes a decoder, a resize and an eval transform.

A model's :class:`~skinclf.config.schema.Preprocessing` (the model group's ``model.preprocessing``: its weights'
own eval
transforms unless set, kept in every checkpoint) says how a file becomes the crop the model sees: decoded (a JPEG by
DCT scaling to no less than ``resize_size`` on its shorter side, with ``jpeg_dct_scaling``), colour constancy, the
shorter side resized to ``resize_size``, the centre ``crop_size`` square; then, inside the model, ``(pixels / 255 -
mean) / std``. Training (its pipelines and image caches), evaluate, predict, explain and export all take it from here
(the eval dataset: :func:`skinclf.data.dataset.eval_dataset`), so that a new setting acts everywhere once it acts here.
Pipelines take uint8 (H, W, 3) arrays and give uint8 (3, H, W) tensors: the model normalises on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from skinclf.config.schema import Preprocessing
from skinclf.data.color import SHADES_OF_GRAY_HOW, shades_of_gray
from skinclf.data.images import load_rgb


@dataclass(frozen=True)
class Decoding:
    """How an image file becomes the pixels a pipeline starts from: decoded (with ``side``, a JPEG by DCT scaling to
    no less than ``side`` pixels on its shorter side: see skinclf.data.images.load_rgb), then colour constancy."""

    side: int | None
    color_constancy: str

    def __call__(self, source: Path | BinaryIO) -> np.ndarray:
        return self.constant(load_rgb(source, self.side))

    def constant(self, pixels: np.ndarray) -> np.ndarray:
        """Decoded pixels with the colour constancy applied."""
        return shades_of_gray(pixels) if self.color_constancy == "shades_of_gray" else pixels


def decoding(preprocessing: Preprocessing) -> Decoding:
    """The model's decoder: at its resize_size where it decodes JPEGs by DCT scaling, with its colour constancy."""
    side = preprocessing.resize_size if preprocessing.jpeg_dct_scaling else None
    return Decoding(side, preprocessing.color_constancy)


#: OpenCV's resampling of each model.preprocessing.interpolation.
CV2_INTERPOLATION = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}


def resize_step(preprocessing: Preprocessing) -> A.BasicTransform | A.Compose:
    """The image brought to resize_size as its crop_mode says: the shorter side, the aspect ratio kept (center);
    both sides (squash); the longer side, then padded to a square with the mean colour (border), as timm's transforms
    do. Every pipeline's first step, and the cache's."""
    interpolation = CV2_INTERPOLATION[preprocessing.interpolation]
    size = preprocessing.resize_size
    if preprocessing.crop_mode == "squash":
        return A.Resize(height=size, width=size, interpolation=interpolation)
    if preprocessing.crop_mode == "border":
        mean_colour = tuple(round(255 * m) for m in preprocessing.mean)
        return A.Compose(
            [
                A.LongestMaxSize(max_size=size, interpolation=interpolation),
                A.PadIfNeeded(min_height=size, min_width=size, border_mode=cv2.BORDER_CONSTANT, fill=mean_colour),
            ]
        )
    return A.SmallestMaxSize(max_size=size, interpolation=interpolation)


def eval_transform(preprocessing: Preprocessing) -> A.Compose:
    """Resize, then the centre crop_size square."""
    crop = preprocessing.crop_size
    return A.Compose([resize_step(preprocessing), A.CenterCrop(height=crop, width=crop), ToTensorV2()])


def train_transform(preprocessing: Preprocessing, steps: Sequence[A.BasicTransform] | None) -> A.Compose:
    """Resize, then the aug group's steps (which end at crop_size); no steps trains on the eval transform, as the
    reference's baseline did. Its randomness is seeded per image by the dataset (see skinclf.data.sampler)."""
    if not steps:
        return eval_transform(preprocessing)
    return A.Compose([resize_step(preprocessing), *steps, ToTensorV2()])


#: What stands in for an image that cannot be read, so that a batch keeps its size.
BLANK = np.zeros((8, 8, 3), dtype=np.uint8)


@dataclass(frozen=True)
class Decoded:
    """An image as a model decodes it: as the user has it (``raw``: before colour constancy, at the decoder's size),
    and the crop the model sees (uint8, (3, crop, crop)); for an image that cannot be read, the reason and a blank
    crop."""

    raw: np.ndarray | None
    crop: torch.Tensor
    error: str = ""


def decoded_images(preprocessing: Preprocessing, root: Path, paths: Sequence[str]) -> Iterator[Decoded]:
    """Each image decoded once, as the model with this preprocessing decodes it, for whatever looks at the images
    after their predictions (maps, skin tone, the error gallery)."""
    decoder, transform = decoding(preprocessing), eval_transform(preprocessing)
    for path in paths:
        try:
            raw = load_rgb(root / path, decoder.side)
            yield Decoded(raw, transform(image=decoder.constant(raw))["image"])
        except Exception as error:  # noqa: BLE001 - an unreadable image is reported, not fatal, after prediction
            yield Decoded(None, transform(image=BLANK)["image"], f"{type(error).__name__}: {error}")


def description(preprocessing: Preprocessing) -> dict[str, Any]:
    """How to prepare an image for the exported model, in words and numbers (its JSON file's ``input``)."""
    p = preprocessing
    brought = {
        "center": "resize the shorter side to",
        "squash": "resize both sides to",
        "border": "resize the longer side to, then pad to a square of (with the mean colour)",
    }[p.crop_mode]
    how = f"{brought} {p.resize_size} px ({p.interpolation}), then centre-crop {p.crop_size} px"
    if p.jpeg_dct_scaling:
        how += (
            f"; a JPEG decoded by DCT scaling (libjpeg scale 1/2, 1/4 or 1/8, the smallest whose shorter side is "
            f">= {p.resize_size} px; Pillow's Image.draft) before the resize"
        )
    return {
        "preprocessing": how + "; EXIF orientation applied",
        "resize_size": p.resize_size,
        "crop_size": p.crop_size,
        "crop_mode": p.crop_mode,
        "interpolation": p.interpolation,
        "mean": list(p.mean),
        "std": list(p.std),
        "normalisation": "inside the model: (pixels / 255 - mean) / std",
        "color_constancy": p.color_constancy,
        **({"color_constancy_how": SHADES_OF_GRAY_HOW} if p.color_constancy == "shades_of_gray" else {}),
        "jpeg_dct_scaling": p.jpeg_dct_scaling,
    }
