"""The audit by subgroup: how the model and its operating points fare for each sex, body site, age band, source.

Every subgroup is evaluated as a test set of its own against the thresholds chosen on the whole
validation set (what a deployed model applies to everyone): its AUROC, and the recall and
specificity at each operating point, with bootstrap intervals that resample validation (the
threshold) and the subgroup alike. A subgroup whose recall falls below the target even at the top
of its interval is flagged. Numeric columns (age) are banded; empty cells form a subgroup of their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from skinclf.config.schema import BootstrapSettings
from skinclf.core.errors import SkinclfError, examples
from skinclf.metrics.decisions import ThresholdRule
from skinclf.metrics.figures import evaluate

#: The label of the subgroup of empty cells.
MISSING = "(missing)"
#: A numeric column of whole numbers no higher than this is a scale of types (a Fitzpatrick type 1-6, a grade): each
#: value a subgroup, not a quantity to band as the age is.
HIGHEST_TYPE = 10
#: A subgroup with fewer malignant (or benign) images than this gets a recall (or specificity) interval too wide
#: to judge it by: the audit says so.
MIN_IMAGES_TO_JUDGE = 10


def bands(values: pd.Series, edges: Sequence[float]) -> pd.Categorical:
    """Numbers as ordered bands between the edges: "<30", "30-45", ..., ">=75", then MISSING for empty cells."""
    labels = [
        f"<{edges[0]:g}",
        *(f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)),
        f">={edges[-1]:g}",
    ]
    banded = pd.cut(values, [-np.inf, *edges, np.inf], right=False, labels=labels).astype(object)
    return pd.Categorical(banded.where(values.notna(), MISSING), categories=[*labels, MISSING], ordered=True)


def subgroup_values(column: pd.Series, name: str, edges: Sequence[float]) -> pd.Categorical:
    """The subgroup of each row (ordered): its value (numbers in their order where a numeric column holds few
    values), or its band for a numeric column such as the age; MISSING last."""
    text = column.astype("string").str.strip().fillna("")
    given = text[text != ""]
    numbers = pd.to_numeric(given, errors="coerce")
    numeric = len(given) and numbers.notna().mean() >= 0.9
    if numeric and numbers.notna().all() and (numbers == numbers.round()).all() and numbers.max() <= HIGHEST_TYPE:
        values = [str(v) for v in sorted(set(given), key=float)]
        return pd.Categorical(text.where(text != "", MISSING), categories=[*values, MISSING], ordered=True)
    if numeric:  # a numeric column, such as the age
        if numbers.isna().any():
            odd = examples(sorted(set(given[numbers.isna()])))
            raise SkinclfError(
                f"the column {name} holds numbers but also {odd}: correct those cells, or leave them empty"
            )
        return bands(pd.to_numeric(text.where(text != ""), errors="coerce"), edges)
    values = sorted(set(given))
    return pd.Categorical(text.where(text != "", MISSING), categories=[*values, MISSING], ordered=True)


def audit(
    validation: pd.DataFrame,
    test: pd.DataFrame,
    columns: Sequence[str],
    target_recalls: Sequence[float],
    bootstrap: BootstrapSettings,
    age_edges: Sequence[float],
    rule: ThresholdRule,
) -> dict[str, list[dict]]:
    """{column: [one entry per subgroup]} for metrics.json; see the module's docstring."""
    missing = [c for c in columns if c not in test.columns]
    if missing:
        present = [c for c in test.columns if c not in ("path", "label", "probability")]
        raise SkinclfError(
            f"evaluation.subgroups names {examples(missing)}, which the test images do not have: their columns "
            f"are {examples(present, 20) or 'none besides path and label'}"
        )
    val_scores, val_labels = validation["probability"].to_numpy(), validation["label"].to_numpy()
    results = {}
    for column in columns:
        groups = subgroup_values(test[column], column, age_edges)
        entries = []
        for value, rows in test.groupby(groups, sort=True, observed=True):
            test_rows = (rows["probability"], rows["label"])
            metrics = evaluate(val_scores, val_labels, *test_rows, target_recalls, bootstrap, rule)
            entries.append(subgroup_entry(str(value), metrics))
        results[column] = entries
    return results


def subgroup_entry(value: str, metrics: dict) -> dict:
    """What metrics.json keeps of a subgroup: counts, AUROC, recall and specificity at each operating point."""
    points = []
    for point in metrics["operating_points"]:
        recall_ci = point.get("test/recall_ci")
        below = recall_ci is not None and recall_ci[1] is not None and recall_ci[1] < point["target_recall"]
        points.append(
            {
                "target_recall": point["target_recall"],
                "recall": point["test/recall"],
                "recall_ci": recall_ci,
                "specificity": point["test/specificity"],
                "specificity_ci": point.get("test/specificity_ci"),
                "below_target": below,
            }
        )
    malignant, images = metrics["test/malignant"], metrics["test/images"]
    return {
        "value": value,
        "images": images,
        "malignant": malignant,
        "too_few_to_judge": min(malignant, images - malignant) < MIN_IMAGES_TO_JUDGE,
        "auroc": metrics["test/auroc"],
        "auroc_ci": metrics.get("test/auroc_ci"),
        "operating_points": points,
    }
