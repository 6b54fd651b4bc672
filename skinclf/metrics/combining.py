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

from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from skinclf.core.errors import SkinclfError, examples
from skinclf.metrics.diagnosis import PROBABILITY_PREFIX


class Member(Protocol):
    """A finished run as an ensemble combines it (skinclf.runs.Run): its folder, metrics and predictions."""

    folder: Path
    metrics: dict
    val: pd.DataFrame
    test: pd.DataFrame


def percentiles(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The share of the reference scores below each score, ties counted half (the mid-rank percentile)."""
    ordered = np.sort(reference)
    below = np.searchsorted(ordered, scores, side="left")
    at_most = np.searchsorted(ordered, scores, side="right")
    return (below + at_most) / (2 * len(ordered))


def member_scores(member: Member, scores: np.ndarray, rule: str, column: str = "probability") -> np.ndarray:
    """A member's scores of a column as the ensemble averages them: as they are, or (rank) their percentiles among
    its own validation scores."""
    return percentiles(member.val[column].to_numpy(), scores) if rule == "rank" else scores


def combine(members: list[Member], scores: list[np.ndarray], rule: str, column: str = "probability") -> np.ndarray:
    """The ensemble's score of each image from each member's scores of it (in the same order): their mean, or with
    rule=rank the mean of their percentiles among each member's validation scores."""
    return np.mean([member_scores(m, s, rule, column) for m, s in zip(members, scores, strict=True)], axis=0)


def combined_columns(members: list[Member], rule: str) -> dict[str, str]:
    """The members' scores an ensemble combines, and how: the probability by its rule, and where every member has
    one, the novelty score (ood_score) by rank, since each member's features have a scale of their own."""
    novel = all("ood_score" in m.val.columns for m in members)
    return {"probability": rule, **({"ood_score": "rank"} if novel else {})}


def combined_test(members: list[Member], rule: str) -> pd.DataFrame:
    """The test predictions of the ensemble: the members' scores averaged image by image."""
    first = members[0].test.set_index("path")
    for member in members[1:]:
        paths = set(member.test["path"])
        if paths != set(first.index):
            differ = sorted(paths.symmetric_difference(first.index))
            raise SkinclfError(
                f"{member.folder} was tested on other images than {members[0].folder} "
                f"(e.g. {examples(differ, 3)}): an ensemble needs members tested on the same split"
            )
    table = without_member_scores(first.reset_index())
    for column, how in combined_columns(members, rule).items():
        scores = [m.test.set_index("path")[column].reindex(first.index).to_numpy() for m in members]
        table[column] = combine(members, scores, how, column)
    return table


def without_member_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """A member's predictions without its own scores: the ensemble's take their place (its score is of malignancy,
    with no probability of each diagnosis)."""
    own = [c for c in predictions.columns if c.startswith(PROBABILITY_PREFIX) or c == "ood_score"]
    return predictions.drop(columns=own)


def combined_validation(members: list[Member], rule: str) -> tuple[pd.DataFrame, str]:
    """The validation predictions of the ensemble, and what they are (out-of-fold, or averaged)."""
    columns = combined_columns(members, rule)
    stacked = pd.concat(
        [
            m.val.assign(**{c: member_scores(m, m.val[c].to_numpy(), how, c) for c, how in columns.items()}, member=i)
            for i, m in enumerate(members)
        ],
        ignore_index=True,
    )
    predicted_by = stacked.groupby("path", sort=False)["member"].nunique()
    first = stacked.drop_duplicates("path").set_index("path")
    for column in columns:
        first[column] = stacked.groupby("path", sort=False)[column].mean()
    table = first.drop(columns="member").reset_index()
    table = table.drop(columns=[c for c in table.columns if c.startswith(PROBABILITY_PREFIX)])
    folds = {m.metrics.get("run", {}).get("cv", {}).get("folds") for m in members}
    if predicted_by.max() == 1 and len(members) > 1:
        what = f"pooled out-of-fold predictions of {len(members)} runs ({len(table)} images, each by one run)"
        if folds != {None}:
            what = f"pooled out-of-fold predictions of {len(members)} fold runs of cv.folds={sorted(folds)[0]}"
    else:
        what = f"validation predictions averaged over the {int(predicted_by.max())} runs that made each"
    return table, what
