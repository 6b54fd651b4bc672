"""What a second, frozen ImageNet network would add to the shipped referral: the part of the rate given to images
unlike any the model knows read from the model's own early statistics (shipped), from a frozen ImageNet
EfficientNet-Lite0's pooled features (kNN, as the model's), or from the higher of the two percentiles; the rest of the
rate, as shipped, to the images near the decision and unusual by the early statistics.

It reads the outputs studies/referral_rule.py keeps (its ``imagenet`` features are the frozen network's) and scores
them with skinclf's Familiarity and thresholds (placing a score among all the validation scores, where the product
places it among their 101 quantiles: the shipped row differs from studies/shipped_referral.py's in the third
digit). Not shipped: the product would carry a second network through predict, serve and export (docs/evaluation.md
says what it buys).

    python studies/modality_check.py --study <referral_rule.py --out> --shares 0.01 0.02
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from shipped_referral import RATE, SETS, TARGET
from sklearn.metrics import roc_auc_score

from skinclf.metrics.combining import percentiles
from skinclf.metrics.decisions import HIGHEST_PRECISION, choose_thresholds, margin_of
from skinclf.models.novelty import Familiarity

#: Where the unlike part reads novelty, by the name the table gives it.
UNLIKE = {"early (shipped)": ("early",), "frozen ImageNet": ("imagenet",), "higher of the two": ("early", "imagenet")}


def novelty(kept: dict, space: str) -> dict[str, np.ndarray]:
    """Each set's kNN distance to the training bank in the space (the model's early statistics, or ImageNet's)."""
    as_tensor = lambda name: torch.from_numpy(kept[name][space]).float()  # noqa: E731
    familiarity = Familiarity.fit(as_tensor("bank"), as_tensor("val"))
    return {name: familiarity.score(as_tensor(name)).numpy() for name in SETS}


def referred(kept: dict, spaces: tuple[str, ...], unlike_share: float) -> dict[str, np.ndarray]:
    """Which images of each set the rule refers at RATE of the validation, unlike_share of it to the unlike images."""
    scores = {space: novelty(kept, space) for space in {"early", *spaces}}
    validation = pd.DataFrame({"label": kept["val"]["label"], "probability": kept["val"]["probability"]})
    threshold = next(iter(choose_thresholds(validation, [TARGET], HIGHEST_PRECISION).values()))
    margins = {name: margin_of(kept[name]["probability"], threshold) for name in SETS}
    unusual = {
        name: np.max([percentiles(scores[space]["val"], scores[space][name]) for space in spaces], axis=0)
        for name in SETS
    }
    unlike = {name: unusual[name] > np.quantile(unusual["val"], 1 - unlike_share) for name in SETS}
    near = {
        name: (percentiles(margins["val"], margins[name]) + percentiles(scores["early"]["val"], scores["early"][name]))
        / 2
        for name in SETS
    }
    rest = max(0, round(RATE * len(validation)) - int(unlike["val"].sum()))
    cut = np.sort(near["val"][~unlike["val"]])[::-1][rest]
    return {name: unlike[name] | (near[name] > cut) for name in SETS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="studies/referral_rule.py's --out folder")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.01], help="the unlike part, of the validation")
    arguments = parser.parse_args()
    rows = []
    for run in sorted(arguments.study.glob("*/*-plain-*")):
        kept = {name: dict(np.load(run / f"{name}.npz", allow_pickle=True)) for name in ("bank", *SETS)}
        other = kept["other"]
        for unlike, spaces in UNLIKE.items():
            for share in arguments.shares:
                flagged = referred(kept, spaces, share)
                keep = ~flagged["other"]
                all_images = roc_auc_score(other["label"], other["probability"])
                rows.append(
                    {
                        "model": f"{run.parent.name}, trained on {run.name.split('-')[0]}",
                        "unlike part reads": unlike,
                        "unlike share": share,
                        **{f"referred {name}": float(flagged[name].mean()) for name in ("test", "other", "photos")},
                        "kept - all": roc_auc_score(other["label"][keep], other["probability"][keep]) - all_images,
                    }
                )
    table = pd.DataFrame(rows)
    grouped = table.groupby(["model", "unlike part reads", "unlike share"], sort=False)
    cells = grouped.mean().map("{:.3f}".format) + " ± " + grouped.std().map("{:.3f}".format)
    print(f"| model | unlike part reads | unlike share | seeds | {' | '.join(cells.columns)} |")
    for (model, unlike, share), row in cells.iterrows():
        print(f"| {model} | {unlike} | {share:g} | {grouped.size()[(model, unlike, share)]} | {' | '.join(row)} |")


if __name__ == "__main__":
    main()
