"""Faults and scale-out: kill and resume, NaN losses, mismatched checkpoints, DDP, cluster launchers."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import (
    COMMAND_ENV,
    FEW_BATCHES,
    TRAINED_RUN_EPOCHS,
    command_line,
    run_command,
    run_in_process,
    tiny,
    train_settings,
    trained_metrics,
)

import skinclf
from skinclf.core.atomic import atomic_path
from skinclf.core.errors import SkinclfError
from skinclf.models import LesionClassifier
from skinclf.models.checkpoints import VERSION_KEY
from skinclf.training.builders import resume_checkpoint
from skinclf.training.run import train


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_killed_after_an_epoch_resumes_to_the_same_metrics(
    learnable_root: Path, trained_run: Path, tmp_path: Path
) -> None:
    args = tiny(learnable_root, TRAINED_RUN_EPOCHS)
    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        command_line("train", *args, f"hydra.run.dir={killed}"),
        cwd=tmp_path,
        env=COMMAND_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not last.exists() and process.poll() is None:  # the checkpoint of the first epoch
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # in the second epoch
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "metrics.json").exists()

    run_in_process("train", *args, f"hydra.run.dir={killed}", "resume=true")

    assert trained_metrics(killed) == trained_metrics(trained_run)  # as if never killed
    assert not list(killed.rglob("*.partial*"))  # no half-written file left behind


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    learnable_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original_step = LesionClassifier.training_step

    def poisoned_from_epoch_one(self: LesionClassifier, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = original_step(self, batch, batch_idx)
        return loss * float("nan") if self.current_epoch >= 1 else loss

    monkeypatch.setattr(LesionClassifier, "training_step", poisoned_from_epoch_one)
    cfg = train_settings(tiny(learnable_root, "trainer.max_epochs=3", FEW_BATCHES))
    with pytest.raises(SkinclfError, match=r"loss became NaN or infinite .epoch 1") as stopped:
        train(cfg, tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert str(last) in str(stopped.value)
    kept = torch.load(last, weights_only=True)
    assert kept["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())


def test_resuming_from_a_checkpoint_of_another_architecture_is_refused(learnable_root: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "other.ckpt"
    stored = {"settings": {"model": {"arch": "resnet18", "library": "torchvision"}}}
    torch.save({VERSION_KEY: skinclf.__version__, "hyper_parameters": stored, "state_dict": {}}, ckpt)
    cfg = train_settings(tiny(learnable_root, "model.arch=mobilenet_v3_small", f"ckpt={ckpt}"))
    with pytest.raises(SkinclfError, match=r"holds a torchvision resnet18 model but .* model.arch=mobilenet_v3_small"):
        resume_checkpoint(cfg, tmp_path)
    # timm has a resnet18 too: the same name from the other library is another model
    cfg = train_settings(tiny(learnable_root, "model=timm", "model.arch=resnet18", f"ckpt={ckpt}"))
    with pytest.raises(SkinclfError, match=r"holds a torchvision resnet18 model but .* model.library=timm"):
        resume_checkpoint(cfg, tmp_path)
    cfg = train_settings(tiny(learnable_root, "ckpt=last"))
    with pytest.raises(SkinclfError, match=r"ckpt=last, but .*last.ckpt does not exist"):
        resume_checkpoint(cfg, tmp_path)
    assert resume_checkpoint(train_settings(tiny(learnable_root, "resume=true")), tmp_path) is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_process_cpu_ddp_writes_the_metrics_once(learnable_root: Path, tmp_path: Path) -> None:
    run_folder = tmp_path / "ddp"
    result = run_command(
        "train",
        *tiny(learnable_root, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"),
        *("trainer.precision=32-true", "trainer.max_epochs=1", FEW_BATCHES),
        f"hydra.run.dir={run_folder}",
        cwd=tmp_path,
    )
    metrics = json.loads((run_folder / "metrics.json").read_text())
    assert metrics["test/images"] == 160 and metrics["val/images"] > 0  # the whole test set, on rank 0
    assert result.stdout.count("test AUROC") == 1
    assert len(list(run_folder.rglob("metrics.json"))) == 1
    assert torch.load(run_folder / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0


def test_ddp_inside_a_local_multirun_is_refused(learnable_root: Path, tmp_path: Path) -> None:
    result = run_in_process(
        "train",
        "-m",
        *tiny(learnable_root, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "seed=0,1"),
        f"hydra.sweep.dir={tmp_path}",
        status=2,
    )
    assert "does not mix with a local multirun" in result.stderr


def test_the_slurm_launcher_composes(tmp_path: Path) -> None:
    result = run_in_process(
        "train",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.tasks_per_node=4",
        "trainer=ddp",
        "--cfg",
        "hydra",
    )
    launcher = yaml.safe_load(result.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["gpus_per_node"] == 4 and launcher["tasks_per_node"] == 4


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_text("half of the new")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "previous" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as partial:
        partial.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]
