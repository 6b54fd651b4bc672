"""The metrics of a run: ranking quality on val and test, and operating points chosen on val."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skinclf.evaluation.curves import auroc, average_precision, best_precision_at_recall, rank, rates_at_threshold


def recall_key(target_recall: float) -> str:
    """'0.999' for 0.999: the suffix of metric names that belong to a target recall."""
    return f"{target_recall:g}"


def _scalar(values: np.ndarray) -> float | None:
    value = float(values[0])
    return None if np.isnan(value) else value


def evaluate(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    target_recalls: Sequence[float],
) -> dict:
    """The metrics.json of a run.

    - ``val/*``, ``test/*``: AUROC, AUPRC (average precision), counts; test accuracy at 0.5.
    - ``test/precision_at_recall_<r>``: the highest test precision among thresholds whose test
      recall is >= r. It looks at the test labels to pick the threshold: an upper bound, not a
      figure a deployed model would reach.
    - ``operating_points``: for each target recall r, the threshold chosen on validation (highest
      validation precision with validation recall >= r) and what it gives on test.
    """
    metrics: dict = {}
    for split, scores, labels in (("val", val_scores, val_labels), ("test", test_scores, test_labels)):
        ranked = rank(scores, labels)
        metrics[f"{split}/auroc"] = _scalar(auroc(ranked))
        metrics[f"{split}/auprc"] = _scalar(average_precision(ranked))
        metrics[f"{split}/images"] = len(labels)
        metrics[f"{split}/malignant"] = int(np.sum(labels))
    metrics["test/accuracy"] = _scalar(rates_at_threshold(test_scores, test_labels, 0.5)["accuracy"])
    val_ranked, test_ranked = rank(val_scores, val_labels), rank(test_scores, test_labels)
    points = []
    for target in target_recalls:
        metrics[f"test/precision_at_recall_{recall_key(target)}"] = _scalar(
            best_precision_at_recall(test_ranked, target)[0]
        )
        _, threshold = best_precision_at_recall(val_ranked, target)
        val_rates = rates_at_threshold(val_scores, val_labels, threshold)
        test_rates = rates_at_threshold(test_scores, test_labels, threshold)
        points.append(
            {
                "target_recall": target,
                "threshold": _scalar(threshold),
                "val/precision": _scalar(val_rates["precision"]),
                "val/recall": _scalar(val_rates["recall"]),
                **{f"test/{name}": _scalar(test_rates[name]) for name in ("precision", "recall", "specificity", "npv")},
            }
        )
    metrics["operating_points"] = points
    return metrics


def summary_line(metrics: dict) -> str:
    """One line of the headline test figures."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    parts = [
        f"test AUROC {fmt(metrics['test/auroc'])}",
        f"AUPRC {fmt(metrics['test/auprc'])}",
        f"acc@0.5 {fmt(metrics['test/accuracy'])}",
    ]
    for point in metrics["operating_points"]:
        r = recall_key(point["target_recall"])
        parts.append(f"@val-recall {r}: P {fmt(point['test/precision'])} R {fmt(point['test/recall'])}")
    return " | ".join(parts)
