"""Ensembles of runs: their predictions combined, on validation (which chooses thresholds) and on test.

Every member predicted the same test split. On validation, each image takes the mean over the
members that predicted it: for the folds of a cross-validation these are the pooled out-of-fold
predictions (each image predicted by the one model that did not train on it); for runs that share
a validation split (seeds, architectures), the mean of all of them.

``mean`` averages probabilities. ``rank`` first maps each member's scores to their percentile
among that member's own validation scores, then averages: members whose probabilities live on
different scales count alike, and a threshold chosen on validation percentiles applies to test ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from skinclf.errors import SkinclfError, examples

COMBINE_RULES = ("mean", "rank")


@dataclass(frozen=True)
class Member:
    """A finished run: its folder, its metrics.json, and its validation and test predictions."""

    directory: Path
    metrics: dict
    val: pd.DataFrame
    test: pd.DataFrame

    @property
    def checkpoint(self) -> Path:
        """The checkpoint the run evaluated."""
        return self.directory / self.metrics["run"]["checkpoint"]

    @property
    def tta(self) -> str:
        """The test-time views its predictions were made with (evaluation.tta)."""
        return self.metrics["run"].get("tta", "none")


def percentiles(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The share of the reference scores below each score, ties counted half (the mid-rank percentile)."""
    ordered = np.sort(reference)
    below = np.searchsorted(ordered, scores, side="left")
    at_most = np.searchsorted(ordered, scores, side="right")
    return (below + at_most) / (2 * len(ordered))


def member_scores(member: Member, probabilities: np.ndarray, rule: str) -> np.ndarray:
    """A member's probabilities as the ensemble averages them: as they are, or (rank) their percentiles
    among its own validation probabilities."""
    return percentiles(member.val["probability"].to_numpy(), probabilities) if rule == "rank" else probabilities


#: metrics.json of an ensemble says so in run.kind.
KIND = "ensemble"


def read_member(directory: Path) -> Member:
    """A finished training run, with the predictions an ensemble needs."""
    files = {name: directory / f"predictions_{name}.csv" for name in ("val", "test")}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise SkinclfError(f"{directory} is not a finished run: {examples(missing)} missing")
    tables = {name: pd.read_csv(path, dtype={"path": str}) for name, path in files.items()}
    metrics = json.loads((directory / "metrics.json").read_text())
    return Member(directory, metrics, tables["val"], tables["test"])


@dataclass(frozen=True)
class Ensemble:
    """An ensemble as skinclf.ensemble wrote it: its members, how it combines them, and its validation
    predictions (on which its thresholds are chosen)."""

    directory: Path
    members: list[Member]
    rule: str
    validation: pd.DataFrame
    chosen_on: str


def is_ensemble(path: Path) -> bool:
    """True for a folder written by skinclf.ensemble."""
    metrics = path / "metrics.json"
    return path.is_dir() and metrics.is_file() and json.loads(metrics.read_text()).get("run", {}).get("kind") == KIND


def read_ensemble(directory: Path) -> Ensemble:
    """The ensemble in a folder written by skinclf.ensemble; its members' runs must still be where they were."""
    if not is_ensemble(directory):
        raise SkinclfError(f"{directory} is not a folder written by skinclf.ensemble (its metrics.json says so)")
    run = json.loads((directory / "metrics.json").read_text())["run"]
    folders = [Path(m["directory"]) for m in run["members"]]
    gone = [str(f) for f in folders if not (f / "metrics.json").is_file()]
    if gone:
        raise SkinclfError(
            f"the ensemble {directory} combines runs that are no longer there: {examples(gone)}; "
            "run skinclf.ensemble again on the runs where they are now"
        )
    validation = pd.read_csv(directory / "predictions_val.csv", dtype={"path": str})
    return Ensemble(
        directory, [read_member(f) for f in folders], run["combine"], validation, run["thresholds_chosen_on"]
    )


def combine(members: list[Member], probabilities: list[np.ndarray], rule: str) -> np.ndarray:
    """The ensemble's score of each image from each member's probabilities of it (in the same order):
    their mean, or with rule=rank the mean of their percentiles among each member's validation probabilities."""
    return np.mean([member_scores(m, p, rule) for m, p in zip(members, probabilities, strict=True)], axis=0)


def combined_test(members: list[Member], rule: str) -> pd.DataFrame:
    """The test predictions of the ensemble: the members' scores averaged image by image."""
    first = members[0].test.set_index("path")
    for member in members[1:]:
        paths = set(member.test["path"])
        if paths != set(first.index):
            differ = sorted(paths.symmetric_difference(first.index))
            raise SkinclfError(
                f"{member.directory} was tested on other images than {members[0].directory} "
                f"(e.g. {examples(differ, 3)}): an ensemble needs members tested on the same split"
            )
    probabilities = [m.test.set_index("path")["probability"].reindex(first.index).to_numpy() for m in members]
    table = first.reset_index()
    table["probability"] = combine(members, probabilities, rule)
    return table


def combined_validation(members: list[Member], rule: str) -> tuple[pd.DataFrame, str]:
    """The validation predictions of the ensemble, and what they are (out-of-fold, or averaged)."""
    stacked = pd.concat(
        [
            m.val.assign(probability=member_scores(m, m.val["probability"].to_numpy(), rule), member=i)
            for i, m in enumerate(members)
        ],
        ignore_index=True,
    )
    predicted_by = stacked.groupby("path", sort=False)["member"].nunique()
    first = stacked.drop_duplicates("path").set_index("path")
    first["probability"] = stacked.groupby("path", sort=False)["probability"].mean()
    table = first.drop(columns="member").reset_index()
    folds = {m.metrics.get("run", {}).get("cv", {}).get("folds") for m in members}
    if predicted_by.max() == 1 and len(members) > 1:
        what = f"pooled out-of-fold predictions of {len(members)} runs ({len(table)} images, each by one run)"
        if folds != {None}:
            what = f"pooled out-of-fold predictions of {len(members)} fold runs of cv.folds={sorted(folds)[0]}"
    else:
        what = f"validation predictions averaged over the {int(predicted_by.max())} runs that made each"
    return table, what


def member_figures(member: Member) -> dict:
    """What the ensemble's metrics.json records of a member."""
    run = member.metrics.get("run", {})
    return {
        "directory": str(member.directory.resolve()),
        **{key: run[key] for key in ("name", "arch", "seed", "cv") if key in run},
        **{key: member.metrics.get(key) for key in ("val/auroc", "test/auroc", "test/auprc")},
    }
