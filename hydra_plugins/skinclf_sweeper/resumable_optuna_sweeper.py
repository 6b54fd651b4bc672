"""Hydra's Optuna sweeper, made resumable (``hydra/sweeper=lr_aug`` of skinclf).

The study lives in ``hydra.sweeper.storage`` (a SQLite file by default). Started again with the
same storage and study name, a sweep continues its study: ``n_trials`` counts the trials the study
has already finished, trials that a killed sweep left running are marked failed (so no other sweep
may be running on the same study), and job numbers continue after the earlier ones, so that no job
folder of the sweep is written twice.

Hydra imports every module of hydra_plugins when it starts: optuna is imported only when a sweep runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def resume_study(storage: str, study_name: str) -> tuple[int, int]:
    """How many trials the stored study has finished, and how many it has in all (0, 0 for a new study);
    its trials still marked running are marked failed."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return 0, 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        log.info("trial %d of %s was left running by a stopped sweep: marked failed", trial.number, study_name)
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    return finished, len(study.trials)


try:  # the sweep extra (pip install 'skinclf[sweep]'); without it there is no sweeper to extend
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:
    OptunaSweeper = None

if OptunaSweeper is not None:

    class ResumableOptunaSweeper(OptunaSweeper):
        """OptunaSweeper whose n_trials is the size the stored study is to reach, not the number of trials to add."""

        def sweep(self, arguments: list[str]) -> None:
            sweeper = self.sweeper
            if sweeper.storage is not None:
                finished, numbered = resume_study(sweeper.storage, sweeper.study_name)
                if numbered:
                    log.info(
                        "resuming the study %s in %s: %d of %d trials finished",
                        sweeper.study_name,
                        sweeper.storage,
                        finished,
                        sweeper.n_trials,
                    )
                sweeper.n_trials = max(0, sweeper.n_trials - finished)
                sweeper.job_idx = numbered
                # the results file goes there, also when the study is complete and no job makes the folder
                Path(sweeper.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
            return super().sweep(arguments)
