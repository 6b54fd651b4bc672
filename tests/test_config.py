"""Typed schemas: misspelt keys and wrong types fail at compose time, bad ranges before training."""

from __future__ import annotations

import logging

import pytest
from conftest import compose_train_config
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException

from skinclf.config.resolvers import register_configs
from skinclf.config.schema import validate
from skinclf.core.errors import SkinclfError
from skinclf.training.builders import warn_of_slow_precision


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batchsize=8", "Key 'batchsize' not in 'DataSettings'"),
        ("trainer.max_epoch=8", "Key 'max_epoch' not in 'TrainerSettings'"),
        ("optim.lr=fast", "Value 'fast' of type 'str' could not be converted to Float"),
        ("cv.folds=often", "could not be converted to Integer"),
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
        (
            "model.preprocessing.crop_size=300",
            "model.preprocessing.resize_size=232 is out of range: it must be >= model.preprocessing.crop_size (300)",
        ),
        ("optim.warmup_epochs=-1", "optim.warmup_epochs=-1.0 is out of range: it must be >= 0"),
        ("trainer.precision=8-bit", "trainer.precision='8-bit' is out of range"),
        ("trainer.max_epochs=2.5", "trainer.max_epochs=2.5 is out of range: it must be > 0"),
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


def test_the_debug_configs_run_short_on_the_cpu_without_trackers() -> None:
    debug = {name: validate(compose_train_config([f"debug={name}"])) for name in ("default", "fdr", "limit", "overfit")}
    for settings in debug.values():
        assert settings.trainer.accelerator == "cpu" and settings.logger == {} and settings.data.num_workers == 0
        assert settings.trainer.detect_anomaly is True and settings.name == "debug"
    assert debug["default"].trainer.max_epochs == 1
    assert debug["fdr"].trainer.fast_dev_run is True
    assert (debug["limit"].trainer.limit_train_batches, debug["limit"].trainer.limit_val_batches) == (3, 3)
    assert (debug["overfit"].trainer.overfit_batches, debug["overfit"].trainer.max_epochs) == (1, 20)


def test_gpu_presets_fall_back_to_32_bit_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    assert validate(compose_train_config(["trainer=ddp"])).trainer.precision == "bf16-mixed"
    assert validate(compose_train_config(["trainer=gpu"])).trainer.precision == "bf16-mixed"
    on_cpu = validate(compose_train_config(["trainer=ddp", "trainer.accelerator=cpu"]))
    assert on_cpu.trainer.precision == "32-true"  # bf16 convolutions crawl on CPUs
    with caplog.at_level(logging.WARNING):
        warn_of_slow_precision("cpu", "bf16-mixed")  # asked for explicitly: allowed, but said
    assert "trainer.precision=bf16-mixed on the CPU" in caplog.text


def test_the_evaluation_group_is_shared_by_every_command_that_evaluates() -> None:
    register_configs()
    with initialize_config_module(config_module="skinclf.conf", version_base="1.3"):
        commands = [("train", []), ("evaluate", ["ckpt=x"]), ("predict", ["ckpt=x", "input=y"])]
        commands += [("export", ["ckpt=x"]), ("ensemble", ["runs=[x]"])]
        for name, extra in commands:
            cfg = compose(config_name=name, overrides=[*extra, "evaluation.target_recalls=[0.9]"])
            assert validate(cfg).evaluation.target_recalls == [0.9], name
