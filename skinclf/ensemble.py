"""Ensemble runs: ``python -m skinclf.ensemble <run or multirun directories...> [--output DIR] [--combine mean|rank]``.

Combines every run below the directories (the folds of a cross-validation, seeds, architectures;
see :mod:`skinclf.evaluation.ensemble`), chooses each operating point on the combined validation
predictions (the pooled out-of-fold ones for folds) and writes into the output folder the same
files as a single run's evaluation, with each member's figures beside the ensemble's in
metrics.json and report.md. The members are evaluated as they were configured (target recalls,
bootstrap, subgroups, TTA from the first member's config).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import OmegaConf

from skinclf.data.transforms import eval_pipeline
from skinclf.errors import SkinclfError, examples, exit_on_user_error
from skinclf.evaluation.ensemble import (
    COMBINE_RULES,
    KIND,
    Member,
    combined_test,
    combined_validation,
    member_figures,
    read_member,
)
from skinclf.evaluation.metrics import summary_line
from skinclf.quiet import quiet_third_parties
from skinclf.report import find_runs, write_report
from skinclf.results import error_images, write_results
from skinclf.schema import EvaluationSettings, validate
from skinclf.training.checkpoints import data_location, read_checkpoint
from skinclf.training.tracking import log_evaluation

log = logging.getLogger(__name__)


def member_evaluation(member: Member) -> EvaluationSettings:
    """The evaluation settings the member was trained with (its .hydra/config.yaml)."""
    config = member.directory / ".hydra" / "config.yaml"
    if not config.is_file():
        raise SkinclfError(f"{member.directory} has no .hydra/config.yaml: is it a skinclf.train run folder?")
    recorded = OmegaConf.load(config)
    return validate(OmegaConf.merge(OmegaConf.structured(EvaluationSettings), recorded.evaluation))


def logger_configs(names: Sequence[str], settings: Sequence[str]) -> dict[str, Any]:
    """The logger group's configs, composed by Hydra as train composes them (logger=[names], key=value on top)."""
    if not names:
        return {}
    overrides = [f"+logger=[{','.join(names)}]", f"+name={KIND}", *settings]
    try:
        with initialize_config_module(config_module="skinclf.conf", version_base="1.3"):
            return OmegaConf.to_container(compose(overrides=overrides).logger, resolve=True)
    except HydraException as error:
        raise SkinclfError(
            f"--logger/--set: {str(error).splitlines()[0]} (--logger takes a name of conf/logger/, --set "
            "logger.<name>.<key>=<value> a key of a logger chosen with --logger)"
        ) from error


def ensemble(directories: Sequence[Path], output: Path, rule: str, loggers: dict[str, Any]) -> dict:
    """Combine the runs below the directories; write the ensemble's evaluation into output; its metrics."""
    members = []
    for directory in find_runs(directories):
        if (directory / "checkpoints").is_dir():
            members.append(read_member(directory))
        else:  # an evaluation or an earlier ensemble: not a model of its own
            log.info("leaving out %s: not a training run (no checkpoints/)", directory)
    if len(members) < 2:
        named = examples([str(d) for d in directories])
        raise SkinclfError(f"found {len(members)} training run(s) below {named}: an ensemble needs two or more")
    validation, chosen_on = combined_validation(members, rule)
    test = combined_test(members, rule)
    first = members[0]
    checkpoint = read_checkpoint(first.checkpoint)  # where its images are and how it saw them; no model needed
    root, sizes = data_location(checkpoint)[0], checkpoint["hyper_parameters"]
    tested = [m.metrics["test/auroc"] for m in members]
    info = {
        "kind": KIND,
        "name": f"ensemble of {len(members)}",
        "combine": rule,
        "members": [member_figures(m) for m in members],
        "thresholds_chosen_on": chosen_on,
        "members_test_auroc": {"mean": float(np.mean(tested)), "sd": float(np.std(tested, ddof=1))},
        "evaluated_on": "test split",
    }
    output.mkdir(parents=True, exist_ok=True)
    errors = error_images(root, eval_pipeline(sizes["resize_size"], sizes["crop_size"]), test)
    predictions = {"val": validation, "test": test}
    metrics = write_results(output, predictions, member_evaluation(first), info, errors)
    params = {"members": [str(m.directory) for m in members], "combine": rule}
    log_evaluation(loggers, params, metrics, predictions, errors, output)
    return metrics


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skinclf.ensemble", description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path, help="run or multirun directories")
    default = Path("reports") / f"ensemble_{datetime.now():%Y-%m-%d_%H-%M-%S}"
    parser.add_argument("--output", type=Path, default=default, help=f"where to write (default {default})")
    parser.add_argument("--combine", choices=COMBINE_RULES, default="mean", help="mean of probabilities or of ranks")
    parser.add_argument("--logger", action="append", default=[], help="log to a tracker too, as train's logger=")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. logger.mlflow.tracking_uri=<uri>"
    )
    args = parser.parse_args(argv)
    quiet_third_parties()
    metrics = ensemble(args.directories, args.output, args.combine, logger_configs(args.logger, args.set))
    members = [Path(m["directory"]) for m in metrics["run"]["members"]]
    write_report([*members, args.output], args.output)
    spread = metrics["run"]["members_test_auroc"]
    print(f"members: test AUROC {spread['mean']:.3f} ± {spread['sd']:.3f} (mean ± sd of {len(members)})")
    print(f"ensemble ({args.combine}): {summary_line(metrics)}")
    print(f"thresholds chosen on the {metrics['run']['thresholds_chosen_on']}")
    print(f"output directory: {args.output}  (metrics.json, report.md, pr_curve.png)")


if __name__ == "__main__":
    main(sys.argv[1:])
