"""Several sources in one run (data=sources), each left out in turn (cv.leave_out=source): what makes a model hold on
another clinic's images is judged by leaving a whole clinic out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FEW_BATCHES, run_in_process, sizes, synthetic_overrides, train_settings

from skinclf.config.schema import SyntheticSpec
from skinclf.core.errors import SkinclfError
from skinclf.data.synthetic import ensure_synthetic_dataset
from skinclf.training.builders import build_datamodule

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def two_clinics(learnable_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Clinic A, a folder of class folders (the learnable synthetic set); clinic B, a table of patients and diagnoses
    read through a dataset preset."""
    spec = SyntheticSpec(layout="table", n_train=240, n_test=60, image_size=48, malignant_fraction=0.35, seed=3)
    table = ensure_synthetic_dataset(tmp_path_factory.mktemp("clinic_b") / "data", spec)
    folder = tmp_path_factory.mktemp("sources")
    clinic_b = (
        f"{{name: clinic_b, preset: synthetic_table, table: {table / 'lesions.csv'}, images: {table / 'images'}}}"
    )
    return [
        "data=sources",
        f"data.sources=[{{name: clinic_a, folder: {learnable_root}}},{clinic_b}]",
        *("data.skip_unlabelled=true", "data.val_min_malignant=20", f"data.split_dir={folder / 'splits'}"),
        *("model.weights=null", "trainer=cpu", *sizes(36, 32), "data.batch_size=32", "data.num_workers=0"),
        *(
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "evaluation.bootstrap.resamples=0",
        ),
        f"hydra.sweep.dir={folder / 'sweep'}",
    ]


def test_each_source_is_split_on_its_own_and_can_be_drawn_equally_often(two_clinics: list[str]) -> None:
    datamodule = build_datamodule(train_settings([*two_clinics, "data.source_balance=true"]))
    datamodule.prepare_data()
    tables = datamodule.tables
    for name, table in tables.items():  # every split holds images of both clinics
        assert set(table["source"]) == {"clinic_a", "clinic_b"}, name
    # clinic A's own test/ folder stays its test split; clinic B's test is carved from its table, by patient
    folder_test = tables["test"][tables["test"]["source"] == "clinic_a"]
    assert folder_test["path"].str.contains("/test/").all()
    clinic_b = pd.concat(tables.values())
    clinic_b = clinic_b[clinic_b["source"] == "clinic_b"]
    assert clinic_b.groupby("patient_id")["path"].apply(lambda paths: len({p for p in paths})).gt(0).all()
    patients = {name: set(t.loc[t["source"] == "clinic_b", "patient_id"]) for name, t in tables.items()}
    assert not patients["train"] & patients["test"] and not patients["train"] & patients["val"]
    datamodule.setup()
    weights = datamodule.balancing_weights()
    train = datamodule.datasets["train"].table
    shares = pd.Series(weights).groupby(train["source"].to_numpy()).sum() / weights.sum()
    assert shares.to_dict() == pytest.approx({"clinic_a": 0.5, "clinic_b": 0.5})  # though A holds more images
    assert (train["source"] == "clinic_a").mean() > 0.55


def test_leaving_each_source_out_judges_it_as_an_unseen_clinic(two_clinics: list[str], tmp_path: Path) -> None:
    run_in_process(
        "train", "-m", *two_clinics, "cv.leave_out=source", "cv.fold=0,1", "trainer.max_epochs=1", FEW_BATCHES
    )
    sweep = Path(next(a for a in two_clinics if a.startswith("hydra.sweep.dir")).split("=", 1)[1])
    judged = {}
    for left_out in sorted(sweep.glob("*/left_out/metrics.json")):
        metrics = json.loads(left_out.read_text())
        run = json.loads((left_out.parent.parent / "metrics.json").read_text())
        predictions = pd.read_csv(left_out.parent / "predictions_test.csv")
        source = metrics["left_out_source"]
        judged[source] = metrics
        assert metrics["run"]["evaluated_on"] == f"{source} (the source left out)"
        assert "transfer" in metrics and metrics["transfer"]["internal"]["test/auroc"] == run["test/auroc"]
        assert run["run"]["cv"] == {"leave_out": "source", "fold": ["clinic_a", "clinic_b"].index(source)}
        # never trained on: none of its images in the run's training split, every image of it judged
        training = pd.read_csv(left_out.parent / "predictions_val.csv")
        assert len(predictions) == metrics["test/images"] and not set(predictions["path"]) & set(training["path"])
    assert sorted(judged) == ["clinic_a", "clinic_b"]

    out = tmp_path / "report"
    run_in_process("report", f"runs=[{sweep}]", f"hydra.run.dir={out}")
    report = (out / "report.md").read_text()
    section = report.split("## Each source left out")[1].split("\n## ")[0]
    assert "clinic_a" in section and "clinic_b" in section and "mean of 2" in section
    mean = np.mean([m["test/auroc"] for m in judged.values()])
    assert f"{mean:.3f}" in section

    ensembled = tmp_path / "ensemble"  # the folds share the test split of every source
    run_in_process("ensemble", f"runs=[{sweep}]", f"hydra.run.dir={ensembled}")
    assert len(json.loads((ensembled / "metrics.json").read_text())["run"]["members"]) == 2


def test_a_source_to_leave_out_must_be_there(two_clinics: list[str], learnable_root: Path) -> None:
    with pytest.raises(SkinclfError, match=r"cv.fold=2: there are 2 sources to leave out"):
        datamodule = build_datamodule(train_settings([*two_clinics, "cv.leave_out=source", "cv.fold=2"]))
        datamodule.prepare_data()
        datamodule.run_tables()
    alone = build_datamodule(train_settings([*synthetic_overrides(learnable_root), "cv.leave_out=source"]))
    with pytest.raises(SkinclfError, match=r"cv.leave_out=source needs images of two sources or more"):
        alone.prepare_data()
