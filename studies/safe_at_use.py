"""Safe at the point of use, on real data: HAM10000 -> ISIC 2017 and ISIC 2017 -> HAM10000, over seeds.

For each model (ResNet18 from random initialisation at CPU scale, as studies/external_validation.py trains it):

- referral: the AUROC of its ood_score (its features' distance to the training images) between its own test images
  and the other set's images, and between its own test images and images that are not dermoscopy (flat colours,
  text, generated scenes, scikit-learn's sample photographs); beside it the same for the maximum softmax of its one
  logit (max(p, 1 - p), the usual logit-based score); the share of the other set it refers at
  evaluation.referral_rate=0.05, and the recall and specificity at the threshold for 0.95 on all of it and on the
  images it keeps;
- the guaranteed rule: the test recall its thresholds give on the model's own test split against the target (0.9,
  and 0.95 where the validation holds the 59 malignant images it needs), beside the highest-precision rule's.

    python studies/safe_at_use.py --ham <HAM10000 folder> --isic2017 <ISIC 2017 folder> --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from external_validation import EPOCHS, TRAINING, command, datasets
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_referral import not_dermoscopy

GUARANTEED = ("evaluation.threshold_rule=guaranteed", "evaluation.bootstrap.resamples=0")


def auroc(own: np.ndarray, other: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.zeros(len(own)), np.ones(len(other))], np.r_[own, other]))


def least_sure(predictions: pd.DataFrame) -> np.ndarray:
    """The logit-based novelty score: minus the maximum softmax of one logit, -max(p, 1 - p)."""
    probability = predictions["probability"].to_numpy()
    return -np.maximum(probability, 1 - probability)


def guaranteed_recall(run: Path, target: float) -> float | None:
    """The test recall of the guaranteed threshold for the target, or None where the validation cannot give it."""
    out = run / f"guaranteed_{target:g}"
    if not (out / "metrics.json").is_file():
        refused = command(
            "evaluate",
            f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
            *GUARANTEED,
            f"evaluation.target_recalls=[{target}]",
            f"hydra.run.dir={out}",
            allowed_to_fail=True,
        )
        if refused:
            return None
    return json.loads((out / "metrics.json").read_text())["operating_points"][0]["test/recall"]


def measure(run: Path, external: Path, odd: Path, kinds: dict[str, list[str]]) -> dict[str, float | None]:
    own = pd.read_csv(run / "predictions_test.csv")
    there = pd.read_csv(external / "predictions_test.csv")
    odd_scores = pd.read_csv(odd / "predictions.csv")
    metrics = json.loads((external / "metrics.json").read_text())
    internal = json.loads((run / "metrics.json").read_text())
    referral = metrics["referral"]
    at95 = next(p for p in referral["operating_points"] if p["target_recall"] == 0.95)
    highest = {p["target_recall"]: p["test/recall"] for p in internal["operating_points"]}
    return {
        "ood AUROC: own test vs external": auroc(own["ood_score"], there["ood_score"]),
        "ood AUROC: own test vs not dermoscopy": auroc(own["ood_score"], odd_scores["ood_score"]),
        **{
            f"ood AUROC: own test vs {kind}": auroc(
                own["ood_score"], odd_scores.set_index("path").loc[paths, "ood_score"]
            )
            for kind, paths in kinds.items()
        },
        "max-softmax AUROC: own test vs external": auroc(least_sure(own), least_sure(there)),
        "max-softmax AUROC: own test vs not dermoscopy": auroc(least_sure(own), least_sure(odd_scores)),
        "share of own test referred": internal["referral"]["share_referred"],
        "share of external referred": referral["share_referred"],
        "external recall @0.95, all": at95["all"]["recall"],
        "external recall @0.95, kept": at95["kept"]["recall"],
        "external specificity @0.95, all": at95["all"]["specificity"],
        "external specificity @0.95, kept": at95["kept"]["specificity"],
        **{f"test recall, target {t:g}, highest precision": highest.get(t) for t in (0.9, 0.95)},
        **{f"test recall, target {t:g}, guaranteed": guaranteed_recall(run, t) for t in (0.9, 0.95)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ham", type=Path, required=True)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("safe_at_use"))
    arguments = parser.parse_args()
    data = datasets(arguments.ham.resolve(), arguments.isic2017.resolve())
    odd = arguments.out / "not_dermoscopy"
    kinds = not_dermoscopy(odd / "images", count=50)
    results: dict[str, list[dict]] = {}
    for seed in arguments.seeds:
        for source, target in (("HAM10000", "ISIC 2017"), ("ISIC 2017", "HAM10000")):
            run = arguments.out / f"{source}-{seed}".replace(" ", "")
            if not (run / "metrics.json").is_file():
                command(
                    "train",
                    *data[source],
                    *TRAINING,
                    f"data.split_dir={arguments.out / 'splits' / source.replace(' ', '')}",
                    "data.val_min_malignant=60",
                    "evaluation.target_recalls=[0.9,0.95]",
                    f"trainer.max_epochs={EPOCHS[source]}",
                    f"seed={seed}",
                    f"hydra.run.dir={run}",
                )
            external = run / "external"
            if not (external / "metrics.json").is_file():
                command(
                    "evaluate",
                    f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
                    *data[target],
                    "evaluation.bootstrap.resamples=0",
                    "data.num_workers=2",
                    f"hydra.run.dir={external}",
                )
            predicted = run / "not_dermoscopy"
            if not (predicted / "predictions.csv").is_file():
                command(
                    "predict",
                    f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
                    f"input={odd / 'images'}",
                    f"hydra.run.dir={predicted}",
                )
            measured = measure(run, external, predicted, kinds)
            results.setdefault(f"{source} -> {target}", []).append(measured)
            print(f"{source} -> {target} | seed {seed} | {json.dumps(measured)}", flush=True)
            (arguments.out / "results.json").write_text(json.dumps(results, indent=2))
    for name, runs in results.items():
        print(f"\n{name} ({len(runs)} seeds)")
        for figure in runs[0]:
            values = np.array([np.nan if r[figure] is None else r[figure] for r in runs], dtype=float)
            given = values[~np.isnan(values)]
            spread = f" ± {given.std(ddof=1):.3f}" if len(given) > 1 else ""
            print(f"  {figure}: {given.mean():.3f}{spread}" if len(given) else f"  {figure}: refused (too few)")


if __name__ == "__main__":
    main()
