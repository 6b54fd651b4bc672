"""Typed schemas: misspelt keys and wrong types fail at compose time, bad ranges before training."""

from __future__ import annotations

import pytest
from conftest import compose_train_config
from hydra.errors import ConfigCompositionException

from skinclf.errors import SkinclfError
from skinclf.schema import validate


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batchsize=8", "Key 'batchsize' not in 'DataConfig'"),
        ("optim.lr=fast", "Value 'fast' of type 'str' could not be converted to Float"),
        ("trainer.max_epochs=2.5", "could not be converted to Integer"),
        ("checkpoint.every_n_epochs=often", "could not be converted to Integer"),
        ("speed.compile=maybe", "is not a valid bool"),
    ],
)
def test_misspelt_keys_and_wrong_types_fail_at_compose_time(override: str, message: str) -> None:
    with pytest.raises(ConfigCompositionException) as refused:
        compose_train_config([override])
    text = str(refused.value) + str(refused.value.__cause__)
    assert message in text
    assert override.split("=")[0] in text  # the full key is named


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-0.001", "optim.lr=-0.001 is out of range: it must be > 0"),
        ("data.val_fraction=0", "data.val_fraction=0.0 is out of range: it must be in (0, 1)"),
        ("data.val_fraction=1", "data.val_fraction=1.0 is out of range"),
        ("evaluation.target_recalls=[0.95,1.5]", "evaluation.target_recalls=1.5 is out of range"),
        ("evaluation.target_recalls=[0]", "evaluation.target_recalls=0.0 is out of range"),
        ("data.crop_size=300", "data.resize_size=232 is out of range: it must be >= data.crop_size (300)"),
        ("checkpoint.select=bestest", "checkpoint.select='bestest' is out of range: it must be best or last"),
        ("optim.warmup_epochs=-1", "optim.warmup_epochs=-1.0 is out of range: it must be >= 0"),
        ("trainer.precision=8-bit", "trainer.precision='8-bit' is out of range"),
    ],
)
def test_values_out_of_range_are_refused(override: str, message: str) -> None:
    cfg = compose_train_config(["model=resnext50", override])
    with pytest.raises(SkinclfError) as refused:
        validate(cfg)
    assert message in str(refused.value)


def test_every_shipped_experiment_validates() -> None:
    for experiment in ("r18_baseline", "r18_albu", "rx50_albu", "demo"):
        validate(compose_train_config([f"experiment={experiment}"]))
