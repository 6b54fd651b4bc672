"""Does evaluation.adapt=batchnorm need its guard for the class mix? HAM10000 models (from studies/hold_elsewhere.py)
judged on ISIC 2017 drawn at a screening clinic's share of melanomas (5 %) and a referral clinic's (50 %): as they
are, adapted with the guard (skinclf's: the images drawn back to the training share by the model's own scores) and
adapted plainly (every image once, as AdaBN does).

Re-estimating batch-norm statistics on a target set is known to go wrong when the share of malignant cases differs
from training: the statistics follow the majority class. The unguarded arm is skinclf's evaluate with the draw's
weights replaced by ones, in this process (the library has no switch for it: unguarded is not offered).

    python studies/adapt_guard.py --study <hold_elsewhere folder> --isic2017 <ISIC 2017 folder> --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: The malignant shares of the clinics drawn from ISIC 2017.
SHARES = (0.05, 0.5)
#: Each arm: its evaluation.adapt and whether the draw is guarded for the class mix.
ARMS = {
    "as it is": ("none", True),
    "adapted with the guard": ("batchnorm", True),
    "adapted without the guard": ("batchnorm", False),
}


def clinic(labels: pd.DataFrame, share: float, folder: Path) -> Path:
    """ISIC 2017 drawn at a share of melanomas: every image of the scarcer class, the other subsampled (seed 0)."""
    melanoma, benign = labels[labels["melanoma"] == 1], labels[labels["melanoma"] == 0]
    if share * len(labels) < len(melanoma):
        melanoma = melanoma.sample(round(share / (1 - share) * len(benign)), random_state=0)
    else:
        benign = benign.sample(round((1 - share) / share * len(melanoma)), random_state=0)
    path = folder / f"isic2017_{round(share * 100)}pct.csv"
    pd.concat([melanoma, benign]).to_csv(path, index=False)
    return path


def evaluated(checkpoint: Path, table: Path, isic: Path, adapt: str, guarded: bool, folder: Path) -> float:
    if not (folder / "metrics.json").is_file():
        arguments = [
            f"ckpt={checkpoint}",
            "data=isic2017",
            f"data.table={table}",
            f"data.images={isic}",
            "data.split_column=isic2017_part",
            f"evaluation.adapt={adapt}",
            "evaluation.bootstrap.resamples=0",
            "data.num_workers=2",
            f"hydra.run.dir={folder}",
        ]
        entry = ["-m", "skinclf.evaluate"] if guarded else [__file__, "evaluate-unguarded"]
        subprocess.run([sys.executable, *entry, *arguments], check=True, capture_output=True)
    return json.loads((folder / "metrics.json").read_text())["test/auroc"]


def evaluate_unguarded() -> None:
    """skinclf's evaluate, its batch-norm draw unweighted (every image equally likely)."""
    import skinclf.trained.inference
    from skinclf.evaluate import main

    skinclf.trained.inference.class_mix_weights = lambda probabilities, share: np.ones_like(probabilities)
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    main()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="the --out folder of studies/hold_elsewhere.py")
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--levers", nargs="+", default=["plain", "colourconstancy"])
    arguments = parser.parse_args()
    isic = arguments.isic2017.resolve()
    out = arguments.study / "adapt_guard"
    out.mkdir(exist_ok=True)
    labels = pd.read_csv(isic / "labels.csv")
    results: dict[str, list[float]] = {}
    for share in SHARES:
        table = clinic(labels, share, out)
        for lever in arguments.levers:
            for seed in arguments.seeds:
                checkpoint = arguments.study / f"HAM10000-{lever}-{seed}" / "checkpoints" / "last.ckpt"
                for arm, (adapt, guarded) in ARMS.items():
                    name = f"{lever}-{seed}-{round(share * 100)}pct-{arm.replace(' ', '_')}"
                    auroc = evaluated(checkpoint, table, isic, adapt, guarded, out / name)
                    results.setdefault(f"{lever} | {share:.0%} melanoma | {arm}", []).append(auroc)
                    print(f"{name}: AUROC {auroc:.3f}", flush=True)
                    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| model | melanoma share | " + " | ".join(ARMS) + " |\n|---|---|" + "---|" * len(ARMS))
    for share in SHARES:
        for lever in arguments.levers:
            cells = [results[f"{lever} | {share:.0%} melanoma | {arm}"] for arm in ARMS]
            row = " | ".join(f"{np.mean(c):.3f} ± {np.std(c, ddof=1):.3f}" for c in cells)
            print(f"| HAM10000 {lever} | {share:.0%} | {row} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["evaluate-unguarded"]:
        evaluate_unguarded()
    else:
        main()
