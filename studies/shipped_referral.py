"""The shipped referral rule (skinclf.metrics.decisions.referral_of) on the outputs studies/referral_rule.py keeps, at
several splits of the rate between its two parts: what it refers of a model's own test split, another clinic and the
photographs, and how much better it keeps the other clinic than all of it.

referral_rule.py chose the rule with its own copy of the scores; this runs skinclf's code (Familiarity for the
novelty, referral_of for the thresholds) on the same images, so the figures in docs/evaluation.md are the product's.
UNLIKE_SHARE is the share of the rate given to images unlike every image the model knows; the rest goes to the
images near the decision and unusual.

    python studies/shipped_referral.py --study <referral_rule.py --out> --shares 0.1 0.2 0.3
"""

from __future__ import annotations

import argparse
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from skinclf.metrics import decisions
from skinclf.metrics.decisions import HIGHEST_PRECISION, choose_thresholds, referral_of
from skinclf.models.novelty import Familiarity

RATE = 0.05
TARGET = 0.95
SETS = ("val", "test", "other", "photos")


def outputs(run: Path) -> dict[str, pd.DataFrame]:
    """Each set's label, probability and novelty score, as a checkpoint scores it."""
    kept = {name: np.load(run / f"{name}.npz") for name in ("bank", *SETS)}
    familiarity = Familiarity.fit(torch.from_numpy(kept["bank"]["early"]), torch.from_numpy(kept["val"]["early"]))
    return {
        name: pd.DataFrame(
            {
                "label": kept[name]["label"],
                "probability": kept[name]["probability"],
                "ood_score": familiarity.score(torch.from_numpy(kept[name]["early"])).numpy(),
            }
        )
        for name in SETS
    }


def measured(sets: dict[str, pd.DataFrame], share: float) -> dict[str, float]:
    thresholds = choose_thresholds(sets["val"], [TARGET], HIGHEST_PRECISION)
    with mock.patch.object(decisions, "UNLIKE_SHARE", share):
        referral = referral_of(sets["val"], RATE, "validation", thresholds)
        referred = {
            name: referral.scores(table["probability"].to_numpy(), table["ood_score"].to_numpy(), thresholds) > 0
            for name, table in sets.items()
        }
    other, kept = sets["other"], ~referred["other"]
    return {
        **{f"referred {name}": float(referred[name].mean()) for name in ("test", "other", "photos")},
        "other AUROC all": roc_auc_score(other["label"], other["probability"]),
        "other AUROC kept": roc_auc_score(other["label"][kept], other["probability"][kept]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="studies/referral_rule.py's --out folder")
    parser.add_argument("--shares", type=float, nargs="+", default=[decisions.UNLIKE_SHARE])
    arguments = parser.parse_args()
    rows: dict[tuple[str, float], list[dict[str, float]]] = {}
    for run in sorted(arguments.study.glob("*/*-plain-*")):
        if not all((run / f"{name}.npz").is_file() for name in ("bank", *SETS)):
            continue  # referral_rule.py has not finished this run
        sets = outputs(run)
        model = f"{run.parent.name}, trained on {run.name.split('-')[0]}"
        for share in arguments.shares:
            rows.setdefault((model, share), []).append(measured(sets, share))
    figures = " | ".join(next(iter(rows.values()))[0])
    print(f"| model | unlike share of the rate | seeds | {figures} | kept - all |")
    for (model, share), runs in rows.items():
        table = pd.DataFrame(runs)
        table["kept - all"] = table["other AUROC kept"] - table["other AUROC all"]
        cells = [f"{table[c].mean():.3f} ± {table[c].std(ddof=1):.3f}" for c in table.columns]
        print(f"| {model} | {share:g} | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
