"""Tables as the public datasets ship them: columns, labels, groups, splits, metadata, and bad tables."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    TRAINED_RUN_EPOCHS,
    run_in_process,
    split_settings,
    tiny,
    train_settings,
    trained_metrics,
    write_image,
)

from skinclf.config.schema import SyntheticSpec
from skinclf.core.errors import SkinclfError
from skinclf.data.folder import scan_image_folder
from skinclf.data.splits import prepare_splits
from skinclf.data.synthetic import ensure_synthetic_dataset
from skinclf.data.table import read_table_sources
from skinclf.training.run import train

HAM = {"image_column": "image_id", "label_column": "dx", "group_column": "lesion_id"}
HAM_LABELS = {"malignant": ["mel", "bcc", "akiec"], "benign": ["bkl", "df", "nv", "vasc"]}


def ham_like(root: Path, rows: int = 40) -> Path:
    """A HAM10000-like table: ids without extension, images in two folders, lesions with two images each."""
    diagnoses = ["nv", "mel", "bkl", "bcc", "df", "akiec", "vasc", "nv"]
    records = []
    for i in range(rows):
        folder = root / ("part_1" if i % 2 else "part_2")
        write_image(folder / f"ISIC_{i:07d}.jpg", seed=i, size=12, suffix_format="JPEG")
        records.append({"lesion_id": f"HAM_{i // 2:07d}", "image_id": f"ISIC_{i:07d}", "dx": diagnoses[(i // 2) % 8]})
    table = pd.DataFrame(records).assign(age=[30 + i % 40 for i in range(rows)], sex="female", localization="back")
    table.to_csv(root / "HAM10000_metadata.csv", index=False)
    return root / "HAM10000_metadata.csv"


def table_settings(table: Path, images: list[Path], **changes: object) -> object:
    return split_settings(table=str(table), images=[str(i) for i in images], near_duplicates="off", **changes)


def test_a_ham_table_is_read_with_its_diagnoses_lesions_and_metadata(tmp_path: Path) -> None:
    table = ham_like(tmp_path)
    settings = table_settings(table, [tmp_path / "part_1", tmp_path / "part_2"], **HAM, **HAM_LABELS)

    root, records = read_table_sources(settings)

    assert root == tmp_path and len(records) == 40
    assert records.loc[records["image_id"] == "ISIC_0000002", "path"].item() == "part_2/ISIC_0000002.jpg"
    assert records.groupby("diagnosis")["label"].first().to_dict() == {
        "akiec": 1,
        "bcc": 1,
        "bkl": 0,
        "df": 0,
        "mel": 1,
        "nv": 0,
        "vasc": 0,
    }
    assert {"age", "sex", "localization"} <= set(records.columns)

    tables = prepare_splits(root, tmp_path / "splits", dataclasses.replace(settings, val_min_malignant=0))
    lesions = {name: set(t["group"]) for name, t in tables.items()}
    assert not lesions["train"] & lesions["val"] and not lesions["train"] & lesions["test"]  # lesions stay whole
    assert "diagnosis" in tables["train"].columns and "localization" in tables["test"].columns


def test_one_hot_diagnoses_and_a_joined_metadata_table(tmp_path: Path) -> None:
    columns = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    rows = []
    for i in range(12):
        write_image(tmp_path / "images" / f"ISIC_{i:07d}.jpg", seed=i, size=12, suffix_format="JPEG")
        rows.append({"image": f"ISIC_{i:07d}", **{c: float(c == columns[i % 9]) for c in columns}})
    pd.DataFrame(rows).to_csv(tmp_path / "gt.csv", index=False)
    metadata = pd.DataFrame(
        {"image": [r["image"] for r in rows], "age_approx": 50, "lesion_id": [f"L{i // 3}" for i in range(12)]}
    )
    metadata.to_csv(tmp_path / "meta.csv", index=False)
    settings = table_settings(
        tmp_path / "gt.csv",
        [tmp_path / "images"],
        label_column=None,
        diagnosis_columns=columns,
        malignant=["MEL", "BCC", "AK", "SCC"],
        benign=["NV", "BKL", "DF", "VASC"],
        metadata_table=str(tmp_path / "meta.csv"),
        group_column="lesion_id",
    )

    with pytest.raises(SkinclfError, match=r"1 with UNK or an all-zero one-hot row \(gt.csv line 10\)"):
        read_table_sources(settings)
    _, records = read_table_sources(dataclasses.replace(settings, skip_unlabelled=True))

    assert len(records) == 11 and records["age_approx"].eq("50").all()
    assert records.set_index("image")["diagnosis"].to_dict()["ISIC_0000002"] == "BCC"
    assert records.groupby("diagnosis")["label"].first().to_dict()["SCC"] == 1
    assert records["group"].str.endswith(":L0").sum() == 3


def test_a_table_with_a_bom_crlf_line_ends_and_file_names_with_extensions(tmp_path: Path) -> None:
    for i in range(4):
        write_image(tmp_path / "img" / f"a{i}.PNG", seed=i, suffix_format="PNG")
    text = "image,target\r\n" + "".join(f"a{i}.png,{i % 2}\r\n" for i in range(4))
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    _, records = read_table_sources(
        table_settings(tmp_path / "t.csv", [tmp_path / "img"], label_column="target", group_column=None)
    )
    assert records["label"].tolist() == [0, 1, 0, 1] and records["path"].tolist()[0] == "a0.PNG"


@pytest.mark.parametrize(
    ("edit", "changes", "message"),
    [
        (lambda t: t.drop(columns=["dx"]), {}, r"has no column dx; its columns are lesion_id, image_id, age"),
        (
            lambda t: t.assign(dx=t["dx"].where(t.index != 3, "melanoma?")),
            {},
            r"1 with a label that is neither.*line 5",
        ),
        (lambda t: t.assign(dx=t["dx"].where(t.index != 4, "")), {}, r"1 with a missing label .*line 6"),
        (
            lambda t: t.assign(image_id=t["image_id"].where(t.index != 0, "ISIC_9")),
            {},
            r"1 with no image file .*line 2",
        ),
        (
            lambda t: pd.concat([t, t.iloc[[0]].assign(dx="mel")]),
            {},
            r"part_2/ISIC_0000000.jpg is listed with different labels .*nv.*mel",
        ),
        (
            lambda t: t.assign(lesion_id=t["lesion_id"].where(t.index != 7, "")),
            {},
            r"line 9 have no lesion_id. Fill them, or pass data.missing_groups=own",
        ),
        (
            lambda t: t.assign(split=["train"] * 39 + ["holdout"]),
            {"split_column": "split"},
            r"the split column .split. holds holdout \(line 41\): each row needs train, val or test",
        ),
    ],
)
def test_bad_tables_are_refused_naming_the_line_and_what_to_do(
    tmp_path: Path, edit: object, changes: dict, message: str
) -> None:
    table = ham_like(tmp_path)
    edit(pd.read_csv(table, dtype=str, keep_default_na=False)).to_csv(table, index=False)
    settings = table_settings(table, [tmp_path / "part_1", tmp_path / "part_2"], **HAM, **HAM_LABELS, **changes)
    with pytest.raises(SkinclfError, match=message):
        read_table_sources(settings)


def test_unusable_rows_are_left_out_and_counted_when_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = ham_like(tmp_path)
    edited = pd.read_csv(table, dtype=str, keep_default_na=False)
    edited.loc[[3, 5], "dx"] = "unknown"
    edited.loc[8, "image_id"] = "ISIC_missing"
    edited.to_csv(table, index=False)
    settings = table_settings(table, [tmp_path / "part_1", tmp_path / "part_2"], **HAM, **HAM_LABELS)
    with caplog.at_level(logging.WARNING):
        _, records = read_table_sources(dataclasses.replace(settings, skip_unlabelled=True))
    assert len(records) == 37
    assert (
        "left out 3 row(s)" in caplog.text and "2 with a label" in caplog.text and "1 with no image file" in caplog.text
    )


def test_a_metadata_table_that_joins_to_nothing_is_refused(tmp_path: Path) -> None:
    table = ham_like(tmp_path)
    pd.DataFrame({"image_id": ["other"], "age": [3]}).to_csv(tmp_path / "meta.csv", index=False)
    settings = table_settings(
        table,
        [tmp_path / "part_1", tmp_path / "part_2"],
        **HAM,
        **HAM_LABELS,
        metadata_table=str(tmp_path / "meta.csv"),
    )
    with pytest.raises(SkinclfError, match=r"no image of .*HAM10000_metadata.csv is in the metadata table"):
        read_table_sources(settings)


def test_the_synthetic_table_has_patients_diagnoses_metadata_and_unusable_rows(tmp_path: Path) -> None:
    spec = SyntheticSpec(layout="table", n_train=120, n_test=30, image_size=32, malignant_fraction=0.3, seed=1)
    root = ensure_synthetic_dataset(tmp_path / "data", spec)
    table = pd.read_csv(root / "lesions.csv", dtype=str, keep_default_na=False)

    assert {"melanoma", "carcinoma", "nevus", "keratosis", "dermatofibroma"} <= set(table["diagnosis"])
    lesions_per_patient = table.groupby("patient_id")["lesion_id"].nunique()
    assert lesions_per_patient.max() >= 2 and (table.groupby("lesion_id").size() >= 2).any()
    assert (table["age_approx"] == "").any() and (table["sex"] == "").any()
    usable = table[table["diagnosis"] != "unknown"]
    older = usable.assign(age=pd.to_numeric(usable["age_approx"], errors="coerce")).groupby("diagnosis")["age"].mean()
    assert older["carcinoma"] > older["nevus"] + 10  # age goes with the diagnosis
    assert (table["diagnosis"] == "unknown").sum() == 2
    assert len(table) - len(list((root / "images").glob("*.jpg"))) == 2  # two rows name no image
    assert all((root / mask).is_file() for mask in table["mask"])  # each row names its lesion mask


@pytest.mark.slow
def test_a_table_trains_exactly_as_the_equivalent_folder(
    learnable_root: Path, trained_run: Path, tmp_path: Path
) -> None:
    """The folder of the shared run, listed in a table: the same split, the same training, the same metrics."""
    scanned = pd.concat([t.assign(split=name) for name, t in scan_image_folder(learnable_root).items()])
    scanned.rename(columns={"path": "image"}).to_csv(tmp_path / "t.csv", index=False)  # ids as paths in the folder
    folder_data = ("data=", "data.synthetic", "data.root")
    overrides = [
        *(o for o in tiny(learnable_root, TRAINED_RUN_EPOCHS) if not o.startswith(folder_data)),
        *("data=table", f"data.table={tmp_path / 't.csv'}", f"data.images={learnable_root}"),
        *("data.label_column=label", "data.split_column=split", "data.near_duplicates=off"),
        *("data.val_fraction=0.15", f"data.split_dir={tmp_path / 'splits'}"),  # as data=synthetic has them
    ]
    train(train_settings(overrides), tmp_path / "run")
    assert trained_metrics(tmp_path / "run") == trained_metrics(trained_run)


def test_task_diagnosis_learns_the_diagnoses_and_scores_malignancy_from_them(diagnosis_run: Path) -> None:
    metrics = trained_metrics(diagnosis_run)
    diagnosis = metrics["diagnosis"]
    assert diagnosis["classes"] == ["melanoma", "carcinoma", "nevus", "keratosis", "dermatofibroma"]
    # one thread and SSE4.1, seeds 0-2 (studies/machine_spread.py, 141 test images): lowest one-vs-rest AUROC
    # 0.89-0.93, balanced accuracy 0.76-0.85, test AUROC 0.92-0.95
    for name, figures in diagnosis["per_diagnosis"].items():
        assert figures["auroc_one_vs_rest"] > 0.8, (name, figures)  # chance is 0.5
    assert diagnosis["balanced_accuracy"] > 0.6  # chance is 0.2
    assert metrics["test/auroc"] > 0.8 and metrics["run"]["task"] == "diagnosis"
    test = pd.read_csv(diagnosis_run / "predictions_test.csv")
    malignant = test["probability_melanoma"] + test["probability_carcinoma"]
    assert np.allclose(test["probability"], malignant, atol=1e-5)  # malignancy: the malignant diagnoses' sum
    assert (diagnosis_run / "confusion_matrix.png").stat().st_size > 5000


def test_the_audit_by_subgroup_is_in_metrics_json_and_the_report(diagnosis_run: Path, tmp_path: Path) -> None:
    subgroups = trained_metrics(diagnosis_run)["subgroups"]
    assert set(subgroups) == {"sex", "anatom_site_general", "age_approx"}
    assert {entry["value"] for entry in subgroups["sex"]} == {"female", "male", "(missing)"}
    assert sum(entry["images"] for entry in subgroups["age_approx"]) == trained_metrics(diagnosis_run)["test/images"]
    run_in_process("report", f"runs=[{diagnosis_run}]", f"hydra.run.dir={tmp_path}")
    text = (tmp_path / "report.md").read_text()
    assert "## Subgroups of run" in text and "| sex = female |" in text
    assert "| age_approx = <30 (too few to judge) | 19 | 4 |" in text  # under 10 malignant images


def test_predict_and_export_give_the_diagnosis_probabilities(diagnosis_run: Path, tmp_path: Path) -> None:
    ckpt = diagnosis_run / "checkpoints" / "last.ckpt"
    test = pd.read_csv(diagnosis_run / "predictions_test.csv")
    run_in_process(
        "predict",
        f"ckpt={ckpt}",
        f"input={diagnosis_run.parent / 'data' / 'images'}",
        f"hydra.run.dir={tmp_path}",
    )
    predicted = pd.read_csv(tmp_path / "predictions.csv")
    assert "probability_carcinoma" in predicted.columns
    assert predicted["decision_at_recall_0.99"].isin(["benign", "malignant"]).all()
    run_in_process("export", f"ckpt={ckpt}", "format=onnx", f"hydra.run.dir={tmp_path}")
    metadata = json.loads((tmp_path / "model.onnx.json").read_text())
    assert metadata["output"]["names"] == ["probability", "diagnosis_probabilities"]
    assert metadata["output"]["diagnoses"][:2] == ["melanoma", "carcinoma"]
    assert metadata["parity_check"]["max_abs_difference"] <= 1e-4 and len(test) > 0
