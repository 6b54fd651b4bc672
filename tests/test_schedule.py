"""Linear warmup, then cosine decay to zero, stepped every batch."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import train_settings

from skinclf.models import LesionClassifier
from skinclf.models.schedule import WarmupCosine
from skinclf.training.builders import build_model


def test_warmup_then_cosine_to_zero() -> None:
    schedule = WarmupCosine(warmup_steps=10, total_steps=110)
    factors = np.array([schedule(step) for step in range(111)])

    np.testing.assert_allclose(factors[:10], np.arange(1, 11) / 10)  # linear rise to the peak
    assert factors[10] == pytest.approx(1.0)
    assert np.all(np.diff(factors[10:]) < 0)  # then strictly down
    assert factors[60] == pytest.approx(0.5)  # halfway through the decay: cos(pi/2)
    assert factors[110] == pytest.approx(0.0, abs=1e-12)


def test_the_module_steps_the_schedule_per_batch_with_warmup_in_epochs() -> None:
    settings = train_settings(["model.weights=null", "optim.lr=1e-3", "optim.warmup_epochs=2"])
    model = build_model(settings, load_pretrained_weights=False)
    # 10 steps an epoch, no gradient clipping
    model.trainer = SimpleNamespace(estimated_stepping_batches=200, max_epochs=20, gradient_clip_val=None)
    config = LesionClassifier.configure_optimizers(model)
    scheduler = config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    assert scheduler.lr_lambdas[0].warmup_steps == 20
    assert scheduler.lr_lambdas[0].total_steps == 200
    assert type(config["optimizer"]).__name__ == "Adam"
    assert config["optimizer"].param_groups[0]["lr"] == pytest.approx(1e-3 / 20)
