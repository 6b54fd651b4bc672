"""A model that holds on another clinic's images, on real data: HAM10000 -> ISIC 2017 and ISIC 2017 -> HAM10000, over
seeds, for each lever of docs/training.md ("A model that holds elsewhere").

Each model trains by a recipe of studies/external_validation.py (--recipe: ResNet18 from random initialisation at
46 -> 40 px, or EfficientNet-Lite0 from ImageNet at 128 px on HAM10000 and 192 px on ISIC 2017), with:

- plain: aug=albu, no colour constancy (the reference);
- colour constancy: model.preprocessing.color_constancy=shades_of_gray;
- aug=domain: the acquisition shifts between dermoscopes;

and each is judged on the whole other set at the thresholds of its own validation (transferred), as it is and with
evaluation.adapt=batchnorm; and, the plain model, at the thresholds and temperature of a small labelled sample of the
other clinic (evaluation.threshold_source with the guaranteed rule and evaluation.calibration=temperature: 100
malignant and 300 benign images drawn at random), judged on the rest of that clinic. Then the sources path:
data=sources with both sets and cv.leave_out=source (each source left out in turn: with two sources, each run trains
on the other alone, so these runs check the path against the plain model rather than add a lever: they run for the
first seed only).

    python studies/hold_elsewhere.py --ham <HAM10000 folder> --isic2017 <ISIC 2017 folder> --seeds 0 1 2 \
        --recipe lite0-imagenet --out <folder>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from external_validation import BENIGN_HAM, RECIPES, Recipe, command, datasets

#: The levers trained, by what they add to the recipe.
TRAINED = {
    "plain": [],
    "colour constancy": ["model.preprocessing.color_constancy=shades_of_gray"],
    "aug=domain": ["aug=domain"],
}
EVALUATION = ["evaluation.bootstrap.resamples=0", "data.num_workers=2"]
DIRECTIONS = (("HAM10000", "ISIC 2017"), ("ISIC 2017", "HAM10000"))
SOURCES = [source for source, _ in DIRECTIONS]
#: evaluation.adapt: as trained, and with the batch norm statistics of the other set
ADAPTATIONS = ["none", "batchnorm"]
#: The other clinic's labelled sample that chooses the thresholds and the temperature: malignant, benign images.
SAMPLE = (100, 300)
LOCAL = [
    "evaluation.threshold_rule=guaranteed",
    "evaluation.calibration=temperature",
    "evaluation.target_recalls=[0.9,0.95]",
]


def labelled_images(dataset: str, ham: Path, isic: Path) -> pd.DataFrame:
    """Every image of the set as path (absolute) and label (1 melanoma), read as datasets() reads it."""
    if dataset == "ISIC 2017":
        table = pd.read_csv(isic / "labels.csv")
        return pd.DataFrame({"path": [str(isic / p) for p in table["path"]], "label": table["melanoma"].astype(int)})
    table = pd.read_csv(ham / "HAM10000_metadata.csv")
    table = table[table["dx"].isin(["mel", *BENIGN_HAM.strip("[]").split(",")])]
    images = [str(ham / "HAM10000_images" / f"{i}.jpg") for i in table["image_id"]]
    return pd.DataFrame({"path": images, "label": (table["dx"] == "mel").astype(int).to_numpy()})


def clinic_sample(images: pd.DataFrame, seed: int, folder: Path) -> tuple[Path, Path]:
    """sample.csv (SAMPLE's malignant and benign images, drawn with the seed) and rest.csv (the others)."""
    folder.mkdir(parents=True, exist_ok=True)
    malignant, benign = SAMPLE
    drawn = pd.concat(
        [
            images[images["label"] == 1].sample(malignant, random_state=seed),
            images[images["label"] == 0].sample(benign, random_state=seed),
        ]
    )
    images.loc[drawn.index].to_csv(folder / "sample.csv", index=False)
    images.drop(drawn.index).to_csv(folder / "rest.csv", index=False)
    return folder / "sample.csv", folder / "rest.csv"


def sources(ham: Path, isic: Path) -> str:
    """data.sources with both sets, read as datasets() reads them."""
    return (
        "data.sources=["
        f"{{name:HAM10000,preset:ham10000,table:'{ham / 'HAM10000_metadata.csv'}',images:'{ham / 'HAM10000_images'}',"
        f"malignant:[mel],benign:{BENIGN_HAM}}},"
        f"{{name:ISIC2017,preset:isic2017,table:'{isic / 'labels.csv'}',images:'{isic}',split_column:isic2017_part}}]"
    )


def figures(metrics: dict) -> dict[str, float]:
    """AUROC, AUPRC, and recall and specificity at each operating point (chosen on the model's own validation, or on
    the clinic's sample)."""
    points = {
        f"{figure} @{p['target_recall']:g}": p[f"test/{figure}"]
        for p in metrics["operating_points"]
        if p["target_recall"] in (0.9, 0.95)
        for figure in ("recall", "specificity")
    }
    return {"AUROC": metrics["test/auroc"], "AUPRC": metrics["test/auprc"], **points}


def evaluated(run: Path, target: list[str], name: str, *extra: str) -> dict:
    """The run's last checkpoint evaluated on the target (data overrides or input=), once."""
    folder = run / name
    if not (folder / "metrics.json").is_file():
        command(
            "evaluate",
            f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
            *target,
            *EVALUATION,
            *extra,
            f"hydra.run.dir={folder}",
        )
    return json.loads((folder / "metrics.json").read_text())


def trained(run: Path, recipe: list[str], *arguments: str) -> dict:
    """The run trained with the recipe's overrides and the arguments, once."""
    if not (run / "metrics.json").is_file():
        # the study's own overrides last: Hydra keeps the last of a key given twice (aug=domain, not the recipe's)
        command("train", *recipe, *arguments, "evaluation.bootstrap.resamples=0", f"hydra.run.dir={run}")
    return json.loads((run / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ham", type=Path, required=True)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", choices=list(RECIPES), default="resnet18-random")
    parser.add_argument("--levers", nargs="+", choices=list(TRAINED), default=list(TRAINED))
    parser.add_argument("--no-leave-out", action="store_true", help="leave the data=sources runs out")
    parser.add_argument(
        "--train-on", nargs="+", choices=SOURCES, default=SOURCES, help="the directions to run, by the set trained on"
    )
    parser.add_argument("--results", default="results.json", help="the file under --out that collects the runs")
    parser.add_argument(
        "--adapt", nargs="+", choices=ADAPTATIONS, default=ADAPTATIONS, help="how each model meets the other set"
    )
    parser.add_argument("--out", type=Path, default=Path("hold_elsewhere"))
    parser.add_argument("--table", action="store_true", help="print the table of the runs so far, and stop")
    arguments = parser.parse_args()
    if arguments.table:
        print(table(json.loads((arguments.out / arguments.results).read_text())))
        return
    ham, isic = arguments.ham.resolve(), arguments.isic2017.resolve()
    data = datasets(ham, isic)
    recipe: Recipe = RECIPES[arguments.recipe]
    results: dict[str, list[dict]] = {}

    def record(row: str, measured: dict[str, float], seed: int) -> None:
        results.setdefault(row, []).append(measured)
        print(f"{row} | seed {seed} | {json.dumps(measured)}", flush=True)
        (arguments.out / arguments.results).write_text(json.dumps(results, indent=2))

    for seed in arguments.seeds:
        for source, target in [d for d in DIRECTIONS if d[0] in arguments.train_on]:
            for lever in arguments.levers:
                run = arguments.out / f"{source}-{lever}-{seed}".replace(" ", "").replace(",", "+").replace("=", "-")
                internal = trained(
                    run,
                    recipe.on(source),
                    *data[source],
                    *TRAINED[lever],
                    f"data.split_dir={arguments.out / 'splits' / source.replace(' ', '')}",
                    f"seed={seed}",
                )
                for adapt in arguments.adapt:
                    external = evaluated(run, data[target], f"external-{adapt}", f"evaluation.adapt={adapt}")
                    name = lever if adapt == "none" else f"{lever}, adapt=batchnorm"
                    record(
                        f"{source} -> {target} | {name}",
                        {"internal AUROC": internal["test/auroc"], **figures(external)},
                        seed,
                    )
                if lever == "plain":
                    sample, rest = clinic_sample(
                        labelled_images(target, ham, isic),
                        seed,
                        arguments.out / f"clinic-{target}-{seed}".replace(" ", ""),
                    )
                    local = evaluated(
                        run, [f"input={rest}"], "clinic-sample", f"evaluation.threshold_source={sample}", *LOCAL
                    )
                    record(
                        f"{source} -> {target} | plain, thresholds and temperature from {sum(SAMPLE)} of its images",
                        {"internal AUROC": internal["test/auroc"], **figures(local)},
                        seed,
                    )
    # last, for the first seed only: with two sources the plain rows already give the spread over seeds
    seed = arguments.seeds[0]
    both = [
        "data=sources",
        sources(ham, isic),
        "data.skip_unlabelled=true",
        f"data.split_dir={arguments.out / 'splits-sources'}",
    ]
    for fold, (source, target) in enumerate([] if arguments.no_leave_out else DIRECTIONS[::-1]):
        # fold k leaves out source k: ISIC 2017 second
        run = arguments.out / f"left-out-{target}-{seed}".replace(" ", "")
        trained(run, recipe.on(source), *both, "cv.leave_out=source", f"cv.fold={fold}", f"seed={seed}")
        left_out = json.loads((run / "left_out" / "metrics.json").read_text())
        record(f"{source} -> {target} | data=sources, {target} left out", figures(left_out), seed)
    print(table(results))


def table(results: dict[str, list[dict]]) -> str:
    """The rows of docs/training.md's table: mean ± sd over the seeds (a single value for one seed)."""
    columns = [
        "internal AUROC",
        "AUROC",
        "AUPRC",
        "recall @0.95",
        "specificity @0.95",
        "recall @0.9",
        "specificity @0.9",
    ]
    lines = ["| train → external | configuration | seeds | " + " | ".join(columns) + " |"]
    for name, runs in results.items():
        direction, configuration = name.split(" | ")
        cells = []
        for figure in columns:
            values = np.array([r[figure] for r in runs if figure in r], dtype=float)
            spread = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
            cells.append(f"{values.mean():.3f}{spread}" if len(values) else "")
        lines.append(f"| {direction} | {configuration} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
