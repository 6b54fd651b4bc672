"""EMA, early stopping (callbacks of the callbacks group) and gradient clipping: Lightning's own, as run settings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import FEW_BATCHES, run_in_process, tiny, train_settings

from skinclf.core.errors import SkinclfError
from skinclf.models.checkpoints import read_checkpoint, stored_validation
from skinclf.training.builders import build_trainer
from skinclf.training.run import train


@pytest.mark.slow
def test_ema_weights_are_evaluated_and_early_stopping_ends_the_run(learnable_root: Path, tmp_path: Path) -> None:
    # min_delta=1: no validation can beat the first by a whole unit of AUPRC, so patience 1 stops after epoch 2
    aids = ("callbacks=[default,ema,early_stopping]", "callbacks.ema.decay=0.5", "trainer.max_epochs=5")
    aids += ("callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0")
    aids += (FEW_BATCHES,)
    metrics = train(train_settings(tiny(learnable_root, *aids, "evaluation.tta=flips")), tmp_path)

    assert metrics["run"]["callbacks"] == ["early_stopping", "ema", "last_checkpoint", "nonfinite_stop"]
    assert metrics["run"]["checkpoint_choice"]["of_epochs"] == 2
    assert metrics["run"]["checkpoint_choice"]["stopped_early"] is True
    checkpoint = read_checkpoint(tmp_path / metrics["run"]["checkpoint"])
    # Lightning keeps the trained weights aside and saves the average as the state dict that is evaluated
    averaged, trained = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == trained.keys()
    assert not torch.equal(averaged["backbone.fc.weight"], trained["backbone.fc.weight"])
    # the validation predicted with the test-time views is kept for predict and evaluate to reuse
    flipped = stored_validation(checkpoint, "flips")
    pd.testing.assert_frame_equal(flipped, pd.read_csv(tmp_path / "predictions_val.csv")[flipped.columns], atol=1e-6)


@pytest.mark.slow
def test_gradient_clipping_trains_in_mixed_precision(learnable_root: Path, tmp_path: Path) -> None:
    """Lightning refuses to clip the gradients of a fused optimizer in mixed precision: the optimizer is not fused
    then (it is otherwise, tests/test_models.py)."""
    clipped = ("trainer.gradient_clip_val=1.0", "trainer.precision=bf16-mixed", "trainer.limit_train_batches=2")
    metrics = train(train_settings(tiny(learnable_root, *clipped, "trainer.max_epochs=1")), tmp_path)
    probabilities = pd.read_csv(tmp_path / "predictions_test.csv")["probability"]
    assert metrics["test/images"] == 160 and probabilities.notna().all()  # trained through, finite scores
    assert probabilities.nunique() > 20  # the images told apart (bf16 keeps 3 digits: 72 values), not one for all


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+callbacks.last_checkpoint.every_n_epoch=2"], "callbacks.last_checkpoint cannot be made: .*every_n_epoch"),
        (["callbacks=[default,early_stopping]", "callbacks.early_stopping.mode=maximum"], "callbacks.early_stopping"),
        (["callbacks=[nonfinite_stop]"], "save no checkpoint to evaluate: keep best_checkpoint or last_checkpoint"),
    ],
)
def test_a_callback_that_cannot_be_made_is_refused_by_name(overrides: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(SkinclfError, match=message):
        build_trainer(train_settings(["model.weights=null", "trainer=cpu", *overrides]), tmp_path)


def test_a_new_callback_is_one_yaml_file(tmp_path: Path) -> None:
    """conf/callbacks/<name>.yaml with a _target_ is all a callback takes (here Lightning's timer)."""
    folder = tmp_path / "callbacks"
    folder.mkdir()
    (folder / "timer.yaml").write_text(
        "timer:\n  _target_: pytorch_lightning.callbacks.Timer\n  duration: 00:01:00:00\n"
    )
    settings = train_settings(
        ["model.weights=null", "trainer=cpu", f"hydra.searchpath=[file://{tmp_path}]", "callbacks=[default,timer]"]
    )
    trainer, callbacks = build_trainer(settings, tmp_path)
    assert type(callbacks["timer"]).__name__ == "Timer" and callbacks["timer"] in trainer.callbacks


@pytest.mark.slow
def test_a_fast_dev_run_trains_and_validates_one_batch_and_evaluates_nothing(
    learnable_root: Path, tmp_path: Path
) -> None:
    result = run_in_process("train", *tiny(learnable_root, "debug=fdr"), f"hydra.run.dir={tmp_path / 'run'}")
    assert "trainer.fast_dev_run: training and validation ran; nothing is evaluated" in result.stdout
    assert not (tmp_path / "run" / "metrics.json").exists()
