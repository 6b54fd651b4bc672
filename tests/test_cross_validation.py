"""Grouped K-fold cross-validation and ensembles of runs, on the synthetic table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_in_process, small_table

from skinclf.data.folds import assign_folds
from skinclf.evaluation.ensemble import percentiles
from skinclf.evaluation.thresholds import threshold_for_recall

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
    reference = np.array([0.1, 0.2, 0.2, 0.4])
    np.testing.assert_allclose(percentiles(reference, np.array([0.0, 0.1, 0.2, 0.3, 0.9])), [0, 0.125, 0.5, 0.75, 1])


@pytest.fixture(scope="module")
def cv_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three folds of a short run on the synthetic table, as one multirun."""
    folder = tmp_path_factory.mktemp("cv")
    overrides = small_table(
        folder / "data", 240, 80, 40, "trainer.max_epochs=2", "optim.lr=2e-3", "evaluation.bootstrap.resamples=100"
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
    result = run_in_process("ensemble", str(cv_sweep), "--output", str(output))

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

    run_in_process("ensemble", str(cv_sweep), "--output", str(tmp_path / "ranks"), "--combine", "rank")
    ranked = json.loads((tmp_path / "ranks" / "metrics.json").read_text())
    assert ranked["run"]["combine"] == "rank" and 0 <= ranked["test/auroc"] <= 1
