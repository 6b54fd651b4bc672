"""Ranking metrics and operating points from scores and labels, vectorised over resamples.

Every function takes ``scores`` and ``labels`` of shape (n,) or (resamples, n) and returns one value
per row, so the same code gives a point estimate and a bootstrap distribution. A threshold t
predicts malignant when score >= t; the candidate thresholds are the distinct scores.
torchmetrics' binary AUROC, average precision and precision-at-fixed-recall are the reference
these are tested against; they are re-done here because they do not batch over resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Slack for comparing recalls with targets such as 0.999 (tp / positives is exact otherwise).
RECALL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RankedCounts:
    """Scores sorted high to low with cumulative true and false positives at each position.

    ``is_cut`` marks the last position of each run of tied scores: the places where a threshold
    can fall. Arrays have shape (rows, n).
    """

    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    is_cut: np.ndarray

    @property
    def positives(self) -> np.ndarray:
        return self.tp[:, -1]

    @property
    def negatives(self) -> np.ndarray:
        return self.fp[:, -1]

    @property
    def precision(self) -> np.ndarray:
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.tp / self.positives[:, None]


def rank(scores: np.ndarray, labels: np.ndarray) -> RankedCounts:
    """Sort each row by score, high to low, and count true and false positives cumulatively."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.atleast_2d(np.asarray(labels)).astype(np.int64)
    order = np.argsort(-scores, axis=-1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=-1)
    sorted_labels = np.take_along_axis(np.broadcast_to(labels, scores.shape), order, axis=-1)
    tp = np.cumsum(sorted_labels, axis=-1)
    fp = np.cumsum(1 - sorted_labels, axis=-1)
    is_cut = np.ones_like(sorted_scores, dtype=bool)
    is_cut[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    return RankedCounts(sorted_scores, tp, fp, is_cut)


def _cut_of_position(ranked: RankedCounts) -> np.ndarray:
    """For each position, the index of the cut that closes its run of tied scores."""
    n = ranked.scores.shape[-1]
    index = np.where(ranked.is_cut, np.arange(n), n)
    return np.minimum.accumulate(index[:, ::-1], axis=-1)[:, ::-1]


def average_precision(ranked: RankedCounts) -> np.ndarray:
    """Area under the precision-recall step curve: mean precision at the cut of each positive."""
    precision_at_cut = np.take_along_axis(ranked.precision, _cut_of_position(ranked), axis=-1)
    is_positive = np.diff(ranked.tp, axis=-1, prepend=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (precision_at_cut * is_positive).sum(axis=-1) / ranked.positives


def auroc(ranked: RankedCounts) -> np.ndarray:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting half."""
    cut = _cut_of_position(ranked)
    n = ranked.scores.shape[-1]
    # true positives ranked strictly above a position's run of ties, and within the run
    run_start = np.maximum.accumulate(np.where(np.roll(ranked.is_cut, 1, axis=-1), np.arange(n), 0), axis=-1)
    tp_above = np.where(run_start > 0, np.take_along_axis(ranked.tp, np.maximum(run_start - 1, 0), axis=-1), 0)
    tp_in_run = np.take_along_axis(ranked.tp, cut, axis=-1) - tp_above
    is_negative = np.diff(ranked.fp, axis=-1, prepend=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pairs = ranked.positives * ranked.negatives
        return ((tp_above + 0.5 * tp_in_run) * is_negative).sum(axis=-1) / pairs


def best_precision_at_recall(ranked: RankedCounts, target_recall: float) -> tuple[np.ndarray, np.ndarray]:
    """Highest precision among thresholds whose recall is >= target, and that threshold.

    Among thresholds of equal precision the one with the higher recall wins. Rows without
    positives give NaN.
    """
    reaches = ranked.is_cut & (ranked.recall >= target_recall - RECALL_TOLERANCE)
    precision = np.where(reaches, ranked.precision, -np.inf)
    best = precision.max(axis=-1, keepdims=True)
    winners = reaches & (precision >= best)
    last_winner = ranked.scores.shape[-1] - 1 - np.argmax(winners[:, ::-1], axis=-1)
    found = winners.any(axis=-1)
    threshold = np.take_along_axis(ranked.scores, last_winner[:, None], axis=-1)[:, 0]
    return np.where(found, best[:, 0], np.nan), np.where(found, threshold, np.nan)


def reference_precision_at_recall(ranked: RankedCounts, target_recall: float) -> np.ndarray:
    """The reference's reading: precision at the lowest threshold whose recall is <= target.

    For comparison with the reference's published figures only: it looks at the test labels and
    lands on whichever cut lies just under the target, however few images decide it.
    """
    below = ranked.is_cut & (ranked.recall <= target_recall + RECALL_TOLERANCE)
    last = ranked.scores.shape[-1] - 1 - np.argmax(below[:, ::-1], axis=-1)
    precision = np.take_along_axis(ranked.precision, last[:, None], axis=-1)[:, 0]
    return np.where(below.any(axis=-1), precision, np.nan)


def rates_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float | np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, specificity, NPV and accuracy of predicting malignant when score >= threshold."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.atleast_2d(np.asarray(labels)).astype(bool)
    predicted = scores >= np.reshape(threshold, (-1, 1))
    tp = (predicted & labels).sum(axis=-1)
    fp = (predicted & ~labels).sum(axis=-1)
    fn = (~predicted & labels).sum(axis=-1)
    tn = (~predicted & ~labels).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "npv": tn / (tn + fn),
            "accuracy": (tp + tn) / (tp + fp + fn + tn),
        }
