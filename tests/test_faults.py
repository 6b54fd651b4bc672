"""Faults a cluster user meets: jobs started together on one data root, a full disk, SIGTERM.

The full disk is simulated by a fault-injecting ``open``: writes to the matching files fail with
ENOSPC, as they do when a file system fills up, at the point of the run where that file is written.
"""

from __future__ import annotations

import builtins
import errno
import io
import itertools
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import COMMAND_ENV, TRAINED_RUN_EPOCHS, command_line, run_in_process, tiny, trained_metrics

from skinclf.core.errors import SIGTERM_EXIT_CODE, USER_ERROR_EXIT_CODE
from skinclf.models import LesionClassifier


def run_train(*args: str, status: int) -> str:
    """``python -m skinclf.train <args>`` in this process; checks its exit status, returns its stderr."""
    return run_in_process("train", *args, status=status).stderr


class FullDiskFile:
    """A file opened for writing on a full disk: every write fails with ENOSPC (or another errno)."""

    def __init__(self, handle: Any, code: int = errno.ENOSPC) -> None:
        self._handle = handle
        self._code = code

    def write(self, data: object) -> int:
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, name_pattern: str, after: int = 0, code: int = errno.ENOSPC) -> None:
    """Files named like the pattern and opened for writing, but the first ``after`` of them, lie on a full disk
    (or, with another errno, fail otherwise: EACCES, a folder the user may not write to, whoever runs the test)."""
    real_open, matching = io.open, itertools.count()

    def open_on_full_disk(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        writing = any(flag in mode for flag in "wax+")
        if writing and re.search(name_pattern, Path(str(file)).name) and next(matching) >= after:
            return FullDiskFile(handle, code)
        return handle

    monkeypatch.setattr(io, "open", open_on_full_disk)
    monkeypatch.setattr(builtins, "open", open_on_full_disk)


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name or ".building-" in p.name]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_full_disk_at_each_write_stops_in_one_line_and_resume_completes(
    learnable_root: Path,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    split_dir, run_folder = tmp_path / "splits", tmp_path / "run"
    args = [*tiny(learnable_root, TRAINED_RUN_EPOCHS), f"data.split_dir={split_dir}", f"hydra.run.dir={run_folder}"]
    stages = [
        (r"^\.train\..*\.csv$", 0, split_dir / "train.csv"),  # the split CSVs
        (r"^\.train-.*\.u8$", 0, split_dir / "cache"),  # the image cache
        (r"\.ckpt$", 1, run_folder / "checkpoints"),  # the checkpoint of the second epoch
        (r"^\.metrics\..*\.json$", 0, run_folder / "metrics.json"),  # metrics.json
    ]
    for pattern, after, named in stages:
        with monkeypatch.context() as patch:
            fill_disk(patch, pattern, after)
            stderr = run_train(*args, "resume=true", status=USER_ERROR_EXIT_CODE)
        last_line = stderr.strip().splitlines()[-1]
        assert "Traceback" not in stderr and stderr.count("error:") == 1, stderr
        assert last_line.startswith(f"error: no space left on the device while writing {named}"), last_line
        assert "data.split_dir" in last_line and "resume=true" in last_line
        assert not leftovers(tmp_path), leftovers(tmp_path)
        if named.parent == run_folder / "checkpoints":  # the first epoch's checkpoints are whole
            assert LesionClassifier.load_from_checkpoint(run_folder / "checkpoints" / "last.ckpt")

    run_train(*args, "resume=true", status=0)
    assert trained_metrics(run_folder) == trained_metrics(trained_run)  # as if the disk had never filled up


def test_a_split_folder_the_user_may_not_write_to_is_named_with_what_to_do(
    learnable_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only data root (a shared dataset): simulated, since root may write anywhere."""
    split_dir = tmp_path / "splits"
    with monkeypatch.context() as patch:
        fill_disk(patch, r"^\.(train|val|test)\..*\.csv$", code=errno.EACCES)
        training_refuses_the_split_folder(learnable_root, split_dir, tmp_path / "run")
    assert not list(split_dir.glob("*.csv")) and not leftovers(tmp_path)


def training_refuses_the_split_folder(learnable_root: Path, split_dir: Path, run_folder: Path) -> None:
    """Training stops in one line that names the split folder, the reason and what to do."""
    stderr = run_train(
        *tiny(learnable_root, "trainer.max_epochs=1"),
        f"data.split_dir={split_dir}",
        f"hydra.run.dir={run_folder}",
        status=USER_ERROR_EXIT_CODE,
    )
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: cannot write the split CSVs to {split_dir}"), stderr
    assert "Permission denied" in last_line and "data.split_dir=<a writable folder>" in last_line


def test_a_split_folder_that_cannot_be_made_is_named_before_any_image_is_read(
    learnable_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default split folder beside a shared dataset's read-only table: refused at once, not after every image
    was read (simulated, since root may write anywhere)."""
    read_only = tmp_path / "read_only"
    real_mkdir = Path.mkdir

    def refused_inside(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.is_relative_to(read_only):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refused_inside)
    monkeypatch.setattr("skinclf.data.records.read_images", lambda *args: pytest.fail("an image was read"))
    training_refuses_the_split_folder(learnable_root, read_only / "splits", tmp_path / "run")


def test_the_cache_is_refused_early_when_the_disk_is_too_small(
    learnable_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for reader in ("skinclf.core.atomic.free_bytes", "skinclf.data.cache.free_bytes"):  # 100 kB left, so nothing staged
        monkeypatch.setattr(reader, lambda path: 100_000)
    stderr = run_train(
        *tiny(learnable_root, "trainer.max_epochs=1"),
        f"data.split_dir={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        status=USER_ERROR_EXIT_CODE,
    )
    assert re.match(
        r"error: the image cache of the train split needs about [\d.]+ MB in .*cache, but only 100 kB are free "
        r"there: free space, or point data.cache_dir at a disk with room, or pass data.cache=false",
        stderr.strip().splitlines()[-1],
    ), stderr
    assert not list((tmp_path / "cache").glob("*.u8"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_mid_epoch_stops_cleanly_and_resume_gives_the_uninterrupted_metrics(
    learnable_root: Path,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = [*tiny(learnable_root, TRAINED_RUN_EPOCHS), f"hydra.run.dir={tmp_path}"]
    original_step = LesionClassifier.training_step

    def preempted_in_the_second_epoch(self: LesionClassifier, batch: dict, batch_idx: int) -> Any:
        if self.current_epoch == 1 and batch_idx == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler pre-empting the job
        return original_step(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(LesionClassifier, "training_step", preempted_in_the_second_epoch)
        stderr = run_train(*args, status=SIGTERM_EXIT_CODE)
    assert stderr.strip().splitlines()[-1].startswith("error: stopped by SIGTERM"), stderr
    assert f"resume=true (hydra.run.dir={tmp_path})" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "metrics.json").exists() and not leftovers(tmp_path)

    run_train(*args, "resume=true", status=0)
    assert trained_metrics(tmp_path) == trained_metrics(trained_run)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_jobs_started_together_on_a_fresh_data_root_agree(tmp_path: Path) -> None:
    args = [
        "data=synthetic",
        *("data.synthetic.n_train=160", "data.synthetic.n_test=24", "data.synthetic.image_size=40"),
        *(
            "model.preprocessing.resize_size=36",
            "model.preprocessing.crop_size=32",
            "data.batch_size=16",
            "data.num_workers=0",
        ),
        *("model.weights=null", "trainer=cpu", "trainer.max_epochs=1", "evaluation.bootstrap.resamples=0"),
        *("trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"),
    ]
    environment = {**COMMAND_ENV, "SKINCLF_CACHE": str(tmp_path / "cache")}  # nothing generated yet
    jobs = [
        subprocess.Popen(
            command_line("train", *args, f"hydra.run.dir={tmp_path / f'job{i}'}"),
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    errors = [job.communicate(timeout=280)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], errors

    (data_root,) = (tmp_path / "cache").glob("synthetic-*")  # generated once
    split_files = sorted(p.name for p in (data_root / "splits").iterdir())
    assert split_files == [".lock", "cache", "split.json", "test.csv", "train.csv", "val.csv"]
    metrics = [json.loads((tmp_path / f"job{i}" / "metrics.json").read_text()) for i in range(3)]
    assert metrics[0] == metrics[1] == metrics[2]
    validation = [(tmp_path / f"job{i}" / "predictions_val.csv").read_text() for i in range(3)]
    assert validation[0] == validation[1] == validation[2]  # the same validation images, the same scores
    assert not leftovers(tmp_path)
