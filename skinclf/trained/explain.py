"""Where a model looks: Grad-CAM and Grad-CAM++ maps (pytorch-grad-cam) of its score of malignancy.

The target layer is the backbone's last spatial stage, found for any torchvision or timm model by running it at two
sizes and taking the last module whose output is an image of features that grows with the input, of at least
MIN_MAP_SIDE cells a side where the crop allows (ResNets' ``layer4``, EfficientNets' last convolution, ConvNeXts' last
stage at their sizes), unless ``explain.layer`` names one. The target is the model's malignant logit (task=binary),
the log-probability of malignancy (the malignant diagnoses' softmax share, task=diagnosis) or, with
``explain.target=<diagnosis>``, that diagnosis' logit. Metadata is held at the image's own values. With test-time
views each view's map is turned back and the maps averaged; an ensemble averages its members' maps.

A map comes at the model's crop; :func:`at_image_size` undoes the resize and the centre crop, so that a heatmap lies
on the image as it was decoded (outside the crop: 0).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from PIL import Image
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from torch import nn

from skinclf.config.schema import ExplainSettings, Preprocessing
from skinclf.core.atomic import atomic_path
from skinclf.core.errors import SkinclfError, examples
from skinclf.data.metadata import encode
from skinclf.data.preprocessing import Decoded, decoded_images
from skinclf.models import LesionClassifier
from skinclf.models.layers import output_shapes
from skinclf.runs import EXPLANATIONS
from skinclf.trained.inference import VIEWS, view

log = logging.getLogger(__name__)

METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}
#: How much of an overlay is the heatmap's colour.
OVERLAY_WEIGHT = 0.45


#: A map of fewer cells a side cannot point at a lesion: at small inputs (tests, quick checks) an earlier stage is
#: taken than the last (ResNets' layer4 is 7 x 7 at 224 px, but 2 x 2 at 64).
MIN_MAP_SIDE = 6


def spatial_layers(backbone: nn.Module, crop_size: int) -> list[str]:
    """The backbone's modules whose output is an image of features, (N, C, H, W) with an H and W that grow with the
    input (an attention layer's (N, heads, tokens, dim) does not), in the order they finish, those of at least
    MIN_MAP_SIDE cells a side where there are any; none where most of the network runs after the last of them (a
    vision transformer's patch embedding)."""
    at_crop, at_twice = output_shapes(backbone, crop_size), output_shapes(backbone, 2 * crop_size)
    spatial = []
    for name, shape in at_crop.items():  # dicts keep the order the modules finished in
        larger = at_twice.get(name, ())
        image = len(shape) == 4 and len(larger) == 4 and larger[1] == shape[1]
        if image and larger[2] >= 1.5 * shape[2] and larger[3] >= 1.5 * shape[3]:
            spatial.append(name)
    finished = list(at_crop)
    if not spatial or finished.index(spatial[-1]) < len(finished) / 2:
        return []
    return [name for name in spatial if min(at_crop[name][2:]) >= MIN_MAP_SIDE] or spatial[-1:]


def target_layer(classifier: LesionClassifier, layer: str | None) -> nn.Module:
    """The module whose activations the maps are made of: explain.layer, or the last spatial stage."""
    backbone, arch = classifier.backbone, classifier.settings.model.arch
    names = dict(backbone.named_modules())
    if layer is not None:
        if layer not in names:
            similar = difflib.get_close_matches(layer, names, n=5) or examples(list(names)[-8:])
            raise SkinclfError(f"explain.layer={layer} is not a module of {arch}: choose one of {similar}")
        return names[layer]
    spatial = spatial_layers(backbone, classifier.settings.model.preprocessing.crop_size)
    if not spatial:
        raise SkinclfError(
            f"no layer of {arch} keeps a height and a width to make a map of (a vision transformer's tokens have "
            "none): set explain.layer=<module name> to a layer whose output is (N, C, H, W)"
        )
    return names[spatial[-1]]


class Scores(nn.Module):
    """A classifier as Grad-CAM sees it: images in, (N, outputs) logits out, its metadata held at the images' own."""

    def __init__(self, classifier: LesionClassifier, metadata: torch.Tensor | None) -> None:
        super().__init__()
        self.classifier, self.metadata = classifier, metadata

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(images, self.metadata)
        return logits if logits.ndim == 2 else logits[:, None]


@dataclass(frozen=True)
class Target:
    """What a map explains, from one image's logits: the malignant logit, the log-probability of malignancy, or a
    diagnosis' logit."""

    malignant: torch.Tensor | None  # a diagnosis head's mask of malignant diagnoses
    diagnosis: int | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.diagnosis is not None:
            return logits[self.diagnosis]
        if self.malignant is None:
            return logits[0]
        return torch.logsumexp(logits[self.malignant], 0) - torch.logsumexp(logits, 0)


def target_of(classifier: LesionClassifier, settings: ExplainSettings) -> Target:
    head = classifier.settings.head
    if settings.target is None:
        return Target(classifier.malignant_mask)
    if not head.diagnoses or settings.target not in head.diagnoses:
        raise SkinclfError(
            f"explain.target={settings.target} is not a diagnosis of this model's head "
            f"({examples(head.diagnoses or ['none: task=binary'])}): leave it out to explain the malignancy score"
        )
    return Target(classifier.malignant_mask, head.diagnoses.index(settings.target))


class Explainer:
    """Maps of one or more classifiers (an ensemble's members, averaged) for crops they all take, with test-time
    views turned back and averaged."""

    def __init__(self, classifiers: list[LesionClassifier], settings: ExplainSettings, tta: str = "none") -> None:
        self.classifiers, self.settings, self.views = classifiers, settings, VIEWS[tta]
        self.layers = [target_layer(c, settings.layer) for c in classifiers]
        self.targets = [target_of(c, settings) for c in classifiers]

    @property
    def layer_names(self) -> list[str]:
        """The name of each classifier's target layer."""
        return [
            next(name for name, module in c.backbone.named_modules() if module is layer)
            for c, layer in zip(self.classifiers, self.layers, strict=True)
        ]

    def scored(self, rows: pd.DataFrame | None = None) -> list[tuple[Scores, Target]]:
        """Each classifier as Grad-CAM sees it (its metadata held at the rows' own), and what its maps explain."""
        scored = []
        for classifier, target in zip(self.classifiers, self.targets, strict=True):
            encoding = classifier.settings.metadata_encoding
            metadata = torch.from_numpy(encode(rows, encoding, "the images to explain")) if encoding else None
            scored.append((Scores(classifier.eval(), metadata), target))
        return scored

    def maps(self, crops: torch.Tensor, rows: pd.DataFrame | None = None) -> np.ndarray:
        """(N, crop, crop) maps in [0, 1] of the (N, 3, crop, crop) uint8 crops; rows: their table (metadata)."""
        total = np.zeros(crops.shape[:1] + crops.shape[2:])
        for (scores, target), layer in zip(self.scored(rows), self.layers, strict=True):
            with METHODS[self.settings.method](model=scores, target_layers=[layer]) as cam, torch.enable_grad():
                for turns, flipped in self.views:
                    maps = torch.from_numpy(
                        cam(input_tensor=view(crops.float(), turns, flipped), targets=[target] * len(crops))
                    )
                    back = torch.rot90(maps, -turns, dims=(-2, -1))  # the map turned back, then flipped back
                    total += (back.flip(-1) if flipped else back).numpy()
        return normalised(total)


def evaluation_explainer(
    classifiers: list[LesionClassifier], settings: ExplainSettings, tta: str = "none"
) -> Explainer | None:
    """The explainer of an evaluation: with explain.enabled, of every test image (an error where no map can be
    made); otherwise of the error gallery alone, None, said in the log, where no map can be made (the gallery then
    shows the images alone)."""
    try:
        return Explainer(classifiers, settings, tta)
    except SkinclfError as error:
        if settings.enabled:
            raise
        log.warning("the error gallery shows no maps: %s", error)
        return None


def normalised(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] (a flat map stays 0)."""
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)


def at_image_size(crop_map: np.ndarray, size: tuple[int, int], preprocessing: Preprocessing) -> np.ndarray:
    """A map of the model's centre crop placed on an image of ``size`` (height, width): the resize (as its crop_mode
    brought the image to resize_size), any padding and the crop undone, 0 outside the crop."""
    height, width = size
    side = preprocessing.resize_size
    if preprocessing.crop_mode == "squash":
        scales = (side / height, side / width)
    else:
        scale = side / (max if preprocessing.crop_mode == "border" else min)(height, width)
        scales = (scale, scale)
    resized = [max(1, round(extent * s)) for extent, s in zip((height, width), scales, strict=True)]
    padded = [max(side, r) if preprocessing.crop_mode == "border" else r for r in resized]
    crop = preprocessing.crop_size
    starts = [(p - crop) // 2 - (p - r) // 2 for p, r in zip(padded, resized, strict=True)]  # in the resized image
    box = [round(edge / s) for edge, s in zip((*starts, starts[0] + crop, starts[1] + crop), scales * 2, strict=True)]
    box = [max(0, box[0]), max(0, box[1]), min(height, box[2]), min(width, box[3])]
    full = np.zeros((height, width))
    if box[2] > box[0] and box[3] > box[1]:
        placed = Image.fromarray(crop_map.astype(np.float32), mode="F").resize((box[3] - box[1], box[2] - box[0]))
        full[box[0] : box[2], box[1] : box[3]] = np.asarray(placed)
    return np.clip(full, 0, 1)


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 image with the heatmap's colours (jet) blended over it."""
    colours = colormaps["jet"](heat)[..., :3] * 255
    return np.clip((1 - OVERLAY_WEIGHT) * image + OVERLAY_WEIGHT * colours, 0, 255).astype(np.uint8)


def save_explanation(heat: np.ndarray, image: np.ndarray, heatmap: Path, overlaid: Path) -> None:
    """The heatmap as an 8-bit grey PNG and the overlay as a JPEG, at the image's own size."""
    heatmap.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(heatmap) as partial:
        Image.fromarray(np.rint(heat * 255).astype(np.uint8), mode="L").save(partial, format="PNG")
    with atomic_path(overlaid) as partial:
        Image.fromarray(overlay(image, heat)).save(partial, format="JPEG", quality=90)


#: Images explained at once.
EXPLAINED_AT_ONCE = 16


def write_explanations(
    explainer: Explainer, decoded: dict[int, Decoded], table: pd.DataFrame, preprocessing: Preprocessing, folder: Path
) -> dict[int, str]:
    """A heatmap and an overlay, on the image as decoded, for each readable image of ``decoded`` (by its row in the
    table) into folder/explanations/ (mirroring the images' paths); each heatmap's path relative to folder."""
    readable = [i for i, image in decoded.items() if not image.error]
    if not readable:
        return {}
    maps = explainer.maps(torch.stack([decoded[i].crop for i in readable]), table.iloc[readable])
    written = {}
    for i, heat in zip(readable, maps, strict=True):
        raw = decoded[i].raw
        name = Path(EXPLANATIONS) / Path(table["path"].iloc[i]).with_suffix("")
        heatmap = at_image_size(heat, raw.shape[:2], preprocessing)
        save_explanation(heatmap, raw, folder / name.with_suffix(".png"), folder / name.with_suffix(".jpg"))
        written[i] = name.with_suffix(".png").as_posix()
    return written


def explain_images(
    explainer: Explainer, root: Path, table: pd.DataFrame, preprocessing: Preprocessing, folder: Path
) -> list[str]:
    """Write a heatmap and an overlay for every image of the table into folder/explanations/; the heatmap's path
    relative to folder for each, "" for an image that cannot be read."""
    written = [""] * len(table)
    for start in range(0, len(table), EXPLAINED_AT_ONCE):
        rows = range(start, min(start + EXPLAINED_AT_ONCE, len(table)))
        decoded = dict(zip(rows, decoded_images(preprocessing, root, table["path"].iloc[rows]), strict=True))
        for i, path in write_explanations(explainer, decoded, table, preprocessing, folder).items():
            written[i] = path
    return written
