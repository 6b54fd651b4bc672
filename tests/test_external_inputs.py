"""The tables and folders users evaluate on: read as they come, or refused naming what to do."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_in_process, split_settings, trained_metrics, write_image

from skinclf.core.errors import SkinclfError
from skinclf.data.table import read_table_sources


def images(folder: Path, count: int) -> list[str]:
    for i in range(count):
        write_image(folder / f"ISIC_{i:07d}.jpg", seed=i, size=12, suffix_format="JPEG")
    return [f"ISIC_{i:07d}" for i in range(count)]


def settings_for(table: Path, folder: Path) -> object:
    return split_settings(
        table=str(table),
        images=str(folder),
        image_column="image_id",
        label_column="dx",
        malignant=["mel"],
        benign=["nv"],
        group_column=None,
    )


def test_a_table_excel_wrote_with_semicolons_in_cp1252_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = images(tmp_path / "images", 4)
    text = "image_id;dx;localization\n" + "".join(
        f"{i};{d};t\u00eate\n" for i, d in zip(ids, ["mel", "nv"] * 2, strict=True)
    )
    (tmp_path / "table.csv").write_bytes(text.encode("cp1252"))  # tête: a byte UTF-8 cannot read
    with caplog.at_level(logging.WARNING):
        _, records = read_table_sources(settings_for(tmp_path / "table.csv", tmp_path / "images"))
    assert records["label"].tolist() == [1, 0, 1, 0] and set(records["localization"]) == {"t\u00eate"}
    assert "is not UTF-8" in caplog.text and "cp1252" in caplog.text


def test_a_row_whose_image_climbs_out_of_the_folders_is_refused_before_any_file_is_opened(tmp_path: Path) -> None:
    ids = images(tmp_path / "data" / "images", 2)
    (tmp_path / "secret.jpg").write_text("not for the model")
    rows = [*ids, "../../secret.jpg"]
    pd.DataFrame({"image_id": rows, "dx": ["mel", "nv", "nv"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SkinclfError, match=r"line 4: the image \.\./\.\./secret\.jpg lies outside the image folders"):
        read_table_sources(settings_for(tmp_path / "t.csv", tmp_path / "data" / "images"))


def test_an_empty_table_and_a_missing_image_folder_are_named(tmp_path: Path) -> None:
    images(tmp_path / "images", 1)
    (tmp_path / "empty.csv").write_text("image_id,dx\n")
    with pytest.raises(SkinclfError, match=r"empty.csv has a header but no rows"):
        read_table_sources(settings_for(tmp_path / "empty.csv", tmp_path / "images"))
    result = run_in_process(
        "split",
        "data=table",
        f"data.table={tmp_path / 'empty.csv'}",
        f"data.images={tmp_path / 'nowhere'}",
        "model.weights=null",
        status=2,
    )
    assert f"image folder {tmp_path / 'nowhere'} does not exist: set data.images" in result.stderr


def test_a_diagnosis_model_on_a_binary_csv_gets_the_malignancy_figures(diagnosis_run: Path, tmp_path: Path) -> None:
    tested = pd.read_csv(diagnosis_run / "predictions_test.csv")
    tested[["path", "label"]].to_csv(tmp_path / "labelled.csv", index=False)
    root = next(diagnosis_run.parent.rglob("lesions.csv")).parent
    run_in_process(
        "evaluate",
        f"ckpt={diagnosis_run / 'checkpoints' / 'last.ckpt'}",
        f"input={tmp_path / 'labelled.csv'}",
        f"data.root={root}",
        f"hydra.run.dir={tmp_path / 'out'}",
        "evaluation.subgroups=[]",
    )
    metrics = trained_metrics(tmp_path / "out")
    assert metrics["test/auroc"] == pytest.approx(trained_metrics(diagnosis_run)["test/auroc"], abs=1e-6)
    assert "diagnosis" not in metrics  # no diagnoses to score: the malignancy figures only


def test_diagnoses_the_head_does_not_know_are_counted_not_scored(diagnosis_run: Path, tmp_path: Path) -> None:
    root = next(diagnosis_run.parent.rglob("lesions.csv")).parent
    table = pd.read_csv(root / "lesions.csv", dtype=str, keep_default_na=False)
    known = ["melanoma", "nevus", "keratosis", "carcinoma", "dermatofibroma"]
    present = table["image_id"].map(lambda image: (root / "images" / f"{image}.jpg").is_file())
    table = table[table["diagnosis"].isin(known) & present]
    table.loc[table.index[:7], "diagnosis"] = "lentigo"  # a benign diagnosis this head never learnt
    table.to_csv(tmp_path / "other.csv", index=False)
    run_in_process(
        "evaluate",
        f"ckpt={diagnosis_run / 'checkpoints' / 'last.ckpt'}",
        *("data=table", f"data.table={tmp_path / 'other.csv'}", f"data.images={root / 'images'}"),
        *("data.image_column=image_id", "data.label_column=diagnosis", "data.malignant=[melanoma,carcinoma]"),
        "data.benign=[nevus,keratosis,dermatofibroma,lentigo]",
        *("evaluation.bootstrap.resamples=0", "evaluation.subgroups=[]", f"hydra.run.dir={tmp_path / 'out'}"),
    )
    metrics = trained_metrics(tmp_path / "out")
    assert metrics["diagnosis"]["unknown_diagnoses"] == {"lentigo": 7}
    assert metrics["test/images"] == len(table) and metrics["test/auroc"] is not None


def test_an_empty_class_folder_is_evaluated_for_what_one_class_defines(trained_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "screening"
    for i in range(6):
        write_image(folder / "benign" / f"b{i}.png", seed=i, size=48, suffix_format="PNG")
    (folder / "malignant").mkdir()
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    run_in_process("evaluate", f"ckpt={ckpt}", f"input={folder}", f"hydra.run.dir={tmp_path / 'evaluated'}")
    metrics = trained_metrics(tmp_path / "evaluated")
    assert metrics["test/malignant"] == 0 and metrics["operating_points"][0]["test/specificity"] is not None
    run_in_process("predict", f"ckpt={ckpt}", f"input={folder}", f"hydra.run.dir={tmp_path / 'predicted'}")
    assert len(pd.read_csv(tmp_path / "predicted" / "predictions.csv")) == 6
