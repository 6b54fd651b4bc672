"""hydra/sweeper=lr_aug: Optuna over the learning rate and augmentation strength, resumable from its storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import COMMAND_ENV, FEW_BATCHES, command_line, run_in_process, tiny
from optuna.trial import TrialState

TRIALS = 3


def sweep_overrides(learnable_root: Path, folder: Path) -> list[str]:
    return [
        "-m",
        "hydra/sweeper=lr_aug",
        f"hydra.sweeper.n_trials={TRIALS}",
        f"hydra.sweeper.storage=sqlite:///{folder / 'sweep.db'}",
        # the learning rate is the sweeper's to choose: a fixed optim.lr would override it
        *(a for a in tiny(learnable_root, "trainer.max_epochs=1") if not a.startswith("optim.lr")),
        FEW_BATCHES,
        f"hydra.sweep.dir={folder / 'sweep'}",
    ]


def finished_jobs(sweep: Path) -> list[Path]:
    return sorted(sweep.glob("*/metrics.json"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_sweep_resumes_to_its_number_of_trials(learnable_root: Path, tmp_path: Path) -> None:
    overrides = sweep_overrides(learnable_root, tmp_path)
    sweep = tmp_path / "sweep"
    log = tmp_path / "killed_sweep.log"
    with open(log, "w") as output:
        started = subprocess.Popen(
            command_line("train", *overrides), env=COMMAND_ENV, start_new_session=True, stdout=output, stderr=output
        )
    deadline = time.monotonic() + 200
    while len(finished_jobs(sweep)) < 2 and started.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert started.poll() is None, log.read_text()[-3000:]
    os.killpg(started.pid, signal.SIGKILL)  # as a crash or a preempted node would, mid-sweep
    started.wait()
    killed_after = len(finished_jobs(sweep))
    assert 2 <= killed_after < TRIALS

    run_in_process("train", *overrides)  # the same command again

    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    study = optuna.load_study(study_name="skinclf_lr_aug", storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == TRIALS
    assert not study.get_trials(states=(TrialState.RUNNING,))
    # each trial has a job folder of its own, numbered as the study numbers it: none written twice. The kill may
    # come after a job wrote its metrics.json but before the sweeper recorded its trial: that trial is marked
    # failed and its folder stays beside the TRIALS complete ones.
    jobs = {int(j.parent.name.split("_")[0]): json.loads(j.read_text())["val/auprc"] for j in finished_jobs(sweep)}
    assert set(jobs) <= {t.number for t in study.trials} and len(jobs) >= TRIALS
    for trial in complete:  # the objective: the validation AUPRC of the trial's own job
        assert trial.value == pytest.approx(jobs[trial.number]), trial.number
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"optim.lr", "aug.strength"}
    assert results["best_value"] == pytest.approx(max(t.value for t in complete))

    # once complete, the same command trains nothing more and reports the study's best into a new sweep folder
    done = [a if not a.startswith("hydra.sweep.dir=") else f"hydra.sweep.dir={tmp_path / 'done'}" for a in overrides]
    run_in_process("train", *done)
    assert len(optuna.load_study(study_name="skinclf_lr_aug", storage=storage).trials) == len(study.trials)
    assert yaml.safe_load((tmp_path / "done" / "optimization_results.yaml").read_text()) == results
