"""A clinic's pilot on real data (issue 37): ISIC 2017 cut to 100 training images, drawn stratified from its official
training and validation parts, with its whole official test split; trained as a clinic would train its first
model (EfficientNet-Lite0 from ImageNet, studies/external_validation.py's recipe), over seeds. It trains, reports
AUROC with its interval, and says why no operating point is set.

    python studies/clinic_pilot.py --isic2017 <ISIC 2017 folder> --out <folder> --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from external_validation import RECIPES, command

TRAINING_IMAGES = 100


def pilot_folder(isic: Path, folder: Path) -> Path:
    """train/ and test/ class folders of links to the drawn training images and the official test images."""
    if (folder / "train").is_dir():
        return folder
    table = pd.read_csv(isic / "labels.csv")
    test = table["isic2017_part"].str.startswith("Test")
    pool = table[~test]
    share = TRAINING_IMAGES / len(pool)
    drawn = pd.concat([rows.sample(round(share * len(rows)), random_state=0) for _, rows in pool.groupby("melanoma")])
    for split, rows in (("train", drawn), ("test", table[test])):
        for path, melanoma in zip(rows["path"], rows["melanoma"], strict=True):
            link = folder / split / ("malignant" if melanoma else "benign") / Path(path).name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(isic / path)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("clinic_pilot"))
    arguments = parser.parse_args()
    root = pilot_folder(arguments.isic2017.resolve(), arguments.out.resolve() / "data")
    recipe = RECIPES["lite0-imagenet"]
    for seed in arguments.seeds:
        run = arguments.out / f"seed{seed}"
        if not (run / "metrics.json").is_file():
            command("train", *recipe.on("ISIC 2017"), f"data.root={root}", f"seed={seed}", f"hydra.run.dir={run}")
        metrics = json.loads((run / "metrics.json").read_text())
        low, high = metrics["test/auroc_ci"]
        print(
            f"seed {seed}: {metrics['training_data']['images']} training images "
            f"({metrics['training_data']['malignant']} malignant), validation {metrics['val/images']} "
            f"({metrics['val/malignant']} malignant); test AUROC {metrics['test/auroc']:.3f} [{low:.3f}, {high:.3f}]"
        )
        for point in metrics.get("undecided", {}).get("operating_points", []):
            print(f"  recall >= {point['target_recall']:g}: {point['reason']}")
        if "undecided" in metrics:
            print(f"  {metrics['undecided']['what_decides']}")


if __name__ == "__main__":
    main()
