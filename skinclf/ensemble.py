"""Ensemble runs: ``python -m skinclf.ensemble runs=[<run or multirun folder>,...] [combine=mean|rank]``.

Combines every training run below the folders (the folds of a cross-validation, seeds,
architectures; see :mod:`skinclf.metrics.combining`), chooses each operating point on the
combined validation predictions (the pooled out-of-fold ones for folds) and writes into its output
folder the same files as a single run's evaluation, with each member's figures beside the
ensemble's in metrics.json and report.md. The members are evaluated as they were (target recalls,
bootstrap, subgroups, test-time views), which must agree; a key given on the command line replaces
theirs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from skinclf.config.schema import EnsembleConfig, EvaluationSettings, recorded_unless_given
from skinclf.core.errors import SkinclfError, examples
from skinclf.entry import command, given_keys
from skinclf.evaluation import Evaluation, evaluation_loggers
from skinclf.metrics.combining import combined_test, combined_validation
from skinclf.reports import write_reports
from skinclf.reports.summary import summary_line
from skinclf.runs import Run, find_runs
from skinclf.trained import EnsembleModel

log = logging.getLogger(__name__)


def training_runs(folders: list[str]) -> list[Run]:
    """The training runs below the folders (evaluations and earlier ensembles trained no model of their own)."""
    members = []
    for run in find_runs(folders):
        if run.checkpoint is not None:
            members.append(run)
        else:
            log.info("leaving out %s: not a training run (no checkpoints/)", run.folder)
    if len(members) < 2:
        raise SkinclfError(
            f"found {len(members)} training run(s) below {examples(folders)}: an ensemble needs two or more"
        )
    return members


def members_evaluation(members: list[Run], composed: EvaluationSettings) -> EvaluationSettings:
    """How the members were evaluated (they must agree), but for the keys the command line gives."""
    recorded = [json.dumps(m.recorded_evaluation, sort_keys=True) for m in members]
    if len(set(recorded)) > 1:
        differ = [str(m.folder) for m in members if json.dumps(m.recorded_evaluation, sort_keys=True) != recorded[0]]
        raise SkinclfError(
            f"the runs were evaluated with other settings than {members[0].folder}, e.g. {examples(differ, 2)}: "
            "make an ensemble of runs evaluated alike (their .hydra/config.yaml, evaluation)"
        )
    evaluation = recorded_unless_given(members[0].recorded_evaluation, composed, given_keys("evaluation"))
    views = {m.tta for m in members}
    if views != {evaluation.tta}:
        raise SkinclfError(
            f"the members were evaluated with evaluation.tta={examples(sorted(views))}: an ensemble combines the "
            "predictions they made, so it takes their views"
        )
    return evaluation


@command("ensemble")
def main(settings: EnsembleConfig, run_folder: Path) -> None:
    members = training_runs(settings.runs)
    evaluation = members_evaluation(members, settings.evaluation)
    validation, chosen_on = combined_validation(members, settings.combine)
    model = EnsembleModel(members, settings.combine, validation, chosen_on, members[0].recorded_evaluation, run_folder)
    params = {"members": [str(m.folder) for m in members], "combine": settings.combine}
    loggers = evaluation_loggers(settings.logger, run_folder, params)
    # the errors are shown as the first member saw its test images, with the maps of the members that see alike
    test = model.split("test")
    metrics = Evaluation(model, evaluation, settings.explain, None, loggers).run(
        test, run_folder, test=combined_test(members, settings.combine)
    )
    write_reports([*(m.folder for m in members), run_folder], run_folder)  # the members beside the ensemble
    spread = metrics["run"]["members_test_auroc"]
    print(f"members: test AUROC {spread['mean']:.3f} ± {spread['sd']:.3f} (mean ± sd of {len(members)})")
    print(f"ensemble ({settings.combine}): {summary_line(metrics)}")
    print(f"thresholds chosen on the {chosen_on}")
    print(f"run folder: {run_folder}  (report.html, metrics.json, report.md, pr_curve.png)")


if __name__ == "__main__":
    main()
