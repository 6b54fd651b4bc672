"""The metrics of a run: ranking quality on val and test, and operating points chosen on val.

Every figure comes from :func:`resampled_figures`, vectorised over resamples, so that the point estimate
and its bootstrap interval are computed by the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skinclf.config.schema import BootstrapSettings
from skinclf.metrics.bootstrap import bootstrap_intervals
from skinclf.metrics.curves import (
    auroc,
    average_precision,
    best_precision_at_recall,
    rank,
    rates_at_threshold,
    reference_precision_at_recall,
)
from skinclf.metrics.decisions import HIGHEST_PRECISION, ThresholdRule, recall_key

#: What each operating point reports on test, at the threshold chosen on validation.
TEST_RATES = ("precision", "recall", "specificity", "npv")

#: A threshold for target recall r may leave (1 - r) x (validation malignant) images below it. When
#: that is fewer than this, the lowest-scored one or two malignant validation images alone set it.
MIN_MALIGNANT_ALLOWED_BELOW = 2


def resampled_figures(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    target_recalls: Sequence[float],
    rule: ThresholdRule,
) -> dict[str, np.ndarray]:
    """Every figure of metrics.json, one value per row of the (resampled) scores; each operating point's threshold
    chosen on val by the decision policy's rule (skinclf.metrics.decisions)."""
    val, test = rank(val_scores, val_labels), rank(test_scores, test_labels)
    values = {
        "val/auroc": auroc(val),
        "val/auprc": average_precision(val),
        "test/auroc": auroc(test),
        "test/auprc": average_precision(test),
        "test/accuracy": rates_at_threshold(test_scores, test_labels, 0.5)["accuracy"],
    }
    for target in target_recalls:
        key = recall_key(target)
        values[f"test/precision_at_recall_{key}"] = best_precision_at_recall(test, target)[0]
        values[f"test/reference_precision_at_recall_{key}"] = reference_precision_at_recall(test, target)
        threshold = rule.thresholds(val, target)
        val_rates = rates_at_threshold(val_scores, val_labels, threshold)
        test_rates = rates_at_threshold(test_scores, test_labels, threshold)
        values[f"op/{key}/threshold"] = threshold
        values[f"op/{key}/val/precision"] = val_rates["precision"]
        values[f"op/{key}/val/recall"] = val_rates["recall"]
        for name in TEST_RATES:
            values[f"op/{key}/test/{name}"] = test_rates[name]
    return values


def threshold_support(scores: np.ndarray, labels: np.ndarray, target: float, threshold: float) -> dict:
    """How many validation malignant images a threshold rests on.

    ``val/malignant_below_threshold``: the malignant validation images scored below it (missed);
    ``set_by_few_images``: true when the target allows fewer than MIN_MALIGNANT_ALLOWED_BELOW of
    them, so that the one or two lowest-scored malignant images alone decide the threshold.
    """
    malignant = scores[labels == 1]
    allowed_below = int(np.floor((1 - target) * len(malignant) + 1e-9))
    return {
        "val/malignant_below_threshold": int((malignant < threshold).sum()),
        "set_by_few_images": allowed_below < MIN_MALIGNANT_ALLOWED_BELOW,
    }


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def evaluate(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    target_recalls: Sequence[float],
    bootstrap: BootstrapSettings | None = None,
    rule: ThresholdRule = HIGHEST_PRECISION,
) -> dict:
    """The metrics.json of a run ("val" chooses thresholds, "test" is what is evaluated).

    - ``val/*``, ``test/*``: AUROC, AUPRC (average precision), image counts; test accuracy at 0.5.
    - ``operating_points``: for each target recall r, the threshold chosen on validation by the decision policy's
      rule (by default the highest validation precision with validation recall >= r) and the test precision,
      recall, specificity and NPV it gives: what a deployed model would do.
    - ``test/precision_at_recall_<r>`` (oracle): the highest test precision among thresholds whose
      test recall is >= r; it picks the threshold with the test labels, an optimistic bound.
    - ``test/reference_precision_at_recall_<r>``: the reference's reading, precision at the lowest
      threshold whose test recall is <= r, to set beside its published figures.
    - ``<figure>_ci``: stratified bootstrap percentile interval; val and test are resampled
      independently and the val-chosen thresholds are chosen anew in every resample.
    """
    val_scores, test_scores = np.asarray(val_scores, dtype=float), np.asarray(test_scores, dtype=float)
    val_labels, test_labels = np.asarray(val_labels, dtype=int), np.asarray(test_labels, dtype=int)
    point = {
        k: v[0]
        for k, v in resampled_figures(val_scores, val_labels, test_scores, test_labels, target_recalls, rule).items()
    }
    intervals: dict[str, tuple[float, float]] = {}
    if bootstrap is not None and bootstrap.resamples > 0:
        intervals = bootstrap_intervals(
            lambda vs, vl, ts, tl: resampled_figures(vs, vl, ts, tl, target_recalls, rule),
            (val_scores, val_labels),
            (test_scores, test_labels),
            bootstrap,
        )

    def with_interval(name: str, key: str) -> dict:
        entry = {key: _number(point[name])}
        if name in intervals:
            entry[f"{key}_ci"] = [_number(bound) for bound in intervals[name]]
        return entry

    metrics: dict = {}
    for split, labels in (("val", val_labels), ("test", test_labels)):
        metrics.update(with_interval(f"{split}/auroc", f"{split}/auroc"))
        metrics.update(with_interval(f"{split}/auprc", f"{split}/auprc"))
        metrics[f"{split}/images"] = len(labels)
        metrics[f"{split}/malignant"] = int(labels.sum())
    metrics.update(with_interval("test/accuracy", "test/accuracy"))
    points = []
    for target in target_recalls:
        key = recall_key(target)
        for name in (f"test/precision_at_recall_{key}", f"test/reference_precision_at_recall_{key}"):
            metrics.update(with_interval(name, name))
        point_entry: dict = {"target_recall": target}
        for name in ("threshold", "val/precision", "val/recall", *(f"test/{r}" for r in TEST_RATES)):
            point_entry.update(with_interval(f"op/{key}/{name}", name))
        point_entry.update(threshold_support(val_scores, val_labels, target, point[f"op/{key}/threshold"]))
        points.append(point_entry)
    metrics["operating_points"] = points
    _leave_out_undefined(metrics, test_labels)
    if intervals:
        metrics["bootstrap"] = {
            "resamples": bootstrap.resamples,
            "confidence": bootstrap.confidence,
            "seed": bootstrap.seed,
            "method": "stratified percentile; val and test resampled independently",
        }
    return metrics


def _leave_out_undefined(metrics: dict, test_labels: np.ndarray) -> None:
    """On a test set of one class, set the figures that need both classes to None and say why in ``undefined``.

    A benign-only set (a screening series) measures the specificity at each operating point, a
    malignant-only one the recall, and both the accuracy; precision, NPV, AUROC, AUPRC and the
    precision at a recall need both classes.
    """
    malignant = int(test_labels.sum())
    if 0 < malignant < len(test_labels):
        return
    absent, kept = ("malignant", "test/specificity") if malignant == 0 else ("benign", "test/recall")
    blanked = []
    for key in [k for k in metrics if k.startswith("test/") and k not in ("test/images", "test/malignant")]:
        if not key.startswith("test/accuracy"):
            metrics[key] = None
            blanked.append(key)
    for point in metrics["operating_points"]:
        for key in [k for k in point if k.startswith("test/") and not k.startswith(kept)]:
            point[key] = None
            blanked.append(f"operating_points/{key}")
    metrics["undefined"] = {
        "figures": sorted({key.removesuffix("_ci") for key in blanked}),
        "reason": f"the test set holds no {absent} image: these figures need both classes; the "
        f"{kept.removeprefix('test/')} at each operating point and the accuracy are what it measures",
    }
