"""Metadata fusion (model.metadata_columns): encoded as in training everywhere, learnt from when it carries signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_in_process, train_settings
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from skinclf.data.metadata import encode, feature_names, fit_encoding
from skinclf.trained import load_model
from skinclf.training.run import train

METADATA = ["age_approx", "anatom_site_general"]


def blank_table(root: Path, rows: int = 360) -> Path:
    """Images that all look alike, whose malignancy only the age tells (older is malignant); the site tells nothing."""
    rng = np.random.default_rng(0)
    malignant = rng.random(rows) < 0.35
    (root / "images").mkdir()
    for i in range(rows):  # the same pixels in files of different bytes (a text chunk names each)
        info = PngInfo()
        info.add_text("lesion", str(i))
        Image.new("RGB", (16, 16), (180, 120, 100)).save(root / "images" / f"img{i:04d}.png", pnginfo=info)
    age = np.round(np.where(malignant, 65, 40) + rng.normal(0, 8, rows))
    table = pd.DataFrame(
        {
            "image": [f"img{i:04d}" for i in range(rows)],
            "label": malignant.astype(int),
            "age_approx": np.where(np.arange(rows) % 10 == 0, np.nan, age),  # some ages unknown
            "anatom_site_general": rng.choice(["back", "face", "lower extremity"], rows),
        }
    )
    table.to_csv(root / "lesions.csv", index=False)
    return root / "lesions.csv"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same short training from the image alone and with the metadata beside it."""
    folder = tmp_path_factory.mktemp("metadata")
    table = blank_table(folder)
    common = [
        *("data=table", f"data.table={table}", f"data.images={folder / 'images'}", "data.label_column=label"),
        *("data.near_duplicates=off", f"data.split_dir={folder / 'splits'}", "data.val_min_malignant=10"),
        *(
            "model.weights=null",
            "trainer=cpu",
            "model.preprocessing.resize_size=16",
            "model.preprocessing.crop_size=16",
            "data.batch_size=32",
        ),
        *("data.num_workers=0", "trainer.max_epochs=5", "optim.lr=3e-3", "optim.warmup_epochs=1"),
        *(
            "evaluation.bootstrap.resamples=0",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
        ),
    ]
    runs = {"image": folder / "image", "fused": folder / "fused"}
    train(train_settings(common), runs["image"])
    train(train_settings([*common, f"model.metadata_columns=[{','.join(METADATA)}]"]), runs["fused"])
    return runs


def test_the_encoding_uses_training_statistics_and_marks_missing_values() -> None:
    train = pd.DataFrame({"age": [30.0, 50.0, None], "sex": ["male", "female", None]})
    encoding = fit_encoding(train, ["age", "sex"])
    assert feature_names(encoding) == ["age", "age missing", "sex=female", "sex=male", "sex missing"]

    new = pd.DataFrame({"age": [40.0, None], "sex": ["unknown", "male"]})
    np.testing.assert_allclose(encode(new, encoding, "new"), [[0, 0, 0, 0, 0], [0, 1, 0, 1, 0]])  # 40 is the mean


def test_metadata_that_carries_the_signal_is_learnt(runs: dict[str, Path]) -> None:
    image, fused = (json.loads((runs[k] / "metrics.json").read_text()) for k in ("image", "fused"))
    assert image["test/auroc"] == pytest.approx(0.5)  # the images tell nothing
    assert fused["test/auroc"] > 0.85  # the age tells almost everything: 0.982-0.996 across machines and seeds


def test_predict_and_export_read_the_same_columns(runs: dict[str, Path], tmp_path: Path) -> None:
    ckpt = runs["fused"] / "checkpoints" / "last.ckpt"
    root = load_model(ckpt).split("test").root
    test = pd.read_csv(runs["fused"] / "predictions_test.csv")
    table = pd.read_csv(runs["fused"].parent / "lesions.csv").set_index("image")
    ids = [Path(p).stem for p in test["path"]]
    inputs = test[["path"]].assign(**{column: table.loc[ids, column].to_numpy() for column in METADATA})
    inputs.to_csv(tmp_path / "inputs.csv", index=False)
    predict = ("predict", f"ckpt={ckpt}", f"data.root={root}")

    run_in_process(*predict, f"input={tmp_path / 'inputs.csv'}", f"hydra.run.dir={tmp_path / 'p'}")
    predicted = pd.read_csv(tmp_path / "p" / "predictions.csv")
    np.testing.assert_allclose(predicted["probability"], test["probability"], atol=1e-5)  # encoded as in training

    inputs.drop(columns="age_approx").to_csv(tmp_path / "no_age.csv", index=False)
    refused = run_in_process(*predict, f"input={tmp_path / 'no_age.csv'}", f"hydra.run.dir={tmp_path / 'q'}", status=2)
    assert "has no column age_approx" in refused.stderr.strip().splitlines()[-1]

    output = tmp_path / "model.onnx"
    run_in_process("export", f"ckpt={ckpt}", "format=onnx", f"hydra.run.dir={tmp_path}")
    described = json.loads(output.with_name("model.onnx.json").read_text())
    assert described["metadata"]["features"][:2] == ["age_approx", "age_approx missing"]
    assert described["parity_check"]["max_abs_difference"] <= 1e-4
