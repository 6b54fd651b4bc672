"""evaluate, predict, export and report on a tiny trained checkpoint, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import COMMAND_ENV, command_line, run_in_process, threshold_for_recall, trained_metrics, write_image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from skinclf.core.errors import SkinclfError
from skinclf.data.inputs import read_inputs
from skinclf.models.checkpoints import (
    VALIDATION_KEY,
    load_classifier,
    read_checkpoint,
    stored_validation,
)
from skinclf.trained import load_model
from skinclf.trained.inference import Inference, inference_trainer


def chosen_checkpoint(run_folder: Path) -> Path:
    return run_folder / json.loads((run_folder / "metrics.json").read_text())["run"]["checkpoint"]


def test_training_stores_validation_and_writes_every_file(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for name in ("pr_curve.png", "roc_curve.png", "reliability.png", "errors.png", "predictions_val.csv"):
        assert (trained_run / name).stat().st_size > 1000, name
    assert [p["target_recall"] for p in metrics["operating_points"]] == [0.95, 0.99, 0.995, 0.999]
    lo, hi = metrics["test/auroc_ci"]
    assert lo <= metrics["test/auroc"] <= hi
    point = metrics["operating_points"][1]
    assert {"threshold_ci", "test/precision_ci", "test/recall_ci", "test/specificity_ci", "test/npv_ci"} <= set(point)
    assert "test/reference_precision_at_recall_0.999" in metrics

    checkpoint = read_checkpoint(chosen_checkpoint(trained_run))
    validation = stored_validation(checkpoint)
    stored = pd.read_csv(trained_run / "predictions_val.csv")
    np.testing.assert_allclose(validation["probability"], stored["probability"], rtol=1e-6)
    assert threshold_for_recall(validation, 0.99) == pytest.approx(point["threshold"])
    assert torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1

    events = EventAccumulator(str(trained_run / "tensorboard"))  # every event file of the run
    events.Reload()
    assert "test/most_confident_errors" in events.Tags()["images"]
    assert "val/pr_curve" in events.Tags()["tensors"]  # the PR curve of each validation epoch
    assert len(events.Tensors("val/pr_curve")) == 2


def test_evaluate_reproduces_training_and_takes_folders_and_csvs(
    trained_run: Path, learnable_root: Path, tmp_path: Path
) -> None:
    ckpt = chosen_checkpoint(trained_run)
    run_in_process("evaluate", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'on_test'}")
    trained = json.loads((trained_run / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "on_test" / "metrics.json").read_text())
    assert evaluated["test/auroc"] == pytest.approx(trained["test/auroc"], abs=1e-6)
    assert evaluated["operating_points"][1]["test/precision"] == pytest.approx(
        trained["operating_points"][1]["test/precision"]
    )
    assert evaluated["run"]["name"] == trained["run"]["name"] and evaluated["run"]["evaluated_on"] == "test split"
    assert (tmp_path / "on_test" / "reliability.png").is_file()

    test_csv = tmp_path / "test.csv"
    pd.read_csv(trained_run / "predictions_test.csv")[["path", "label"]].to_csv(test_csv, index=False)
    run_in_process(
        "evaluate",
        f"ckpt={ckpt}",
        f"input={test_csv}",
        f"data.root={learnable_root}",
        f"hydra.run.dir={tmp_path / 'on_csv'}",
        "evaluation.bootstrap.resamples=0",
    )
    from_csv = json.loads((tmp_path / "on_csv" / "metrics.json").read_text())
    assert from_csv["test/auroc"] == pytest.approx(trained["test/auroc"], abs=1e-6)
    assert "test/auroc_ci" not in from_csv
    # the evaluation settings the run recorded, but for the key given
    assert from_csv["run"]["evaluation"] == {
        **trained["run"]["evaluation"],
        "bootstrap": {**trained["run"]["evaluation"]["bootstrap"], "resamples": 0},
    }


def test_predict_writes_a_decision_per_image_and_lists_unreadable_ones(trained_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "new patients"
    for i in range(3):
        write_image(folder / f"lesión {i}.jpg", seed=i, size=48, suffix_format="JPEG")
    (folder / "notes").mkdir()
    (folder / "notes" / "broken.png").write_bytes(b"\x89PNG not really")
    output = tmp_path / "out"

    result = run_in_process(
        "predict",
        f"ckpt={chosen_checkpoint(trained_run)}",
        f"input={folder}",
        f"hydra.run.dir={output}",
        "evaluation.target_recalls=[0.95,0.99]",
        "evaluation.tta=flips",
    )

    table = pd.read_csv(output / "predictions.csv", keep_default_na=False)
    decided = ["decision_at_recall_0.95", "decision_at_recall_0.99"]
    assert list(table.columns) == ["path", "probability", "ood_score", "unusual", "refer", *decided, "error"]
    assert sorted(table["path"]) == ["lesión 0.jpg", "lesión 1.jpg", "lesión 2.jpg", "notes/broken.png"]
    broken = table.set_index("path").loc["notes/broken.png"]
    assert broken[decided].tolist() == ["", ""] and "UnidentifiedImageError" in broken["error"]
    readable = table[table["error"] == ""]
    model = load_model(chosen_checkpoint(trained_run))
    inference = Inference(inference_trainer("cpu"), 64, 0)
    # with tta the thresholds come from validation predicted with the same flips
    flipped_validation = model.predict(model.split("val"), inference, "flips")
    for recall, column in zip((0.95, 0.99), decided, strict=True):
        threshold = threshold_for_recall(flipped_validation, recall)
        expected = np.where(readable["probability"].astype(float) >= threshold, "malignant", "benign")
        assert (readable[column] == expected).all()
        assert f"at recall {recall:g}: threshold {threshold:.4f}" in result.stdout
    assert "1 unreadable" in result.stdout and "evaluation.tta=flips" in result.stdout
    assert "Warning" not in result.stderr


def test_evaluation_with_tta_chooses_thresholds_on_validation_seen_the_same_way(
    trained_run: Path, tmp_path: Path
) -> None:
    ckpt = chosen_checkpoint(trained_run)
    run_in_process(
        "evaluate",
        f"ckpt={ckpt}",
        "evaluation.tta=flips_rot",
        f"hydra.run.dir={tmp_path}",
        "evaluation.bootstrap.resamples=0",
    )
    metrics = trained_metrics(tmp_path)
    validation = pd.read_csv(tmp_path / "predictions_val.csv")
    stored = stored_validation(read_checkpoint(ckpt))
    assert validation["path"].tolist() == stored["path"].tolist()
    assert not np.allclose(validation["probability"], stored["probability"])  # predicted again, with 8 views
    assert metrics["run"]["evaluation"]["tta"] == "flips_rot"
    for point in metrics["operating_points"]:
        assert point["threshold"] == pytest.approx(threshold_for_recall(validation, point["target_recall"]))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_and_carries_its_preprocessing(trained_run: Path, tmp_path: Path, fmt: str) -> None:
    ckpt = chosen_checkpoint(trained_run)
    output = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    run_in_process("export", f"ckpt={ckpt}", f"format={fmt}", f"hydra.run.dir={tmp_path}")

    metadata = json.loads(output.with_name(output.name + ".json").read_text())
    assert metadata["input"]["crop_size"] == 32 and metadata["input"]["resize_size"] == 36
    assert metadata["parity_check"]["max_abs_difference"] <= metadata["parity_check"]["tolerance"] == 1e-4
    validation = stored_validation(read_checkpoint(ckpt))
    assert metadata["thresholds"]["0.99"] == pytest.approx(threshold_for_recall(validation, 0.99))

    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    model, _ = load_classifier(ckpt)
    with torch.inference_mode():
        expected = model(images).sigmoid().numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        exported = session.run(None, {"image": images.numpy()})[0]
    else:
        exported = torch.jit.load(str(output))(images).detach().numpy()
    np.testing.assert_allclose(exported, expected, atol=1e-4)


def test_report_tabulates_runs_and_aggregates_seeds(trained_run: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    for seed, shift in ((0, 0.0), (1, 0.02)):
        run = sweep / f"{seed}_demo"
        run.mkdir(parents=True)
        metrics = json.loads((trained_run / "metrics.json").read_text())
        metrics["run"]["seed"] = seed
        metrics["test/auroc"] += shift
        (run / "metrics.json").write_text(json.dumps(metrics))
        (run / "predictions_test.csv").write_text((trained_run / "predictions_test.csv").read_text())

    run_in_process("report", f"runs=[{sweep}]", f"hydra.run.dir={tmp_path / 'report'}")

    text = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 0_demo") or line.startswith("| 1_demo")]
    assert len(rows) == 2
    auroc = json.loads((trained_run / "metrics.json").read_text())["test/auroc"]
    assert f"{auroc + 0.01:.3f} ± {0.02 / np.sqrt(2):.3f}" in text  # mean ± sd of the two seeds
    assert "[" in rows[0]  # intervals
    assert (tmp_path / "report" / "report.png").stat().st_size > 10_000


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SkinclfError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(SkinclfError, match=r"other.ckpt is not a skinclf checkpoint"):
        read_checkpoint(tmp_path / "other.ckpt")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(SkinclfError, match=r"cannot load .*text.ckpt as a checkpoint"):
        read_checkpoint(tmp_path / "text.ckpt")

    pd.DataFrame({"file": ["a.jpg"]}).to_csv(tmp_path / "list.csv", index=False)
    with pytest.raises(SkinclfError, match=r"list.csv has no 'path' column \(it has file\)"):
        read_inputs(tmp_path / "list.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SkinclfError, match=r"empty holds no images"):
        read_inputs(tmp_path / "empty")
    with pytest.raises(SkinclfError, match=r"input .*nowhere does not exist"):
        read_inputs(tmp_path / "nowhere")
    refused = run_in_process("report", f"runs=[{tmp_path / 'empty'}]", status=2)
    assert f"{tmp_path / 'empty'} holds no run (no metrics.json below it)" in refused.stderr


def test_evaluate_refuses_unlabelled_images(trained_run: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.png", 0, suffix_format="PNG")
    result = run_in_process(
        "evaluate",
        f"ckpt={chosen_checkpoint(trained_run)}",
        f"input={tmp_path / 'images'}",
        f"hydra.run.dir={tmp_path / 'out'}",
        status=2,
    )
    assert "has no labels" in result.stderr and "Traceback" not in result.stderr


def test_a_checkpoint_without_validation_predictions_gets_them_from_its_split(
    trained_run: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert VALIDATION_KEY in checkpoint  # every checkpoint of a validated epoch keeps them...
    del checkpoint[VALIDATION_KEY]  # ...one without them (an older skinclf, an epoch not validated)
    torch.save(checkpoint, tmp_path / "bare.ckpt")

    run_in_process("evaluate", f"ckpt={tmp_path / 'bare.ckpt'}", f"hydra.run.dir={tmp_path / 'out'}")

    evaluated, trained = trained_metrics(tmp_path / "out"), trained_metrics(trained_run)
    assert evaluated["operating_points"][1]["threshold"] == pytest.approx(trained["operating_points"][1]["threshold"])
    assert evaluated["test/auroc"] == pytest.approx(trained["test/auroc"])


def test_evaluate_on_a_benign_only_set_reports_specificity_and_says_what_is_undefined(
    trained_run: Path, learnable_root: Path, tmp_path: Path
) -> None:
    test = pd.read_csv(trained_run / "predictions_test.csv")
    test[test["label"] == 0][["path", "label"]].to_csv(tmp_path / "screening.csv", index=False)

    result = run_in_process(
        "evaluate",
        f"ckpt={chosen_checkpoint(trained_run)}",
        f"input={tmp_path / 'screening.csv'}",
        f"data.root={learnable_root}",
        f"hydra.run.dir={tmp_path / 'out'}",
    )

    metrics = trained_metrics(tmp_path / "out")
    assert metrics["test/malignant"] == 0 and metrics["test/auroc"] is None
    trained = trained_metrics(trained_run)["operating_points"]
    for evaluated, point in zip(metrics["operating_points"], trained, strict=True):
        assert evaluated["test/specificity"] == pytest.approx(point["test/specificity"])  # the same benign images
        low, high = evaluated["test/specificity_ci"]
        assert low <= evaluated["test/specificity"] <= high
        assert evaluated["test/recall"] is None and evaluated["test/precision"] is None
    assert "operating_points/test/recall" in metrics["undefined"]["figures"]
    assert "holds no malignant image" in metrics["undefined"]["reason"]
    assert "specificity" in result.stdout


def test_rerun_repeats_a_run_exactly_on_a_clean_first_screen(trained_run: Path, tmp_path: Path) -> None:
    environment = {k: v for k, v in COMMAND_ENV.items() if k != "PYTHONWARNINGS"}  # every warning shown
    again = tmp_path / "again"
    command = command_line("train", f"rerun={trained_run}", f"hydra.run.dir={again}")
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert trained_metrics(again) == trained_metrics(trained_run)
    recorded = (trained_run / ".hydra" / "config.yaml").read_text()
    assert (again / ".hydra" / "config.yaml").read_text() == recorded
    # no third-party advertisement or deprecation; the run's own lines come last
    for unwanted in ("litlogger", "Tip:", "Warning", "is deprecated"):
        assert unwanted not in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
    assert result.stdout.splitlines()[-1].startswith(f"run folder: {again}")

    composed = run_in_process("train", f"rerun={trained_run}", "seed=3", "trainer.max_epochs=1", "--cfg", "job")
    config = yaml.safe_load(composed.stdout)
    assert (config["seed"], config["trainer"]["max_epochs"]) == (3, 1)
    assert config["model"]["preprocessing"]["crop_size"] == 32  # the rest as the run had it
    refused = run_in_process("train", f"rerun={tmp_path}", status=2)
    assert f"rerun={tmp_path}: not the folder of a run" in refused.stderr


def test_export_repeats_no_deprecation_of_torchscript(trained_run: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        checkpoint = trained_run / "checkpoints" / "last.ckpt"
        run_in_process("export", "format=torchscript", f"ckpt={checkpoint}", f"hydra.run.dir={tmp_path}")
    assert not [w for w in shown if issubclass(w.category, DeprecationWarning | FutureWarning)]
