"""The test images as the evaluated model saw them, decoded once after their predictions for everything that looks at
them: the estimated skin tone of each (an audit by skin tone), a map of where the model looked on each (explain),
and the crops the error gallery shows and the maps' checks measure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from skinclf.config.schema import Preprocessing
from skinclf.data.color import individual_typology_angle, ita_band
from skinclf.data.preprocessing import decoded_images
from skinclf.trained.explain import EXPLAINED_AT_ONCE, Explainer, write_explanations


@dataclass(frozen=True)
class ImagesAsSeen:
    """How the evaluated model saw the test images: the folder their paths are relative to, its preprocessing, and
    what maps where it looked (None where none can be made), for the error gallery and, with explain_every_image,
    for every test image (explanations/, and the column explanation of predictions_test.csv); with a mask_column
    (the column that names each image's lesion mask, relative to root as the image paths are), the maps are
    checked against plain guesses."""

    root: Path
    preprocessing: Preprocessing
    explainer: Explainer | None = None
    explain_every_image: bool = False
    mask_column: str | None = None


@dataclass(frozen=True)
class LookedAt:
    """What one pass over the test images gave: each image's skin tone ("" where it has none) where asked for, each
    image's heatmap path where every image is explained, and the crops of the rows that were asked to be kept."""

    skin_tones: list[str] | None
    explanations: list[str] | None
    crops: dict[int, torch.Tensor]


def look_at(seen: ImagesAsSeen, test: pd.DataFrame, folder: Path, skin_tone: bool, keep: set[int]) -> LookedAt:
    """Decode each test image that anything needs once, in batches: its skin tone (skin_tone), its map and overlay
    into folder/explanations/ (seen.explain_every_image), its crop for the rows in ``keep``."""
    explain = seen.explain_every_image and seen.explainer is not None
    rows = list(range(len(test))) if skin_tone or explain else sorted(keep)
    tones, explanations, crops = [""] * len(test), [""] * len(test), {}
    for start in range(0, len(rows), EXPLAINED_AT_ONCE):
        batch = rows[start : start + EXPLAINED_AT_ONCE]
        paths = test["path"].iloc[batch]
        decoded = dict(zip(batch, decoded_images(seen.preprocessing, seen.root, paths), strict=True))
        for i, image in decoded.items():
            if skin_tone and image.raw is not None:
                tones[i] = ita_band(individual_typology_angle(image.raw))
            if i in keep:
                crops[i] = image.crop
        if explain:
            for i, path in write_explanations(seen.explainer, decoded, test, seen.preprocessing, folder).items():
                explanations[i] = path
    return LookedAt(tones if skin_tone else None, explanations if explain else None, crops)
