"""External validation: a model trained on one synthetic clinic, evaluated on others' tables as evaluate reads them
through the data group: a screening clinic whose melanomas are earlier, a clinic whose light tints its images;
colour constancy, temperature scaling, local thresholds, skin tone, copies of training images, and the tables users
send."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_in_process, small_table, trained_metrics, write_image
from PIL import Image

from skinclf.config.schema import SyntheticSpec
from skinclf.data.synthetic import DIAGNOSES, ensure_synthetic_dataset, render_lesion

#: Two models trained, then several evaluations: more than the default limit on a CPU without AVX
pytestmark = pytest.mark.timeout(900)

#: The other clinic's light: a warm tint (red up, blue down).
TINT = np.array([1.3, 1.0, 0.7])
#: The share of a screening clinic's malignant lesions seen early, when they still look like naevi.
EARLY = 0.6

SYNTHETIC_TABLE = [
    *("data=table", "data.image_column=image_id", "data.label_column=diagnosis", "data.skip_unlabelled=true"),
    *("data.malignant=[melanoma,carcinoma]", "data.benign=[nevus,keratosis,dermatofibroma]"),
]


def other_clinics(folder: Path) -> dict[str, Path]:
    """Another synthetic clinic's table (other patients) as it is, under a tinted light, and as a screening clinic
    sees it (most malignant lesions early)."""
    spec = SyntheticSpec(layout="table", n_train=600, n_test=2, image_size=48, malignant_fraction=0.3, seed=11)
    plain = ensure_synthetic_dataset(folder / "plain", spec)
    table = pd.read_csv(plain / "lesions.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(0)
    clinics = {"plain": plain, "tinted": folder / "tinted", "screening": folder / "screening"}
    for name in ("tinted", "screening"):
        (clinics[name] / "images").mkdir(parents=True)
        shutil.copy(plain / "lesions.csv", clinics[name] / "lesions.csv")
    for image_id, diagnosis in zip(table["image_id"], table["diagnosis"], strict=True):
        path = plain / "images" / f"{image_id}.jpg"
        if not path.is_file():  # the table's rows without an image
            continue
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(float)
        tinted = np.clip(np.rint(pixels * TINT), 0, 255).astype(np.uint8)
        Image.fromarray(tinted).save(clinics["tinted"] / "images" / path.name, quality=92)
        if diagnosis in ("melanoma", "carcinoma") and rng.random() < EARLY:
            Image.fromarray(render_lesion(rng, DIAGNOSES["nevus"].look, 48)).save(
                clinics["screening"] / "images" / path.name, quality=92
            )
        else:
            shutil.copy(path, clinics["screening"] / "images" / path.name)
    return clinics


def external(clinic: Path) -> list[str]:
    return [*SYNTHETIC_TABLE, f"data.table={clinic / 'lesions.csv'}", f"data.images={clinic / 'images'}"]


@pytest.fixture(scope="module")
def clinics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models trained on clinic A without and with colour constancy, and clinic B's tables."""
    folder = tmp_path_factory.mktemp("clinics")
    trained = {}
    for color in ("none", "shades_of_gray"):
        overrides = small_table(
            folder / "clinic_a",
            400,
            100,
            48,
            "trainer.max_epochs=8",
            "optim.lr=2e-3",
            f"model.preprocessing.color_constancy={color}",
        )
        run_in_process("train", *overrides, "evaluation.bootstrap.resamples=200", f"hydra.run.dir={folder / color}")
        trained[color] = folder / color / "checkpoints" / "last.ckpt"
    others = other_clinics(folder / "clinic_b")
    return {**trained, **{f"clinic_b_{name}": path for name, path in others.items()}, "folder": folder}


def evaluated(clinics: dict[str, Path], model: str, name: str, *more: str, clinic: str = "clinic_b_tinted") -> dict:
    out = clinics["folder"] / name
    if not (out / "metrics.json").is_file():
        run_in_process("evaluate", f"ckpt={clinics[model]}", *external(clinics[clinic]), *more, f"hydra.run.dir={out}")
    return trained_metrics(out)


@pytest.fixture(scope="module")
def transferred(clinics: dict[str, Path]) -> dict[str, dict]:
    """Each model on the tinted clinic, audited by skin tone and sex."""
    subgroups = "evaluation.subgroups=[skin_tone_ita,sex]"
    return {color: evaluated(clinics, color, f"external_{color}", subgroups) for color in ("none", "shades_of_gray")}


def test_the_transfer_report_flags_the_recall_a_screening_clinic_costs(clinics: dict) -> None:
    metrics = evaluated(clinics, "none", "screening", clinic="clinic_b_screening")
    transfer = metrics["transfer"]
    internal = trained_metrics(clinics["none"].parent.parent)
    assert transfer["internal"]["test/auroc"] == internal["test/auroc"]  # the run's own figures, beside
    assert metrics["test/images"] == 600 and metrics["run"]["evaluated_on"].endswith("lesions.csv")
    assert transfer["change"]["test/auroc"] < -0.05  # early melanomas are harder to rank
    points = {p["target_recall"]: p for p in transfer["operating_points"]}
    # the thresholds chosen on internal validation miss the early melanomas (measured over seeds 0-2, AVX-512 and
    # SSE4.1: recall 0.80-0.94 at 0.95, internally 0.97-1; the AUROC fell by 0.20-0.27)
    assert points[0.95]["external"]["recall"] < min(0.95, points[0.95]["internal"]["recall"]), points
    for point in points.values():  # flagged where the interval lies wholly below the target, and only there
        assert point["recall_below_target"] == (point["external"]["recall_ci"][1] < point["target_recall"])
    # measured: 0.99-0.999 flagged in 6 of 7 runs (seeds 0-2, AVX-512 and SSE4.1), 0.95 too in one; none under
    # SSE4.1 with one thread at seed 0, whose thresholds call every internal test image malignant (specificity 0)
    flagged = [p["target_recall"] for p in points.values() if p["recall_below_target"]]
    report = (clinics["folder"] / "screening" / "report.md").read_text()
    transferred = report.split("## How screening transferred")[1].split("\n## ")[0]
    rows = [line for line in transferred.splitlines() if line.startswith("| 0.9")]  # a row per target recall
    shown = [float(row.split("|")[1]) for row in rows if "⚠ below target" in row]
    assert len(rows) == 4 and shown == flagged, rows  # the report shows the flags, and only those
    assert {"test/ece", "val/ece"} <= set(metrics) and "test/ece" in transfer["internal"]


def test_colour_constancy_takes_the_tint_of_the_light_away(transferred: dict, clinics: dict) -> None:
    """On the same images as they are and under the tint: the model trained with Shades of Gray ranks them alike
    and changes its probabilities less than the model without.

    Measured over seeds 0-2, AVX-512 and SSE4.1: its AUROC moved 0.003-0.015 (without: 0.035-0.19), its mean
    probability 0.067-0.099 (without: 0.12-0.17, the ratio 0.43-0.75)."""
    moved = {}
    for color in ("none", "shades_of_gray"):
        plain = evaluated(clinics, color, f"plain_{color}", clinic="clinic_b_plain")
        tinted = transferred[color]
        as_they_are = pd.read_csv(clinics["folder"] / f"plain_{color}" / "predictions_test.csv").set_index("path")
        lit = pd.read_csv(clinics["folder"] / f"external_{color}" / "predictions_test.csv").set_index("path")
        change = (lit["probability"] - as_they_are["probability"].reindex(lit.index)).abs().mean()
        moved[color] = (abs(tinted["test/auroc"] - plain["test/auroc"]), change)
    assert moved["shades_of_gray"][0] < 0.04, moved
    assert moved["shades_of_gray"][1] < 0.8 * moved["none"][1], moved


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
    assert calibration["temperature"] > 0 and calibration["fitted_on"] == "the model's validation split"
    assert {"val/ece_before", "val/ece_after", "test/ece_before", "test/ece_after"} <= set(calibration)
    test = pd.read_csv(clinics["folder"] / "calibrated" / "predictions_test.csv")
    run_in_process(
        "predict",
        f"ckpt={clinics['none']}",
        *external(clinics["clinic_b_tinted"]),
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


def test_thresholds_and_temperature_chosen_on_a_local_sample_are_said_so(clinics: dict, tmp_path: Path) -> None:
    table = pd.read_csv(clinics["clinic_b_tinted"] / "lesions.csv", dtype=str, keep_default_na=False)
    usable = table[table["diagnosis"].isin(["melanoma", "carcinoma", "nevus", "keratosis", "dermatofibroma"])]
    sample = usable.iloc[:80].assign(
        path=lambda t: "images/" + t["image_id"] + ".jpg",
        label=lambda t: t["diagnosis"].isin(["melanoma", "carcinoma"]).astype(int),
    )[["path", "label"]]
    sample.to_csv(clinics["clinic_b_tinted"] / "sample.csv", index=False)
    source = f"evaluation.threshold_source={clinics['clinic_b_tinted'] / 'sample.csv'}"
    metrics = evaluated(clinics, "none", "local", source, "evaluation.calibration=temperature")
    chosen_on = metrics["run"]["thresholds_chosen_on"]
    assert chosen_on.startswith(str(clinics["clinic_b_tinted"] / "sample.csv"))
    assert f"80 images, {int(sample['label'].sum())} malignant" in chosen_on
    report = (clinics["folder"] / "local" / "report.md").read_text()
    assert "Thresholds chosen on " + chosen_on in report
    # the temperature comes from the same sample as the thresholds, not from the model's validation
    validation = evaluated(clinics, "none", "calibrated", "evaluation.calibration=temperature")["calibration"]
    assert metrics["calibration"]["fitted_on"] == chosen_on and f"fitted on {chosen_on}" in report
    assert metrics["calibration"]["temperature"] != pytest.approx(validation["temperature"], rel=0.01)


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


def test_adapting_batch_norm_to_the_tinted_clinic_regains_part_of_what_the_tint_cost(
    transferred: dict, clinics: dict
) -> None:
    """evaluation.adapt=batchnorm re-estimates the batch-norm statistics on the tinted clinic's images, in memory:
    the checkpoint stays as it was. Measured at seed 0: the tint cost 0.13 AUROC (0.79 on the clinic's images as they
    are, 0.66 tinted) and adapting regained 0.12 of it (0.78)."""
    checkpoint = clinics["none"]
    stamp = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    plain = evaluated(clinics, "none", "plain_none", clinic="clinic_b_plain")
    adapted = evaluated(clinics, "none", "adapted_none", "evaluation.adapt=batchnorm")
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == stamp
    record = adapted["adaptation"]
    assert (record["method"], record["layers"], record["images"]) == ("batchnorm", 20, adapted["test/images"])
    assert record["training_malignant_share"] == pytest.approx(0.3, abs=0.05)
    cost = plain["test/auroc"] - transferred["none"]["test/auroc"]
    regained = adapted["test/auroc"] - transferred["none"]["test/auroc"]
    assert cost > 0.03 and regained > 0.25 * cost, (cost, regained)
