"""How a model transferred to another dataset (metrics.json's ``transfer``).

An external evaluation's ``test/...`` figures are the external set's. Beside them ``transfer``
keeps the internal ones (the test split of the model's own run, as its metrics.json recorded them)
and, for each operating point, the recall and specificity that the threshold chosen on internal
validation gives on each: a threshold set for a recall of 0.95 at home may give much less
elsewhere. An operating point is flagged when the external recall's interval lies wholly below its
target.
"""

from __future__ import annotations

from typing import Any

from skinclf.metrics.calibration import expected_calibration_error

#: The figures of a test set compared between the internal and the external evaluation.
COMPARED = ("test/auroc", "test/auprc", "test/ece")


def _rates(point: dict) -> dict[str, Any]:
    return {key: point.get(f"test/{key}") for key in ("recall", "recall_ci", "specificity", "specificity_ci")}


def internal_figures(internal: Any) -> dict[str, Any]:
    """The internal test figures a run folder recorded (its ECE computed from its test predictions if it did not)."""
    metrics = internal.metrics
    figures = {key: metrics.get(key) for key in (*COMPARED, "test/auroc_ci", "test/auprc_ci", "test/images")}
    figures["test/malignant"] = metrics.get("test/malignant")
    if figures["test/ece"] is None and internal.test["label"].nunique() == 2:
        figures["test/ece"] = expected_calibration_error(internal.test["probability"], internal.test["label"])
    figures["evaluated_on"] = f"{metrics['run'].get('evaluated_on', 'test split')} of {internal.folder}"
    return figures


def transfer(external: dict, internal: Any | None) -> dict:
    """``transfer`` of an external evaluation's metrics.json; internal: the model's own run folder (a
    skinclf.runs.Run), or None where it is not there to compare with."""
    internal_points = {p["target_recall"]: p for p in internal.metrics["operating_points"]} if internal else {}
    points = []
    for point in external["operating_points"]:
        target, recall_ci = point["target_recall"], point.get("test/recall_ci")
        below = recall_ci is not None and recall_ci[1] is not None and recall_ci[1] < target
        entry = {"target_recall": target, "threshold": point["threshold"], "external": _rates(point)}
        if target in internal_points:
            entry["internal"] = _rates(internal_points[target])
        entry["recall_below_target"] = below
        points.append(entry)
    record: dict[str, Any] = {"operating_points": points}
    if internal is None:
        record["internal"] = None
        record["note"] = "the model's own run folder is not beside the checkpoint: no internal figures to compare"
        return record
    record["internal"] = internal_figures(internal)
    record["change"] = {
        key: external[key] - record["internal"][key]
        for key in COMPARED
        if external.get(key) is not None and record["internal"].get(key) is not None
    }
    return record
