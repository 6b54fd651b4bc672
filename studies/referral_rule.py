"""Which per-image score should refer an image to be decided by hand, which tells a photograph from dermoscopy, and
which set-level test says a whole set is not what the model knows: the study behind issue 36's rules.

For each trained run (the plain runs of studies/hold_elsewhere.py, with either recipe: ResNet18 from random
initialisation or EfficientNet-Lite0 from ImageNet; HAM10000 -> ISIC 2017 and back) the images of its own
validation (where every threshold is chosen: the operating points, and referral at evaluation.referral_rate=0.05),
a sample of its training images (the bank the feature scores compare with), its own test split, a sample of the
other set (another clinic's dermoscopy) and the clinical photographs of skin lesions (not dermoscopy) are passed
through the model once, keeping for each image: its probability, its pooled features (the head's input), the
mean and standard deviation of each channel of an early block (what the dermoscope, the light and the camera leave),
and the pooled features of a frozen ImageNet EfficientNet-Lite0 (what the image shows, whatever the model learnt).

The candidate scores, each higher = refer:

- ``max-softmax``: -max(p, 1 - p); ``margin``: -|logit(p) - logit(threshold at recall 0.95)|, how near the decision
  the image lies (the model's own confidence, Jaeger et al. 2023);
- ``mahalanobis``: today's ood_score (Lee et al. 2018, class means, shared shrunk covariance);
- ``knn features`` (Sun et al. 2022, k = 50, L2-normalised), ``relative mahalanobis`` (Ren et al. 2021) on the pooled
  features; ``knn early``: kNN on the early block's channel statistics; ``knn imagenet``: on the frozen ImageNet
  features (pytorch-ood's detectors);
- combinations: the mean, or the maximum, of two scores' percentiles among the model's own validation scores.

Each is judged by what it keeps on the other clinic (AUROC of the kept against all; the error at the 0.95 threshold
among the kept along the risk-coverage curve, AURC; recall and specificity at 0.95 on the kept) and by what it
refers: the share of its own test split, of the other clinic and of the photographs, at the threshold that refers 5 %
of its own validation. The set alarm: an MMD two-sample test (RBF kernel, median bandwidth, permutation p-value) of
100 images against the model's own validation, on the pooled and on the ImageNet features: how often it fires on
draws of its own test split (false alarms), of the other clinic and of the photographs.

It studies checkpoints whose novelty was the Mahalanobis distance of the pooled features (the rule it replaced), so
it runs with skinclf as it was then: a checkout of f535c3e (git worktree add <folder> f535c3e; PYTHONPATH=<folder>).

    python studies/referral_rule.py --ham <HAM10000> --isic2017 <ISIC 2017> --photos <clinical_photos> \\
        --runs <hold_elsewhere out>/HAM10000-plain-0 ... --out <folder>
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from pytorch_ood.detector import KNN, RMD
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hold_elsewhere import labelled_images

from skinclf.config.presets import preprocessing_preset
from skinclf.config.schema import Preprocessing
from skinclf.data.dataset import eval_dataset
from skinclf.metrics.decisions import HIGHEST_PRECISION, choose_thresholds
from skinclf.models.novelty import pooled_features
from skinclf.models.timm_models import pretrained_state_dict
from skinclf.trained import CheckpointModel

#: Images drawn from a run's training split (the feature bank) and from the other clinic.
BANK, OTHER = 2000, 2000
RATE = 0.05
K = 50
#: The set alarm: images in a drawn set, draws, permutations, level.
SET_SIZE, DRAWS, PERMUTATIONS, LEVEL = 100, 50, 200, 0.01
IMAGENET_ARCH = "tf_efficientnet_lite0"


def early_block(model: nn.Module) -> nn.Module:
    """The block whose output the early statistics read: ResNets' layer1, EfficientNets' second stage."""
    return model.layer1 if hasattr(model, "layer1") else model.blocks[1]


def imagenet_model() -> tuple[nn.Module, Preprocessing]:
    """The frozen ImageNet EfficientNet-Lite0 (its pooled features, 1280 each) and how it sees an image."""
    model = timm.create_model(IMAGENET_ARCH, num_classes=0)
    state, _ = pretrained_state_dict(IMAGENET_ARCH, model)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")})
    preset = preprocessing_preset(IMAGENET_ARCH, "pretrained", "timm")
    return model.eval(), Preprocessing(**preset, color_constancy="none", jpeg_dct_scaling=True)


def loader(preprocessing: Preprocessing, table: pd.DataFrame) -> DataLoader:
    dataset = eval_dataset(preprocessing, Path("/"), table[["path"]], tolerate_unreadable=True)
    return DataLoader(dataset, batch_size=64, num_workers=2)


@torch.inference_mode()
def imagenet_features(table: pd.DataFrame, cache: Path) -> np.ndarray:
    """The frozen ImageNet features of the images (absolute paths), cached by path."""
    if cache.is_file():
        stored = np.load(cache, allow_pickle=True)
        known = dict(zip(stored["paths"], stored["features"], strict=True))
        if all(p in known for p in table["path"]):
            return np.stack([known[p] for p in table["path"]])
    model, preprocessing = imagenet_model()
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1) * 255
    features = np.concatenate(
        [model((batch["image"].float() - mean) / std).numpy() for batch in loader(preprocessing, table)]
    )
    np.savez(cache, paths=table["path"].to_numpy(), features=features)
    return features


@torch.inference_mode()
def model_outputs(model: CheckpointModel, table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Probability, pooled features and early channel statistics of each image (absolute paths)."""
    classifier = model.classifier.eval()
    early: list[torch.Tensor] = []
    hook = early_block(classifier.backbone).register_forward_hook(
        lambda module, inputs, output: early.append(torch.cat([output.mean((2, 3)), output.std((2, 3))], 1))
    )
    probabilities, pooled_all = [], []
    try:
        with pooled_features(classifier.head) as pooled:
            for batch in loader(model.preprocessing, table):
                probabilities.append(classifier(batch["image"]).sigmoid().flatten())
                pooled_all.append(pooled.features)
    finally:
        hook.remove()
    return {
        "probability": torch.cat(probabilities).numpy(),
        "features": torch.cat(pooled_all).numpy(),
        "early": torch.cat(early).numpy(),
    }


def outputs_of(model: CheckpointModel, name: str, table: pd.DataFrame, folder: Path, imagenet_cache: Path) -> dict:
    """Every kept output of the images, cached in the run's study folder."""
    path = folder / f"{name}.npz"
    if not path.is_file():
        found = model_outputs(model, table)
        found["imagenet"] = imagenet_features(table, imagenet_cache)
        np.savez(path, label=table["label"].to_numpy(), **found)
    return dict(np.load(path))


def absolute(images: pd.DataFrame, root: Path) -> pd.DataFrame:
    return images.assign(path=[str(root / p) for p in images["path"]])


def percentile_of(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    ordered = np.sort(reference)
    return (np.searchsorted(ordered, scores, "left") + np.searchsorted(ordered, scores, "right")) / (2 * len(ordered))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def candidate_scores(model: CheckpointModel, sets: dict[str, dict], threshold: float) -> dict[str, dict]:
    """Every candidate score of every set, by score name then set name."""
    bank = sets["bank"]
    detectors = {}
    for space in ("features", "early", "imagenet"):
        unlabelled = torch.zeros(len(bank[space]), dtype=torch.long)
        detectors[f"knn {space}"] = (KNN(None, k=K).fit_features(torch.tensor(bank[space]).float(), unlabelled), space)
    detectors["relative mahalanobis"] = (
        RMD(None).fit_features(torch.tensor(bank["features"]).float(), torch.tensor(bank["label"]).long()),
        "features",
    )
    novelty = model.classifier.novelty
    scores: dict[str, dict] = {}
    for name, data in sets.items():
        p = data["probability"]
        found = {
            "max-softmax": -np.maximum(p, 1 - p),
            "margin": -np.abs(logit(p) - logit(np.array(threshold))),
            "mahalanobis": novelty.score(torch.tensor(data["features"]).float()).numpy(),
        }
        for score, (detector, space) in detectors.items():
            found[score] = detector.predict_features(torch.tensor(data[space]).float()).numpy()
        for score, value in found.items():
            scores.setdefault(score, {})[name] = value
    singles = list(scores)
    for first in ("margin", "max-softmax"):
        for second in ("knn features", "knn early", "knn imagenet", "mahalanobis"):
            for how, combine in (("mean", np.mean), ("max", np.max)):
                scores[f"{how}({first}, {second})"] = {
                    name: combine([percentile_of(scores[s]["val"], scores[s][name]) for s in (first, second)], axis=0)
                    for name in sets
                }
    for second in ("knn features", "knn early", "knn imagenet"):  # the image near the decision, or unlike any seen
        mean = f"mean(margin, {second})"
        scores[f"max({mean}, {second})"] = {
            name: np.maximum(
                percentile_of(scores[mean]["val"], scores[mean][name]),
                percentile_of(scores[second]["val"], scores[second][name]),
            )
            for name in sets
        }
    for near, unlike in ((0.04, 0.01), (0.03, 0.02)):  # near the decision, or far from every image seen
        for second in ("knn early", "knn imagenet"):
            mean = f"mean(margin, {second})"
            scores[f"{mean} at {near:.0%} or {second} at {unlike:.0%}"] = {
                name: np.maximum(
                    percentile_of(scores[mean]["val"], scores[mean][name]) - (1 - near),
                    percentile_of(scores[second]["val"], scores[second][name]) - (1 - unlike),
                )
                for name in sets
            }
    return {score: scores[score] for score in [*singles, *[s for s in scores if s not in singles]]}


def rates(p: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    decided = p >= threshold
    return float(decided[labels == 1].mean()), float((~decided[labels == 0]).mean())


def aurc(score: np.ndarray, wrong: np.ndarray) -> float:
    """The mean error among the kept images as the highest-scored are referred one at a time (lower is better)."""
    kept_by_coverage = np.cumsum(wrong[np.argsort(score, kind="stable")]) / np.arange(1, len(score) + 1)
    return float(kept_by_coverage.mean())


def judged(scores: dict[str, np.ndarray], sets: dict[str, dict], threshold: float) -> dict[str, float]:
    """What the score refers and keeps (at the threshold that refers RATE of the model's own validation)."""
    cut = np.quantile(scores["val"], 1 - RATE)
    other = sets["other"]
    kept = scores["other"] <= cut
    labels, p = other["label"], other["probability"]
    wrong = (p >= threshold) != (labels == 1)
    recall_all, specificity_all = rates(p, labels, threshold)
    recall_kept, specificity_kept = rates(p[kept], labels[kept], threshold)
    own = np.r_[np.zeros(len(scores["test"])), np.ones(len(scores["photos"]))]
    own_wrong = (sets["test"]["probability"] >= threshold) != (sets["test"]["label"] == 1)
    return {
        "referred: own test": float((scores["test"] > cut).mean()),
        "referred: other clinic": float(1 - kept.mean()),
        "referred: photographs": float((scores["photos"] > cut).mean()),
        "AUROC own test vs photographs": float(roc_auc_score(own, np.r_[scores["test"], scores["photos"]])),
        "other clinic AUROC: all": float(roc_auc_score(labels, p)),
        "other clinic AUROC: kept": float(roc_auc_score(labels[kept], p[kept])),
        "other clinic AURC": aurc(scores["other"], wrong),
        "own test AURC": aurc(scores["test"], own_wrong),
        "other clinic recall @0.95: all / kept": f"{recall_all:.3f} / {recall_kept:.3f}",
        "other clinic specificity @0.95: all / kept": f"{specificity_all:.3f} / {specificity_kept:.3f}",
    }


def at_rates(scores: dict[str, np.ndarray]) -> dict[str, str]:
    """The share of the own test split, the other clinic and the photographs referred at thresholds that refer 1, 2
    and 5 % of the model's own validation: how a score tells a photograph from dermoscopy at each strictness."""
    shares = {}
    for rate in (0.01, 0.02, 0.05):
        cut = np.quantile(scores["val"], 1 - rate)
        shares[f"{rate:.0%} of validation"] = " / ".join(
            f"{(scores[name] > cut).mean():.3f}" for name in ("test", "other", "photos")
        )
    return shares


def mmd_p_value(reference: torch.Tensor, drawn: torch.Tensor, generator: torch.Generator) -> float:
    """The permutation p-value of the squared MMD (RBF kernel, the median squared distance of the reference as
    bandwidth; biased V-statistic), every relabelling at once: its statistic is w' K w, w = 1/n on one side and -1/m
    on the other."""
    pooled = torch.cat([reference, drawn]).double()
    squared = torch.cdist(pooled, pooled).pow(2)
    n, m = len(reference), len(drawn)
    kernel = torch.exp(-squared / squared[:n, :n].median().clamp_min(1e-12))
    orders = torch.stack(
        [torch.arange(n + m), *(torch.randperm(n + m, generator=generator) for _ in range(PERMUTATIONS))]
    )
    by_position = torch.where(torch.arange(n + m) < n, 1.0 / n, -1.0 / m).double().expand(len(orders), -1)
    weights = torch.empty_like(by_position).scatter_(1, orders, by_position)
    statistics = ((weights @ kernel) * weights).sum(1)
    return float((1 + (statistics[1:] >= statistics[0]).sum()) / (1 + PERMUTATIONS))


def set_alarm(sets: dict[str, dict], space: str) -> dict[str, float]:
    """How often the MMD test at LEVEL fires on drawn sets of SET_SIZE images, against the model's own validation."""
    generator = torch.Generator().manual_seed(0)
    reference = torch.tensor(sets["val"][space]).float()
    reference = nn.functional.normalize(reference, dim=1)
    fired = {}
    for name in ("test", "other", "photos"):
        data = nn.functional.normalize(torch.tensor(sets[name][space]).float(), dim=1)
        alarms = []
        for _ in range(DRAWS):
            drawn = data[torch.randperm(len(data), generator=generator)[:SET_SIZE]]
            alarms.append(mmd_p_value(reference, drawn, generator) < LEVEL)
        fired[f"fires on {name}"] = float(np.mean(alarms))
    return fired


def score_alarm(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """The set alarm on one score alone: a two-sample Kolmogorov-Smirnov test of the drawn set's scores against the
    model's own validation's, at LEVEL, over the same draws."""
    rng = np.random.default_rng(0)
    fired = {}
    for name in ("test", "other", "photos"):
        alarms = [
            ks_2samp(scores["val"], rng.choice(scores[name], SET_SIZE, replace=False)).pvalue < LEVEL
            for _ in range(DRAWS)
        ]
        fired[f"fires on {name}"] = float(np.mean(alarms))
    return fired


def study_run(run: Path, data: dict[str, pd.DataFrame], photos: pd.DataFrame, out: Path) -> dict:
    model = CheckpointModel(run / "checkpoints" / "last.ckpt")
    source = "HAM10000" if run.name.startswith("HAM") else "ISIC 2017"
    other = "ISIC 2017" if source == "HAM10000" else "HAM10000"
    folder = out / run.parent.name / run.name
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "val": absolute(model.split("val").table, model.split("val").root),
        "test": absolute(model.split("test").table, model.split("test").root),
        "bank": absolute(model.split("train").table, model.split("train").root).sample(
            min(BANK, len(model.split("train").table)), random_state=0
        ),
        "other": data[other].sample(min(OTHER, len(data[other])), random_state=0),
        "photos": photos,
    }
    sets = {
        name: outputs_of(model, name, table[["path", "label"]], folder, out / f"imagenet-{name}-{source}.npz")
        for name, table in tables.items()
    }
    validation = pd.DataFrame({"label": sets["val"]["label"], "probability": sets["val"]["probability"]})
    threshold = next(iter(choose_thresholds(validation, [0.95], HIGHEST_PRECISION).values()))
    scores = candidate_scores(model, sets, threshold)
    return {
        "run": str(run),
        "scores": {name: judged(score, sets, threshold) for name, score in scores.items()},
        "referred own test / other clinic / photographs": {name: at_rates(score) for name, score in scores.items()},
        "set alarm": {
            **{space: set_alarm(sets, space) for space in ("features", "early", "imagenet")},
            "knn early score (KS)": score_alarm(scores["knn early"]),
        },
    }


SUMMARISED = (
    "referred: own test",
    "referred: other clinic",
    "referred: photographs",
    "other clinic AUROC: all",
    "other clinic AUROC: kept",
    "other clinic AURC",
)


def summary(results: dict, scores: list[str] | None = None) -> str:
    """Mean ± sd over the seeds of each recipe and direction: every score's figures, then the set alarms'."""
    groups: dict[str, list[dict]] = {}
    for key, result in results.items():
        recipe, run = key.split("/")
        groups.setdefault(f"{recipe} {run.rsplit('-', 1)[0]}", []).append(result)
    lines = []
    for group, runs in groups.items():
        lines.append(f"\n{group} ({len(runs)} seeds)\n| score | " + " | ".join(SUMMARISED) + " |")
        for score in scores or list(runs[0]["scores"]):
            cells = []
            for figure in SUMMARISED:
                values = np.array([r["scores"][score][figure] for r in runs])
                cells.append(
                    f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"
                )
            lines.append(f"| {score} | " + " | ".join(cells) + " |")
        for alarm in runs[0]["set alarm"]:
            fired = {k: np.mean([r["set alarm"][alarm][k] for r in runs]) for k in runs[0]["set alarm"][alarm]}
            lines.append(f"set alarm on {alarm}: " + ", ".join(f"{k} {v:.2f}" for k, v in fired.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ham", type=Path, required=True)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs="*", default=[])
    parser.add_argument("--summary", action="store_true", help="print the tables of the runs studied so far")
    parser.add_argument("--out", type=Path, default=Path("referral_rule"))
    arguments = parser.parse_args()
    stored = arguments.out / "results.json"
    if arguments.summary:
        print(summary(json.loads(stored.read_text())))
        return
    ham, isic = arguments.ham.resolve(), arguments.isic2017.resolve()
    data = {name: labelled_images(name, ham, isic) for name in ("HAM10000", "ISIC 2017")}
    table = pd.read_csv(arguments.photos / "clinical_photos.csv")
    photos = pd.DataFrame(
        {
            "path": [str(arguments.photos.resolve() / "images" / i) for i in table["image_id"]],
            "label": (table["benign_malignant"] == "malignant").astype(int),
        }
    )
    arguments.out.mkdir(parents=True, exist_ok=True)
    stored = arguments.out / "results.json"
    results = json.loads(stored.read_text()) if stored.is_file() else {}
    for run in arguments.runs:
        key = f"{run.parent.name}/{run.name}"
        if key not in results or "mean(margin, knn early) at 4% or knn early at 1%" not in results[key]["scores"]:
            results[key] = study_run(run.resolve(), data, photos, arguments.out)
            (arguments.out / "results.json").write_text(json.dumps(results, indent=2))
        print(key, json.dumps(results[key]["set alarm"]), flush=True)


if __name__ == "__main__":
    main()
