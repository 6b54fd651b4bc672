"""Which layer and method make the most trustworthy maps? The study behind explain.layer and explain.method.

On synthetic melanomas and carcinomas drawn with their lesion masks (skinclf.data.synthetic), a trained model's
maps are checked as ``evaluate`` checks them (skinclf.evaluation.saliency): the pointing game against a random point
and the crop's centre, and the fall of the malignancy score when the pixels each map ranks highest are removed,
against a random and a centre map; for every spatial layer of the backbone the maps can be made of, and both
methods::

    python studies/saliency_choice.py --run <run folder of a trained model> [--images 100]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from skinclf.config.schema import ExplainSettings
from skinclf.data.synthetic import DIAGNOSES, render_lesion_and_mask
from skinclf.evaluation.saliency import saliency_checks
from skinclf.trained import load_model
from skinclf.trained.explain import Explainer, output_shapes


def malignant_lesions(count: int, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    drawn = [render_lesion_and_mask(rng, DIAGNOSES[name].look, size) for name in ["melanoma", "carcinoma"] * count]
    return torch.from_numpy(np.stack([d[0] for d in drawn])).permute(0, 3, 1, 2), np.stack([d[1] for d in drawn])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--images", type=int, default=100)
    arguments = parser.parse_args()
    model = load_model(arguments.run / "checkpoints" / "last.ckpt")
    classifier = model.classifiers[0]
    crop = model.preprocessing.crop_size
    crops, masks = malignant_lesions(arguments.images // 2, crop, seed=11)
    shapes = output_shapes(classifier.backbone, crop)  # every stage whose output is an image of features
    layers = [name for name, shape in shapes.items() if "." not in name and len(shape) == 4 and shape[-1] > 1]
    default = ExplainSettings(True, "gradcam", None, None, None)
    print(
        f"{'layer':<10}{'method':<11}{'point: map':>11}{'random':>8}{'centre':>8}"
        f"{'drop: map':>11}{'random':>8}{'centre':>8}"
    )
    for layer in layers:
        for method in ("gradcam", "gradcam++"):
            checks = saliency_checks(
                Explainer([classifier], dataclasses.replace(default, layer=layer, method=method)), crops, masks, None
            )
            points, drops = checks["pointing_game"], checks["score_drop_removing_20%"]
            print(
                f"{layer:<10}{method:<11}{points['maps']:>11.2f}{points['random point']:>8.2f}{points['centre']:>8.2f}"
                f"{drops['maps']:>11.3f}{drops['random']:>8.3f}{drops['centre']:>8.3f}"
            )
    print(f"default layer: {Explainer([classifier], default).layer_names[0]}")


if __name__ == "__main__":
    main()
