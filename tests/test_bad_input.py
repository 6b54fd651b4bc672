"""Each kind of bad input gets a short error naming the culprit and saying what to do."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import make_image_folder, run_command, run_in_process, split_settings

from skinclf.core.errors import SkinclfError
from skinclf.data.splits import prepare_splits


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(SkinclfError, match=rf"data root {tmp_path / 'nowhere'} does not exist: pass data.root="):
        prepare_splits(tmp_path / "nowhere", tmp_path / "splits", split_settings())


def test_missing_class_folder(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", {"train": {"benign": 3}})
    with pytest.raises(SkinclfError, match=rf"class folder 'malignant' is missing in {root / 'train'}"):
        prepare_splits(root, root / "splits", split_settings())
    assert not [p for p in (root / "splits").iterdir() if p.name != ".lock"]  # nothing but the lock file


def test_empty_class_folder(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", {"train": {"benign": 3}})
    (root / "train" / "Malignant").mkdir()
    with pytest.raises(SkinclfError, match=rf"class folder {root / 'train' / 'Malignant'} holds no images"):
        prepare_splits(root, root / "splits", split_settings())


def test_corrupt_images_are_listed_or_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_image_folder(
        tmp_path / "data", {"train": {"benign": 40, "malignant": 20}, "test": {"benign": 4, "malignant": 4}}
    )
    truncated = root / "train" / "benign" / "img_0001.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    (root / "train" / "malignant" / "not_an_image.jpg").write_text("hello")

    with pytest.raises(SkinclfError) as refused:
        prepare_splits(root, root / "splits", split_settings())
    message = str(refused.value)
    assert "2 image(s)" in message and str(truncated) in message and "not_an_image.jpg" in message
    assert "data.skip_corrupt=true" in message
    assert not list((root / "splits").glob("*.csv"))

    with caplog.at_level(logging.WARNING):
        tables = prepare_splits(root, root / "splits", split_settings(), skip_corrupt=True)
    assert "left out 2 unreadable image(s)" in caplog.text
    listed = {p for t in tables.values() for p in t.path}
    assert "train/benign/img_0001.png" not in listed and len(listed) == 67
    metadata = json.loads((root / "splits" / "split.json").read_text())
    assert sorted(metadata["skipped_unreadable"]) == ["train/benign/img_0001.png", "train/malignant/not_an_image.jpg"]


@pytest.mark.slow
def test_cli_reports_a_missing_root_in_one_line_without_traceback(tmp_path: Path) -> None:
    result = run_command("split", f"data.root={tmp_path / 'missing'}", cwd=tmp_path, status=2)
    assert f"error: data root {tmp_path / 'missing'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_reports_an_unknown_config_key() -> None:
    result = run_in_process("train", "data.batchsize=8", status=1)
    assert "Key 'batchsize' not in 'DataSettings'" in result.stderr
    assert "full_key: data.batchsize" in result.stderr


@pytest.mark.parametrize(
    ("command", "arguments", "message"),
    [
        (
            "evaluate",
            ["ckpt=run.ckpt", "bootstrap.resamples=0", "split=val"],
            "bootstrap.resamples= is no longer a setting: use evaluation.bootstrap.resamples=",
        ),
        ("predict", ["ckpt=a.ckpt", "input=x", "tta=flips"], "tta= is no longer a setting: use evaluation.tta="),
        ("predict", ["ckpt=a.ckpt", "input=x", "root=/d"], "root= is no longer a setting: use data.root="),
        ("export", ["ckpt=a.ckpt", "output=m.onnx"], "output= is no longer a setting: use hydra.run.dir="),
        ("train", ["ckpt_path=last"], "ckpt_path= is no longer a setting: use ckpt="),
        ("train", ["model.metadata=[sex]"], "model.metadata= is no longer a setting: use model.metadata_columns="),
        ("train", ["data.crop_size=64"], "data.crop_size= is no longer a setting: use model.preprocessing.crop_size="),
        (
            "train",
            ["ema.decay=0.9"],
            "ema.decay= is no longer a setting: use callbacks=[default,ema] callbacks.ema.decay=<value>",
        ),
        ("report", ["."], "name folders as runs=[.] (several: runs=[<folder>,<folder>])"),
    ],
)
def test_keys_of_earlier_versions_are_refused_with_their_new_name(
    command: str, arguments: list[str], message: str
) -> None:
    result = run_in_process(command, *arguments, status=2)
    assert result.stderr == f"error: {message}\n"
