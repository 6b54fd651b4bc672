"""Small data trains (a pilot on a clinic's first folder): decisions wait for enough images, and every hint names a
setting that works for the counts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_image_folder, run_in_process, trained_metrics

from skinclf.metrics.decisions import HIGHEST_PRECISION, DecisionPolicy, Undecided
from skinclf.serving.served import answer_of
from skinclf.serving.uploads import Upload

PILOT = {"train": {"benign": 40, "malignant": 20}, "test": {"benign": 10, "malignant": 5}}
#: 20 malignant training images: validation takes at most a quarter of them, 5, and the rule needs 10.
NOT_DECIDED = "not decided: 5 malignant images, 10 needed"


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-image pilot trained as a new user would: the default target recalls and rule."""
    folder = tmp_path_factory.mktemp("pilot")
    root = make_image_folder(folder / "data", PILOT)
    overrides = [
        *(f"data.root={root}", "model.weights=null", "trainer=cpu", "trainer.max_epochs=2"),
        *("model.preprocessing.resize_size=36", "model.preprocessing.crop_size=32", "data.batch_size=16"),
        *("data.num_workers=0", "trainer.enable_progress_bar=false", "evaluation.bootstrap.resamples=200"),
    ]
    result = run_in_process("train", *overrides, f"hydra.run.dir={folder / 'run'}")
    (folder / "run" / "stdout.txt").write_text(result.stdout)
    return folder / "run"


def test_a_pilot_trains_and_reports_its_ranking_with_each_operating_point_undecided(pilot: Path) -> None:
    metrics = trained_metrics(pilot)
    assert (metrics["val/malignant"], metrics["training_data"]["malignant"]) == (5, 15)
    assert metrics["test/auroc"] is not None and len(metrics["test/auroc_ci"]) == 2
    assert metrics["operating_points"] == []
    undecided = metrics["undecided"]
    assert [p["target_recall"] for p in undecided["operating_points"]] == [0.95, 0.99, 0.995, 0.999]
    assert {p["reason"] for p in undecided["operating_points"]} == {NOT_DECIDED}
    hint = undecided["what_decides"]
    assert "at least 10 malignant images (evaluation.threshold_source=<folder or CSV>)" in hint
    assert "a lower target does not help" in hint  # the rule needs 10 whatever the target
    assert (
        "data.val_min_malignant cannot help here (validation takes at most 25% of the training images: 5 of their "
        "20 malignant, fewer than 10)" in hint
    )
    printed = (pilot / "stdout.txt").read_text()
    assert f"@val-recall 0.95: {NOT_DECIDED}" in printed and "warning: no threshold for recall >= 0.95" in printed
    assert "No threshold was set" in (pilot / "report.html").read_text()
    assert metrics["run"]["decision_policy"]["thresholds"] == {}


def test_predict_gives_probabilities_until_a_labelled_sample_decides(pilot: Path, tmp_path: Path) -> None:
    ckpt, images = pilot / "checkpoints" / "last.ckpt", make_image_folder(tmp_path / "new", {"x": {"benign": 3}})
    result = run_in_process("predict", f"ckpt={ckpt}", f"input={images / 'x'}", f"hydra.run.dir={tmp_path / 'p'}")
    predictions = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert predictions["probability"].between(0, 1).all()
    assert not [c for c in predictions.columns if c.startswith("decision_")]
    assert f"at recall 0.95: {NOT_DECIDED}: probabilities only, no decision" in result.stdout
    sample = make_image_folder(tmp_path / "sample", {"clinic": {"benign": 12, "malignant": 12}}) / "clinic"
    decided = ("evaluation.target_recalls=[0.9]", f"evaluation.threshold_source={sample}")
    run_in_process("predict", f"ckpt={ckpt}", f"input={images / 'x'}", *decided, f"hydra.run.dir={tmp_path / 'd'}")
    assert "decision_at_recall_0.9" in pd.read_csv(tmp_path / "d" / "predictions.csv").columns


def test_export_writes_the_probability_model_with_no_threshold_and_says_why(pilot: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = run_in_process("export", f"ckpt={pilot / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={out}")
    described = json.loads((out / "model.onnx.json").read_text())
    assert described["thresholds"] == {}
    assert described["decision_policy"]["undecided"]["0.95"]["needed"] == 10
    assert f"at recall 0.95: {NOT_DECIDED}: the export gives its probability, with no threshold" in result.stdout


def test_the_server_answers_the_probability_and_why_no_decision() -> None:
    policy = DecisionPolicy(
        {}, HIGHEST_PRECISION, None, None, "validation", 20, 5, None, {"0.95": Undecided(0.95, 5, 15, 10)}
    )
    row = pd.Series({"probability": 0.3, "error": ""})
    answer = answer_of(Upload("a.jpg", b""), row, None, policy)
    assert answer["probability"] == 0.3 and answer["decisions"] == {}
    assert answer["undecided"] == {"at_recall_0.95": NOT_DECIDED}
