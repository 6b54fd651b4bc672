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

import numpy as np

from skinclf.artifact import ENSEMBLE, Run, find_runs, load_model, union
from skinclf.commands.entry import command, given_keys
from skinclf.errors import SkinclfError, examples
from skinclf.explain import evaluation_explainer
from skinclf.metrics.combining import combined_test, combined_validation, member_figures
from skinclf.metrics.decisions import choose_policy, referral_of
from skinclf.metrics.figures import summary_line
from skinclf.rendering import write_reports
from skinclf.results import ImagesAsSeen, RunRecord, evaluation_loggers, write_results
from skinclf.schema import EnsembleConfig, EvaluationSettings, recorded_unless_given

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
    models = [load_model(member.checkpoint) for member in members]
    tested = [m.metrics["test/auroc"] for m in members]
    identity = {
        "kind": ENSEMBLE,
        "name": f"ensemble of {len(members)}",
        "combine": settings.combine,
        "members": [member_figures(m) for m in members],
        "members_test_auroc": {"mean": float(np.mean(tested)), "sd": float(np.std(tested, ddof=1))},
    }
    referral = referral_of(validation, evaluation.referral_rate, chosen_on)
    policy = choose_policy(validation, chosen_on, evaluation, None, referral)  # its score is of malignancy alone
    record = RunRecord(identity, "test split", evaluation, policy)
    params = {"members": [str(m.folder) for m in members], "combine": settings.combine}
    loggers = evaluation_loggers(settings.logger, run_folder, params)
    # the errors are shown as the first member saw its test images, with the maps of the members that see alike
    first = models[0]
    alike = [c for model in models if model.preprocessing == first.preprocessing for c in model.classifiers]
    explainer = evaluation_explainer(alike, settings.explain, evaluation.tta)
    masks = settings.explain.mask_column if settings.explain.enabled else None
    seen = ImagesAsSeen(first.split("test").root, first.preprocessing, explainer, settings.explain.enabled, masks)
    predictions = {"val": validation, "test": combined_test(members, settings.combine)}
    trained_on = union([model.training_images() for model in models])
    metrics = write_results(run_folder, record, predictions, seen, loggers, training=trained_on.table)
    write_reports([*(m.folder for m in members), run_folder], run_folder)  # the members beside the ensemble
    spread = identity["members_test_auroc"]
    print(f"members: test AUROC {spread['mean']:.3f} ± {spread['sd']:.3f} (mean ± sd of {len(members)})")
    print(f"ensemble ({settings.combine}): {summary_line(metrics)}")
    print(f"thresholds chosen on the {chosen_on}")
    print(f"run folder: {run_folder}  (report.html, metrics.json, report.md, pr_curve.png)")
