"""A model that holds on another clinic's images, on real data: HAM10000 -> ISIC 2017 and ISIC 2017 -> HAM10000, over
seeds, for each lever of docs/training.md ("A model that holds elsewhere").

Each model is a ResNet18 from random initialisation at CPU scale, trained as studies/external_validation.py trains it
(46 -> 40 px, batch 64, 3 epochs on HAM10000 and 6 on ISIC 2017), with:

- plain: aug=albu, no colour constancy (the reference);
- colour constancy: model.preprocessing.color_constancy=shades_of_gray;
- aug=domain: the acquisition shifts between dermoscopes;

and each is judged on the whole other set at the thresholds of its own validation (transferred), as it is and with
evaluation.adapt=batchnorm. Then the sources path: data=sources with both sets and cv.leave_out=source (each source left
out in turn: with two sources, each run trains on the other alone, so these runs check the path against the plain
model rather than add a lever: they run for the first seed only). At CPU speed (about 5 minutes a run on 2 cores)
the study leaves out aug=domain with colour constancy together and both sets trained together (the ceiling: the
other clinic's images in training).

    python studies/hold_elsewhere.py --ham <HAM10000 folder> --isic2017 <ISIC 2017 folder> --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from external_validation import BENIGN_HAM, EPOCHS, TRAINING, command, datasets

#: The levers trained, by what they add to TRAINING.
TRAINED = {
    "plain": [],
    "colour constancy": ["model.preprocessing.color_constancy=shades_of_gray"],
    "aug=domain": ["aug=domain"],
}
EVALUATION = ["evaluation.bootstrap.resamples=0", "data.num_workers=2"]
DIRECTIONS = (("HAM10000", "ISIC 2017"), ("ISIC 2017", "HAM10000"))


def sources(ham: Path, isic: Path) -> str:
    """data.sources with both sets, read as datasets() reads them."""
    return (
        "data.sources=["
        f"{{name:HAM10000,preset:ham10000,table:'{ham / 'HAM10000_metadata.csv'}',images:'{ham / 'HAM10000_images'}',"
        f"malignant:[mel],benign:{BENIGN_HAM}}},"
        f"{{name:ISIC2017,preset:isic2017,table:'{isic / 'labels.csv'}',images:'{isic}',split_column:isic2017_part}}]"
    )


def figures(metrics: dict) -> dict[str, float]:
    """AUROC, AUPRC, and recall and specificity at the threshold chosen for 0.95 on the model's own validation."""
    point = next(p for p in metrics["operating_points"] if p["target_recall"] == 0.95)
    return {
        "AUROC": metrics["test/auroc"],
        "AUPRC": metrics["test/auprc"],
        "recall @0.95": point["test/recall"],
        "specificity @0.95": point["test/specificity"],
    }


def evaluated(run: Path, target: list[str], name: str, *extra: str) -> dict:
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


def trained(run: Path, *arguments: str) -> dict:
    if not (run / "metrics.json").is_file():
        # the study's own overrides last: Hydra keeps the last of a key given twice (aug=domain, not TRAINING's)
        command("train", *TRAINING, *arguments, "evaluation.bootstrap.resamples=0", f"hydra.run.dir={run}")
    return json.loads((run / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ham", type=Path, required=True)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("hold_elsewhere"))
    arguments = parser.parse_args()
    ham, isic = arguments.ham.resolve(), arguments.isic2017.resolve()
    data = datasets(ham, isic)
    results: dict[str, list[dict]] = {}

    def record(row: str, measured: dict[str, float], seed: int) -> None:
        results.setdefault(row, []).append(measured)
        print(f"{row} | seed {seed} | {json.dumps(measured)}", flush=True)
        (arguments.out / "results.json").write_text(json.dumps(results, indent=2))

    for seed in arguments.seeds:
        for source, target in DIRECTIONS:
            for lever, extra in TRAINED.items():
                run = arguments.out / f"{source}-{lever}-{seed}".replace(" ", "").replace(",", "+").replace("=", "-")
                internal = trained(
                    run,
                    *data[source],
                    *extra,
                    f"data.split_dir={arguments.out / 'splits' / source.replace(' ', '')}",
                    f"trainer.max_epochs={EPOCHS[source]}",
                    f"seed={seed}",
                )
                for adapt in ("none", "batchnorm"):
                    external = evaluated(run, data[target], f"external-{adapt}", f"evaluation.adapt={adapt}")
                    name = lever if adapt == "none" else f"{lever}, adapt=batchnorm"
                    record(
                        f"{source} -> {target} | {name}",
                        {"internal AUROC": internal["test/auroc"], **figures(external)},
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
    for fold, (source, target) in enumerate(DIRECTIONS[::-1]):  # fold k leaves out source k: ISIC 2017 second
        run = arguments.out / f"left-out-{target}-{seed}".replace(" ", "")
        trained(
            run,
            *both,
            "cv.leave_out=source",
            f"cv.fold={fold}",
            f"trainer.max_epochs={EPOCHS[source]}",
            f"seed={seed}",
        )
        left_out = json.loads((run / "left_out" / "metrics.json").read_text())
        record(f"{source} -> {target} | data=sources, {target} left out", figures(left_out), seed)
    for name, runs in results.items():
        line = (
            [
                f"{figure} {np.mean([r[figure] for r in runs]):.3f} ± {np.std([r[figure] for r in runs], ddof=1):.3f}"
                for figure in runs[0]
            ]
            if len(runs) > 1
            else [json.dumps(runs[0])]
        )
        print(f"{name} ({len(runs)} seeds): " + "; ".join(line))


if __name__ == "__main__":
    main()
