"""Grouped K-fold cross-validation and ensembles of runs, on the synthetic table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_in_process, small_table, threshold_for_recall

from skinclf.data.folds import assign_folds
from skinclf.metrics.combining import percentiles
from skinclf.trained import load_model
from skinclf.trained.exported import EnsembleProbabilities

FOLDS = 3


def test_folds_keep_groups_whole_and_spread_each_class_evenly() -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 120, size=600).astype(str)  # patients with 1 to 12 images
    labels = (rng.random(600) < 0.2).astype(int)

    fold = assign_folds(labels, groups, 5, seed=3)

    assert (pd.Series(fold).groupby(groups).nunique() == 1).all()  # no patient in two folds
    sizes, malignant = np.bincount(fold, minlength=5), np.bincount(fold[labels == 1], minlength=5)
    assert sizes.max() - sizes.min() <= 0.15 * sizes.mean() and malignant.min() > 0
    assert (fold == assign_folds(labels, groups, 5, seed=3)).all()  # deterministic from the seed
    assert not (fold == assign_folds(labels, groups, 5, seed=4)).all()


def test_rank_percentiles_are_mid_ranks_among_the_reference() -> None:
    reference, scores = np.array([0.1, 0.2, 0.2, 0.4]), np.array([0.0, 0.1, 0.2, 0.3, 0.9])
    np.testing.assert_allclose(percentiles(reference, scores), [0, 0.125, 0.5, 0.75, 1])
    # the exported ensemble computes the same percentiles inside the model
    exported = EnsembleProbabilities.percentile(torch.tensor(reference), torch.tensor(scores))
    np.testing.assert_allclose(exported.numpy(), percentiles(reference, scores))


@pytest.fixture(scope="module")
def cv_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three folds of a short run on the synthetic table, as one multirun."""
    folder = tmp_path_factory.mktemp("cv")
    overrides = small_table(
        folder / "data", 240, 80, 40, "trainer.max_epochs=1", "optim.lr=2e-3", "evaluation.bootstrap.resamples=100"
    )
    sweep = folder / "sweep"
    folds = ",".join(str(k) for k in range(FOLDS))
    run_in_process("train", "-m", f"cv.folds={FOLDS}", f"cv.fold={folds}", *overrides, f"hydra.sweep.dir={sweep}")
    return sweep


def fold_runs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/metrics.json"))


def test_each_fold_validates_on_its_own_fold_and_all_share_the_test_split(cv_sweep: Path) -> None:
    runs = fold_runs(cv_sweep)
    assert [json.loads((r / "metrics.json").read_text())["run"]["cv"] for r in runs] == [
        {"folds": FOLDS, "fold": k} for k in range(FOLDS)
    ]
    (split_dir,) = {p.parent for p in (cv_sweep.parent / "data").rglob(f"folds-{FOLDS}.csv")}
    folds = pd.read_csv(split_dir / f"folds-{FOLDS}.csv")
    pool = pd.concat([pd.read_csv(split_dir / "train.csv"), pd.read_csv(split_dir / "val.csv")])
    assert folds["path"].tolist() == pool["path"].tolist()  # the folds cover train and val, in order

    validated = [pd.read_csv(r / "predictions_val.csv") for r in runs]
    for k, predictions in enumerate(validated):  # out-of-fold: each run validated on exactly its fold
        assert sorted(predictions["path"]) == sorted(folds.loc[folds["fold"] == k, "path"])
    patient_of = pool.set_index("path")["group"]
    patients = [set(patient_of[p["path"]]) for p in validated]
    assert all(not patients[i] & patients[j] for i in range(FOLDS) for j in range(i + 1, FOLDS))
    tested = [pd.read_csv(r / "predictions_test.csv")["path"].tolist() for r in runs]
    assert tested[0] == tested[1] == tested[2]


def test_the_ensemble_of_the_folds_chooses_thresholds_out_of_fold(cv_sweep: Path, tmp_path: Path) -> None:
    output = tmp_path / "ensemble"
    result = run_in_process("ensemble", f"runs=[{cv_sweep}]", f"hydra.run.dir={output}")

    metrics = json.loads((output / "metrics.json").read_text())
    runs = fold_runs(cv_sweep)
    assert metrics["run"]["kind"] == "ensemble" and len(metrics["run"]["members"]) == FOLDS
    assert metrics["run"]["thresholds_chosen_on"].startswith("pooled out-of-fold predictions of 3 fold runs")

    members = [pd.read_csv(r / "predictions_test.csv").set_index("path")["probability"] for r in runs]
    test = pd.read_csv(output / "predictions_test.csv").set_index("path")
    np.testing.assert_allclose(test["probability"], pd.concat(members, axis=1).mean(axis=1).loc[test.index])
    out_of_fold = pd.concat([pd.read_csv(r / "predictions_val.csv") for r in runs])
    validation = pd.read_csv(output / "predictions_val.csv")
    assert sorted(validation["path"]) == sorted(out_of_fold["path"])
    for point in metrics["operating_points"]:
        assert point["threshold"] == pytest.approx(threshold_for_recall(out_of_fold, point["target_recall"]))

    assert "ensemble (mean): test AUROC" in result.stdout
    report = (output / "report.md").read_text()
    assert report.count("| ensemble of 3 |") == 1 and all(r.name in report for r in runs)
    for name in ("pr_curve.png", "roc_curve.png", "errors.png", "report.png"):
        assert (output / name).stat().st_size > 1000, name

    ranks = tmp_path / "ranks"
    run_in_process("ensemble", f"runs=[{cv_sweep}]", f"hydra.run.dir={ranks}", "combine=rank", "logger=csv")
    ranked = json.loads((ranks / "metrics.json").read_text())
    assert ranked["run"]["combine"] == "rank" and 0 <= ranked["test/auroc"] <= 1
    logged = pd.read_csv(ranks / "csv" / "metrics.csv")  # logger=: as train's
    assert logged["test/auroc"].tolist() == pytest.approx([ranked["test/auroc"]])


@pytest.fixture(scope="module")
def fold_ensemble(cv_sweep: Path) -> Path:
    """The folds' ensemble, made as a user would: from the folder above, with relative paths."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cv_sweep.parent)
        run_in_process("ensemble", f"runs=[{cv_sweep.name}]", "hydra.run.dir=reports/cv")
    return cv_sweep.parent / "reports" / "cv"


def test_predict_with_an_ensemble_combines_its_members_as_evaluated(fold_ensemble: Path, tmp_path: Path) -> None:
    tested = pd.read_csv(fold_ensemble / "predictions_test.csv")
    images = tmp_path / "images.csv"
    tested[["path"]].to_csv(images, index=False)
    member = Path(json.loads((fold_ensemble / "metrics.json").read_text())["run"]["members"][0]["run_folder"])
    data_root = load_model(member / "checkpoints" / "last.ckpt").split("test").root
    predict = ("predict", f"ckpt={fold_ensemble}", f"input={images}", f"data.root={data_root}")

    result = run_in_process(*predict, f"hydra.run.dir={tmp_path}")

    predicted = pd.read_csv(tmp_path / "predictions.csv")
    np.testing.assert_allclose(predicted["probability"], tested["probability"], atol=1e-6)
    validation = pd.read_csv(fold_ensemble / "predictions_val.csv")
    threshold = threshold_for_recall(validation, 0.99)
    assert "thresholds chosen on the ensemble's validation" in result.stdout
    assert f"at recall 0.99: threshold {threshold:.4f}" in result.stdout
    assert ((predicted["probability"] >= threshold) == (predicted["decision_at_recall_0.99"] == "malignant")).all()
    refused = run_in_process(*predict, "evaluation.tta=flips", f"hydra.run.dir={tmp_path / 'flips'}", status=2)
    assert "was evaluated with evaluation.tta=none" in refused.stderr


def test_an_ensemble_exports_as_one_model(fold_ensemble: Path, cv_sweep: Path, tmp_path: Path) -> None:
    exported = tmp_path / "model.pt"
    run_in_process("export", f"ckpt={fold_ensemble}", "format=torchscript", f"hydra.run.dir={tmp_path}")

    description = json.loads(exported.with_name("model.pt.json").read_text())
    metrics = json.loads((fold_ensemble / "metrics.json").read_text())
    assert description["run"]["kind"] == "ensemble" and len(description["run"]["members"]) == FOLDS
    assert description["thresholds"]["0.99"] == pytest.approx(metrics["operating_points"][1]["threshold"])
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    members = [load_model(r / "checkpoints" / "last.ckpt").probability_model() for r in fold_runs(cv_sweep)]
    with torch.inference_mode():
        expected = torch.stack([m(images) for m in members]).mean(0)
        torch.testing.assert_close(torch.jit.load(str(exported))(images), expected, atol=1e-5, rtol=0)
