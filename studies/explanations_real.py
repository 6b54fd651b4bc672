"""Are the maps of models trained on real dermoscopy faithful? ROAD (skinclf.evaluation.saliency.score_drop) on the
malignant images of each run's own test split: how far the malignancy score falls when the 20 % of pixels the
default map (Grad-CAM++ at the default layer) ranks highest are imputed away, against a random map and a map of the
crop's centre, as ``evaluate explain=true`` checks them.

The pointing game needs each image's lesion mask, which neither HAM10000's table nor ISIC 2017's folders here carry:
it is checked on the synthetic lesions (studies/saliency_choice.py) and by ``evaluate`` wherever a table names masks.

    python studies/explanations_real.py --runs <run folder> ... [--images 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from skinclf.config.schema import ExplainSettings
from skinclf.data.dataset import eval_dataset
from skinclf.evaluation.saliency import centre_maps, score_drop
from skinclf.trained import CheckpointModel
from skinclf.trained.explain import Explainer


def malignant_crops(model: CheckpointModel, count: int) -> torch.Tensor:
    """Up to ``count`` malignant images of the run's test split (drawn with seed 0), as the model sees them."""
    images = model.split("test")
    malignant = images.table[images.table["label"] == 1]
    drawn = malignant.sample(min(count, len(malignant)), random_state=0)
    dataset = eval_dataset(model.preprocessing, images.root, drawn[["path"]].reset_index(drop=True))
    return torch.cat([batch["image"] for batch in DataLoader(dataset, batch_size=32)])


def drops(run: Path, count: int) -> dict[str, float]:
    model = CheckpointModel(run / "checkpoints" / "last.ckpt")
    crops = malignant_crops(model, count)
    explainer = Explainer(model.classifiers, ExplainSettings(True, "gradcam++", None, None, None))
    size = crops.shape[-1]
    maps = {
        "maps": explainer.maps(crops),
        "random": np.random.default_rng(0).random((len(crops), size, size)).astype(np.float32),
        "centre": centre_maps(len(crops), size),
    }
    return {"images": len(crops), **{name: score_drop(explainer, crops, m, None) for name, m in maps.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--images", type=int, default=100)
    arguments = parser.parse_args()
    rows = []
    for run in arguments.runs:
        found = drops(run.resolve(), arguments.images)
        print(f"{run}: {found}", flush=True)
        rows.append({"model": f"{run.parent.name}, trained on {run.name.split('-')[0]}", **found})
    table = pd.DataFrame(rows)
    grouped = table.groupby("model", sort=False)
    print("| model | seeds | images | score drop: map | random | centre | map beats centre |")
    for model, runs in grouped:
        cells = [f"{runs[c].mean():.3f} ± {runs[c].std(ddof=1):.3f}" for c in ("maps", "random", "centre")]
        beats = int((runs["maps"] > runs["centre"]).sum())
        print(f"| {model} | {len(runs)} | {runs['images'].iloc[0]} | {' | '.join(cells)} | {beats} of {len(runs)} |")


if __name__ == "__main__":
    main()
