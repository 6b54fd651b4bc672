"""logger=...: a run tracked by MLflow (a real tracking server, and the embedded store), CSV and TensorBoard."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import FEW_BATCHES, run_in_process, tiny, train_settings
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import LearningRateMonitor

from skinclf.core.errors import SkinclfError
from skinclf.tracking import build_loggers
from skinclf.training.builders import build_trainer

EPOCHS = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1: a SQLite backend, a temporary artifact folder."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'backend.db'}"]
    command += ["--artifacts-destination", str(tmp_path / "artifacts")]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=1):
                    break
            except OSError:
                assert server.poll() is None, "the MLflow server stopped while starting"
                time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


def tracked_run(learnable_root: Path, run_folder: Path, *loggers: str) -> dict:
    overrides = tiny(
        learnable_root,
        f"trainer.max_epochs={EPOCHS}",
        FEW_BATCHES,
        "trainer.log_every_n_steps=2",
        *loggers,
    )
    run_in_process("train", *overrides, f"hydra.run.dir={run_folder}")
    return json.loads((run_folder / "metrics.json").read_text())


def artifact_files(client: MlflowClient, run_id: str, folder: str) -> list[str]:
    """Every artifact file below folder."""
    files = []
    for entry in client.list_artifacts(run_id, folder):
        files += artifact_files(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return files


def the_run(client: MlflowClient) -> object:
    experiment = client.get_experiment_by_name("skinclf")
    (run,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'resnet18_albu'")
    return run


@pytest.mark.slow
def test_a_run_logs_to_an_mlflow_tracking_server(learnable_root: Path, tmp_path: Path, tracking_server: str) -> None:
    metrics = tracked_run(
        learnable_root, tmp_path / "run", "logger=mlflow", f"logger.mlflow.tracking_uri={tracking_server}"
    )

    client = MlflowClient(tracking_server)
    run = the_run(client)
    assert run.info.run_name == "resnet18_albu" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["model/arch"] == "resnet18" and params["optim/lr"] == "0.001" and params["seed"] == "0"
    # the curve, epoch by epoch, then the chosen checkpoint's value with the test metrics
    assert len(client.get_metric_history(run.info.run_id, "val/auroc")) == EPOCHS + 1
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= EPOCHS
    assert run.data.metrics["test/auroc"] == pytest.approx(metrics["test/auroc"])
    target = metrics["operating_points"][1]
    assert run.data.metrics["recall_0.99/test/precision"] == pytest.approx(target["test/precision"])
    assert run.data.metrics["test/auroc_ci_low"] == pytest.approx(metrics["test/auroc_ci"][0])

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "predictions_test.csv", "predictions_val.csv", "pr_curve.png"} <= artifacts
    downloaded = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(downloaded).read_text()) == metrics
    assert "last/last.ckpt" in artifact_files(client, run.info.run_id, "last")  # Lightning's log_model


@pytest.mark.slow
def test_the_embedded_store_and_several_loggers_at_once(learnable_root: Path, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metrics = tracked_run(
        learnable_root,
        tmp_path / "run",
        "logger=[tensorboard,csv,mlflow]",
        f"logger.mlflow.tracking_uri={store}",
        f"logger.mlflow.artifact_location={tmp_path / 'mlruns'}",
    )

    run = the_run(MlflowClient(store))
    assert run.data.metrics["test/auprc"] == pytest.approx(metrics["test/auprc"])

    # evaluate logs to the same place, as a run of its own
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    tracked = ("logger=mlflow", f"logger.mlflow.tracking_uri={store}")
    run_in_process("evaluate", f"ckpt={checkpoint}", *tracked, f"hydra.run.dir={tmp_path / 'evaluated'}")
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("skinclf").experiment_id])
    evaluated = next(r for r in runs if r.info.run_name == "evaluate")
    assert evaluated.data.metrics["test/auroc"] == pytest.approx(metrics["test/auroc"])  # the same checkpoint and split
    assert evaluated.data.params["ckpt"] == str(checkpoint)
    assert list((tmp_path / "mlruns").rglob("metrics.json"))
    logged = pd.read_csv(tmp_path / "run" / "csv" / "metrics.csv")
    assert logged["val/auroc"].notna().sum() == EPOCHS + 1  # the curve, then the chosen checkpoint's
    assert logged["test/auroc"].dropna().tolist() == pytest.approx([metrics["test/auroc"]])
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_a_logger_without_its_package_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytorch_lightning.loggers.mlflow._MLFLOW_AVAILABLE", False)  # as if not installed
    settings = train_settings(["model.weights=null", "logger=[csv,mlflow]"])
    with pytest.raises(
        SkinclfError, match=r"logger=mlflow needs its optional package: pip install 'skinclf\[mlflow\]'"
    ):
        build_loggers(settings.logger, tmp_path)


@pytest.mark.slow
def test_wandb_offline_keeps_the_run_in_the_run_folder(
    learnable_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_folder = tmp_path / "run"
    metrics = tracked_run(learnable_root, run_folder, "logger=wandb", "logger.wandb.offline=true")

    (offline,) = (run_folder / "wandb").glob("offline-run-*")  # for `wandb sync` once online
    assert json.loads((offline / "files" / "metrics.json").read_text()) == metrics
    assert {"predictions_test.csv", "pr_curve.png"} <= {p.name for p in (offline / "files").iterdir()}
    # the run's records (W&B's own binary format, read by `wandb sync`): the config, the curves, the test figures.
    # W&B's service process writes them out after finish() returns: under load (make test) a moment later
    names = (b"max_epochs", b"train/loss", b"val/auroc", b"recall_0.99/test/precision")
    deadline = time.monotonic() + 60
    while not all(name in (records := next(offline.glob("run-*.wandb")).read_bytes()) for name in names):
        assert time.monotonic() < deadline, [name for name in names if name not in records]
        time.sleep(0.5)


def test_logger_none_builds_a_trainer_without_trackers(tmp_path: Path) -> None:
    trainer, _ = build_trainer(train_settings(["model.weights=null", "trainer=cpu", "logger=[]"]), tmp_path)
    assert trainer.loggers == []
    assert not any(isinstance(c, LearningRateMonitor) for c in trainer.callbacks)  # it needs a logger
