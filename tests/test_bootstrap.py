"""Stratified bootstrap intervals: seeded, around the estimate, narrower with more data."""

from __future__ import annotations

import numpy as np
import pytest

from skinclf.config.schema import BootstrapSettings
from skinclf.metrics import figures as metrics_module
from skinclf.metrics.bootstrap import stratified_resamples
from skinclf.metrics.figures import evaluate


def scores_and_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2.0 * labels - 1)))
    return scores, labels


def width(interval: list[float]) -> float:
    return interval[1] - interval[0]


def test_resamples_keep_the_class_counts() -> None:
    labels = np.array([1, 0, 0, 1, 0, 0, 0])
    indices, rows = stratified_resamples(labels, 50, np.random.default_rng(0))
    assert indices.shape == (50, 7)
    assert (labels[indices] == rows).all() and rows.sum() == 2


def test_intervals_contain_the_estimate_and_shrink_with_more_data() -> None:
    settings = BootstrapSettings(resamples=1000, confidence=0.95, seed=0)
    small = evaluate(*scores_and_labels(300, 1), *scores_and_labels(300, 2), [0.95], settings)
    large = evaluate(*scores_and_labels(300, 1), *scores_and_labels(3000, 3), [0.95], settings)

    for metrics in (small, large):
        for key in ("test/auroc", "test/auprc", "test/precision_at_recall_0.95"):
            low, high = metrics[f"{key}_ci"]
            assert low <= metrics[key] <= high, key
        point = metrics["operating_points"][0]
        assert point["test/recall_ci"][0] <= point["test/recall"] <= point["test/recall_ci"][1]
    for key in ("test/auroc", "test/auprc", "test/precision_at_recall_0.95"):
        assert width(large[f"{key}_ci"]) < 0.6 * width(small[f"{key}_ci"]), key
    assert large["bootstrap"]["resamples"] == 1000


def test_intervals_are_seeded_and_vectorised(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (*scores_and_labels(600, 1), *scores_and_labels(2000, 2))
    settings = BootstrapSettings(resamples=2000, confidence=0.95, seed=5)
    calls = []
    figures = metrics_module.resampled_figures

    def counted(*arrays: object, **kwargs: object) -> dict:
        calls.append(np.shape(arrays[0]))
        return figures(*arrays, **kwargs)

    monkeypatch.setattr(metrics_module, "resampled_figures", counted)
    first = evaluate(*data, [0.95, 0.99, 0.995, 0.999], settings)
    assert first == evaluate(*data, [0.95, 0.99, 0.995, 0.999], settings)
    # the 2,000 resamples go through the figures a chunk of rows at a time, not one resample per call
    resampled = [shape for shape in calls[: len(calls) // 2] if len(shape) == 2]
    assert sum(rows for rows, _ in resampled) == 2000 and len(resampled) <= 3
