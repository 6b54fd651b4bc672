"""ema.decay, early_stopping and gradient clipping: Lightning's own, as settings of a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import FEW_BATCHES, tiny, train_settings

from skinclf.errors import SkinclfError
from skinclf.fitting.checkpoints import read_checkpoint, stored_validation
from skinclf.fitting.run import train


def test_ema_weights_are_evaluated_and_early_stopping_ends_the_run(learnable_root: Path, tmp_path: Path) -> None:
    # min_delta=1: no validation can beat the first by a whole unit of AUPRC, so patience 1 stops after epoch 2
    aids = ("ema.decay=0.5", "early_stopping.patience=1", "early_stopping.min_delta=1.0", "trainer.max_epochs=5")
    aids += (FEW_BATCHES,)
    metrics = train(train_settings(tiny(learnable_root, *aids, "evaluation.tta=flips")), tmp_path)

    assert metrics["run"]["ema_decay"] == 0.5
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


def test_gradient_clipping_trains_in_mixed_precision(learnable_root: Path, tmp_path: Path) -> None:
    """Lightning refuses to clip the gradients of a fused optimizer in mixed precision: the optimizer is not fused
    then (it is otherwise, tests/test_models.py)."""
    clipped = ("trainer.gradient_clip_val=1.0", "trainer.precision=bf16-mixed", "trainer.limit_train_batches=2")
    metrics = train(train_settings(tiny(learnable_root, *clipped, "trainer.max_epochs=1")), tmp_path)
    assert metrics["test/images"] == 160 and 0 <= metrics["test/auroc"] <= 1


@pytest.mark.parametrize(
    ("override", "key"),
    [("ema.decay=1.0", "ema.decay"), ("early_stopping.patience=0", "early_stopping.patience")],
)
def test_out_of_range_aids_are_refused_by_name(override: str, key: str) -> None:
    with pytest.raises(SkinclfError, match=key):
        train_settings(["model.weights=null", override])
