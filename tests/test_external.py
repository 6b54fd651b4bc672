"""External validation: a model trained on one synthetic clinic, evaluated on another's table whose images were
taken under another light, as evaluate reads it through the data group; colour constancy, temperature scaling,
local thresholds, skin tone, copies of training images, and the tables users send."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_in_process, small_table, trained_metrics, write_image
from PIL import Image

from skinclf.data.synthetic import ensure_synthetic_dataset
from skinclf.schema import SyntheticSpec

#: Two models trained, then several evaluations: more than the default limit on a CPU without AVX
pytestmark = pytest.mark.timeout(900)

#: The other clinic's light: warmer and brighter (a colour cast and a brightness change).
CAST, BRIGHTER = np.array([1.1, 1.0, 0.85]), 60.0

SYNTHETIC_TABLE = [
    *("data=table", "data.image_column=image_id", "data.label_column=diagnosis", "data.skip_unlabelled=true"),
    *("data.malignant=[melanoma,carcinoma]", "data.benign=[nevus,keratosis,dermatofibroma]"),
]


def other_clinic(folder: Path) -> Path:
    """Another synthetic clinic's table (other patients) with every image under the other light."""
    spec = SyntheticSpec(layout="table", n_train=600, n_test=2, image_size=48, malignant_fraction=0.3, seed=11)
    generated = ensure_synthetic_dataset(folder / "generated", spec)
    (folder / "images").mkdir(parents=True)
    for path in (generated / "images").iterdir():
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(float)
        Image.fromarray(np.clip(pixels * CAST + BRIGHTER, 0, 255).astype(np.uint8)).save(folder / "images" / path.name)
    shutil.copy(generated / "lesions.csv", folder / "lesions.csv")
    return folder


def external(clinic: Path) -> list[str]:
    return [*SYNTHETIC_TABLE, f"data.table={clinic / 'lesions.csv'}", f"data.images={clinic / 'images'}"]


@pytest.fixture(scope="module")
def clinics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models trained on clinic A without and with colour constancy, and clinic B's table."""
    folder = tmp_path_factory.mktemp("clinics")
    trained = {}
    for color in ("none", "shades_of_gray"):
        overrides = small_table(
            folder / "clinic_a", 400, 100, 48, "trainer.max_epochs=8", "optim.lr=2e-3", f"data.color_constancy={color}"
        )
        run_in_process("train", *overrides, "evaluation.bootstrap.resamples=200", f"hydra.run.dir={folder / color}")
        trained[color] = folder / color / "checkpoints" / "last.ckpt"
    return {**trained, "clinic_b": other_clinic(folder / "clinic_b"), "folder": folder}


def evaluated(clinics: dict[str, Path], model: str, name: str, *more: str) -> dict:
    out = clinics["folder"] / name
    run_in_process("evaluate", f"ckpt={clinics[model]}", *external(clinics["clinic_b"]), *more, f"hydra.run.dir={out}")
    return trained_metrics(out)


@pytest.fixture(scope="module")
def transferred(clinics: dict[str, Path]) -> dict[str, dict]:
    subgroups = "evaluation.subgroups=[skin_tone_ita,sex]"
    return {color: evaluated(clinics, color, f"external_{color}", subgroups) for color in ("none", "shades_of_gray")}


def test_the_transfer_report_flags_the_recall_the_other_light_costs(transferred: dict, clinics: dict) -> None:
    metrics = transferred["none"]
    transfer = metrics["transfer"]
    internal = trained_metrics(clinics["none"].parent.parent)
    assert transfer["internal"]["test/auroc"] == internal["test/auroc"]  # the run's own figures, beside
    assert metrics["test/images"] == 600 and metrics["run"]["evaluated_on"].endswith("lesions.csv")
    assert transfer["change"]["test/auroc"] < -0.05  # the other light costs ranking
    flagged = [p for p in transfer["operating_points"] if p["recall_below_target"]]
    assert flagged, transfer["operating_points"]  # the thresholds chosen at home miss malignant lesions here
    for point in flagged:
        assert point["external"]["recall_ci"][1] < point["target_recall"]
    report = (clinics["folder"] / "external_none" / "report.md").read_text()
    assert "## How external_none transferred" in report and "⚠ below target" in report
    assert {"test/ece", "val/ece"} <= set(metrics) and "test/ece" in transfer["internal"]


def test_colour_constancy_recovers_part_of_what_the_light_cost(transferred: dict) -> None:
    plain, constant = transferred["none"], transferred["shades_of_gray"]
    assert constant["test/auroc"] > plain["test/auroc"] + 0.03, (plain["test/auroc"], constant["test/auroc"])
    assert constant["operating_points"][0]["test/recall"] >= plain["operating_points"][0]["test/recall"]


def test_the_audit_by_estimated_skin_tone_runs_on_the_external_set(transferred: dict, clinics: dict) -> None:
    metrics = transferred["none"]
    tones = {entry["value"]: entry for entry in metrics["subgroups"]["skin_tone_ita"]}
    assert set(tones) <= {"very light", "light", "intermediate", "tan", "brown", "dark", "(missing)"}
    assert sum(entry["images"] for entry in tones.values()) == 600
    assert any(entry["too_few_to_judge"] for entry in tones.values()) or all(
        e["malignant"] >= 10 for e in tones.values()
    )
    assert "estimate" in metrics["skin_tone"]["how"]
    predictions = pd.read_csv(clinics["folder"] / "external_none" / "predictions_test.csv")
    assert {"skin_tone_ita", "sex", "patient_id"} <= set(predictions.columns)  # the table's columns, beside


def test_temperature_scaling_is_fitted_on_validation_and_applied_everywhere(clinics: dict, tmp_path: Path) -> None:
    metrics = evaluated(clinics, "none", "calibrated", "evaluation.calibration=temperature")
    calibration = metrics["calibration"]
    assert calibration["temperature"] > 0 and calibration["fitted_on"].startswith("the validation predictions")
    assert {"val/ece_before", "val/ece_after", "test/ece_before", "test/ece_after"} <= set(calibration)
    test = pd.read_csv(clinics["folder"] / "calibrated" / "predictions_test.csv")
    run_in_process(
        "predict",
        f"ckpt={clinics['none']}",
        *external(clinics["clinic_b"]),
        "evaluation.calibration=temperature",
        f"hydra.run.dir={tmp_path}",
    )
    predicted = pd.read_csv(tmp_path / "predictions.csv")
    np.testing.assert_allclose(predicted["probability"], test["probability"], atol=1e-6)  # the same temperature
    run_in_process(
        "export", f"ckpt={clinics['none']}", "evaluation.calibration=temperature", f"hydra.run.dir={tmp_path}"
    )
    described = json.loads((tmp_path / "model.onnx.json").read_text())
    assert described["calibration"]["temperature"] == pytest.approx(calibration["temperature"])


def test_thresholds_chosen_on_a_local_sample_are_said_so(clinics: dict, tmp_path: Path) -> None:
    table = pd.read_csv(clinics["clinic_b"] / "lesions.csv", dtype=str, keep_default_na=False)
    usable = table[table["diagnosis"].isin(["melanoma", "carcinoma", "nevus", "keratosis", "dermatofibroma"])]
    sample = usable.iloc[:80].assign(
        path=lambda t: "images/" + t["image_id"] + ".jpg",
        label=lambda t: t["diagnosis"].isin(["melanoma", "carcinoma"]).astype(int),
    )[["path", "label"]]
    sample.to_csv(clinics["clinic_b"] / "sample.csv", index=False)
    metrics = evaluated(clinics, "none", "local", f"evaluation.threshold_source={clinics['clinic_b'] / 'sample.csv'}")
    chosen_on = metrics["run"]["thresholds_chosen_on"]
    assert chosen_on.startswith(str(clinics["clinic_b"] / "sample.csv"))
    assert f"80 images, {int(sample['label'].sum())} malignant" in chosen_on
    assert "Thresholds chosen on " + chosen_on in (clinics["folder"] / "local" / "report.md").read_text()


def test_copies_of_training_images_are_named_and_can_be_left_out(clinics: dict, tmp_path: Path) -> None:
    run = clinics["none"].parent.parent
    split_dir = next((clinics["folder"] / "clinic_a").rglob("train.csv")).parent
    train = pd.read_csv(split_dir / "train.csv")
    data_root = next((clinics["folder"] / "clinic_a").rglob("lesions.csv")).parent
    clinic = tmp_path / "clinic_c"
    (clinic / "images").mkdir(parents=True)
    rows = []
    for i, path in enumerate(train["path"][:3]):  # three training images, byte for byte, under other names
        shutil.copy(data_root / path, clinic / "images" / f"copy{i}.jpg")
        rows.append({"image_id": f"copy{i}", "diagnosis": "nevus"})
    for i, path in enumerate(train["path"][3:5]):  # two re-encoded at another size
        Image.open(data_root / path).resize((40, 40)).save(clinic / "images" / f"resized{i}.png")
        rows.append({"image_id": f"resized{i}", "diagnosis": "melanoma"})
    for i in range(6):
        write_image(clinic / "images" / f"new{i}.png", seed=100 + i, size=48, suffix_format="PNG")
        rows.append({"image_id": f"new{i}", "diagnosis": ["nevus", "melanoma"][i % 2]})
    pd.DataFrame(rows).to_csv(clinic / "lesions.csv", index=False)
    common = ["evaluate", f"ckpt={clinics['none']}", *external(clinic)]
    run_in_process(*common, f"hydra.run.dir={tmp_path / 'all'}")
    named = trained_metrics(tmp_path / "all")["overlap_with_training"]
    assert named["identical"] == 3 and sorted(p[0] for p in named["examples_identical"]) == [
        "copy0.jpg",
        "copy1.jpg",
        "copy2.jpg",
    ]
    assert {"resized0.png", "resized1.png"} <= {p[0] for p in named["examples_near_identical"]}
    run_in_process(*common, "evaluation.exclude_training_duplicates=true", f"hydra.run.dir={tmp_path / 'without'}")
    without = trained_metrics(tmp_path / "without")
    assert without["overlap_with_training"]["excluded"] == named["identical"] + named["near_identical"]
    assert without["test/images"] == 11 - without["overlap_with_training"]["excluded"]
    assert run.is_dir()
