"""Stratified bootstrap: resample positives and negatives separately, many resamples at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from skinclf.config.schema import BootstrapSettings

#: Upper bound on resamples x images held in memory at once (about 16 MB per float64 array).
CHUNK_ELEMENTS = 2_000_000


def stratified_resamples(labels: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``count`` resamples, each keeping the number of positives and of negatives.

    Returns (indices of shape (count, n), labels of one resample, shape (n,)): every resample
    lists its positives first, so all share the same label row.
    """
    positives = np.flatnonzero(labels == 1)
    negatives = np.flatnonzero(labels == 0)
    indices = np.concatenate(
        [
            positives[rng.integers(0, len(positives), size=(count, len(positives)))],
            negatives[rng.integers(0, len(negatives), size=(count, len(negatives)))],
        ],
        axis=1,
    )
    return indices, np.r_[np.ones(len(positives), dtype=int), np.zeros(len(negatives), dtype=int)]


def _chunks(total: int, size: int) -> Iterator[int]:
    for start in range(0, total, size):
        yield min(size, total - start)


def bootstrap_intervals(
    statistics: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    settings: BootstrapSettings,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every statistic, val and test resampled independently.

    ``statistics(val_scores, val_labels, test_scores, test_labels)`` takes rows of resamples
    and returns one value per row for each named statistic, so that a figure depending on both
    (a threshold chosen on val, applied to test) carries the uncertainty of both.
    """
    rng = np.random.default_rng(settings.seed)
    (val_scores, val_labels), (test_scores, test_labels) = val, test
    chunk = max(1, CHUNK_ELEMENTS // max(len(val_scores), len(test_scores)))
    samples: dict[str, list[np.ndarray]] = {}
    for count in _chunks(settings.resamples, chunk):
        val_index, val_rows = stratified_resamples(val_labels, count, rng)
        test_index, test_rows = stratified_resamples(test_labels, count, rng)
        values = statistics(val_scores[val_index], val_rows, test_scores[test_index], test_rows)
        for name, value in values.items():
            samples.setdefault(name, []).append(value)
    tail = 100 * (1 - settings.confidence) / 2
    intervals = {}
    for name, parts in samples.items():
        values = np.concatenate(parts)
        values = values[~np.isnan(values)]
        intervals[name] = (
            (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
            if len(values)
            else (float("nan"), float("nan"))
        )
    return intervals
