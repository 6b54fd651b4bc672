"""Referral: every prediction gets an ood_score from the model's early statistics, images unlike its training images
are referred, and an evaluation says how many and what the decisions are on the images kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_in_process, trained_metrics
from PIL import Image, ImageDraw
from pytorch_ood.detector import KNN
from sklearn.datasets import load_sample_images
from sklearn.metrics import roc_auc_score

from skinclf.metrics.decisions import UNLIKE_SHARE, DecisionPolicy
from skinclf.models.novelty import Familiarity, K

#: A clinic whose camera and light tint every image blue and darken it.
TINT = np.array([0.7, 0.8, 1.15]) * 0.85


def not_dermoscopy(folder: Path, count: int = 20) -> dict[str, list[str]]:
    """Images that are clearly not dermoscopy, by kind: a flat colour, text, a generated scene, scikit-learn's
    sample photographs (cut into crops)."""
    rng = np.random.default_rng(0)
    photos = load_sample_images().images
    drawn: dict[str, list[np.ndarray]] = {"flat colour": [], "text": [], "scene": [], "photograph": []}
    for i in range(count):
        drawn["flat colour"].append(np.full((64, 64, 3), rng.integers(0, 256, 3), np.uint8))
        page = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(180, 256, 3)))
        for line in range(4):
            ImageDraw.Draw(page).text((2, 2 + 15 * line), "".join(rng.choice(list("abcdefgh ijk"), 10)), fill=0)
        drawn["text"].append(np.asarray(page))
        y, x = np.mgrid[:64, :64] * rng.uniform(1, 4, (2, 1, 1))
        drawn["scene"].append(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8))
        photo = photos[i % 2]
        top, left = rng.integers(0, photo.shape[0] - 200), rng.integers(0, photo.shape[1] - 200)
        drawn["photograph"].append(
            np.asarray(Image.fromarray(photo[top : top + 200, left : left + 200]).resize((64, 64)))
        )
    written = {}
    for kind, images in drawn.items():
        written[kind] = []
        for i, pixels in enumerate(images):
            path = folder / kind.replace(" ", "_") / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
            written[kind].append(path.relative_to(folder).as_posix())
    return written


def tinted_clinic(trained_run: Path, learnable_root: Path, folder: Path) -> Path:
    """The run's own test images as another clinic's camera would give them, in benign/ and malignant/."""
    test = pd.read_csv(trained_run / "predictions_test.csv")
    for path, label in test[["path", "label"]].itertuples(index=False):
        pixels = np.asarray(Image.open(learnable_root / path).convert("RGB"), dtype=float)
        target = folder / ("malignant" if label else "benign") / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels * TINT, 0, 255).astype(np.uint8)).save(target)
    return folder


def test_images_that_are_not_dermoscopy_are_told_apart_and_referred(trained_run: Path, tmp_path: Path) -> None:
    """With the shared run (two epochs at 32 px): the kNN distance of the early statistics tells each kind of image
    that is not dermoscopy from the run's own test images (AUROC above 0.85) and refers most of them."""
    kinds = not_dermoscopy(tmp_path / "odd")
    out = tmp_path / "predicted"
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    run_in_process("predict", f"ckpt={ckpt}", f"input={tmp_path / 'odd'}", f"hydra.run.dir={out}")
    odd = pd.read_csv(out / "predictions.csv").set_index("path")
    own = pd.read_csv(trained_run / "predictions_test.csv")
    assert odd["refer"].dtype == bool and {"ood_score", "refer"} <= set(odd.columns)
    for kind, paths in kinds.items():
        scores = odd.loc[paths, "ood_score"].to_numpy()
        auroc = roc_auc_score(np.r_[np.zeros(len(own)), np.ones(len(scores))], np.r_[own["ood_score"], scores])
        assert auroc > 0.85, (kind, auroc)
        assert odd.loc[paths, "refer"].mean() > 0.5, kind  # most referred
    referral = trained_metrics(trained_run)["referral"]
    assert referral["share_referred"] < 0.2  # of the run's own test images: about the 5 % of validation


def test_a_shifted_clinic_is_referred_more_often_and_evaluate_reports_the_kept_images(
    trained_run: Path, learnable_root: Path, tmp_path: Path
) -> None:
    clinic = tinted_clinic(trained_run, learnable_root, tmp_path / "clinic")
    out = tmp_path / "evaluated"
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    run_in_process(
        "evaluate", f"ckpt={ckpt}", f"input={clinic}", "evaluation.bootstrap.resamples=0", f"hydra.run.dir={out}"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    own, there = trained_metrics(trained_run)["referral"], metrics["referral"]
    assert there["share_referred"] > own["share_referred"] + 0.1, (there["share_referred"], own["share_referred"])
    assert there["referred"] == round(there["share_referred"] * metrics["test/images"])
    point = there["operating_points"][0]
    assert set(point) == {"target_recall", "all", "kept"} and set(point["kept"]) == {"recall", "specificity"}
    curve = there["risk_coverage"]
    assert [entry["share_referred"] for entry in curve][:3] == [0.0, 0.05, 0.1]
    assert curve[0]["operating_points"]["0.95"] == point["all"]  # nothing referred: all the images
    assert (out / "risk_coverage.png").stat().st_size > 1000
    assert f"{there['referred']} of the evaluated images" in (out / "report.html").read_text()


def test_the_referral_refers_the_set_share_of_the_model_s_own_validation(trained_run: Path) -> None:
    """5 % of the validation images: the nearest the decision among the unusual, and the most unusual (a fifth of
    the share); where an image stands among them in words a clinician reads (unusual: the share below it)."""
    policy = DecisionPolicy.of_record(trained_metrics(trained_run)["run"]["decision_policy"])
    validation = pd.read_csv(trained_run / "predictions_val.csv")
    assert policy.referral.rate == 0.05 and policy.referral.at == "0.95"
    referred = policy.referred(validation["probability"].to_numpy(), validation["ood_score"].to_numpy())
    assert referred.mean() == pytest.approx(0.05, abs=1 / len(validation))
    unusual = policy.referral.unusual(validation["ood_score"].to_numpy())
    assert np.mean(unusual > 0.99) == pytest.approx(0.01, abs=2 / len(validation))
    most_unusual = unusual > 1 - UNLIKE_SHARE * policy.referral.rate
    assert referred[most_unusual].all()  # unlike any image it knows: referred, whatever its probability


def test_the_novelty_score_is_pytorch_ood_s_knn_distance() -> None:
    """The K-th nearest training image's distance of L2-normalised early statistics (Sun et al. 2022), as
    pytorch-ood's KNN detector computes it through scikit-learn."""
    generator = torch.Generator().manual_seed(0)
    training, images = torch.randn(300, 24, generator=generator), torch.randn(40, 24, generator=generator) * 2
    familiarity = Familiarity.fit(training, training[:50])
    reference = KNN(None, k=K).fit_features(training, torch.zeros(len(training), dtype=torch.long))
    torch.testing.assert_close(
        familiarity.score(images).double(), reference.predict_features(images), rtol=1e-5, atol=1e-6
    )
    assert familiarity.reference.shape == (50, 24)
