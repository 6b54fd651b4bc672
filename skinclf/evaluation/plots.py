"""Figures of a run, written as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from skinclf.evaluation.curves import rank


def pr_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct threshold, from the highest threshold down."""
    ranked = rank(scores, labels)
    cut = ranked.is_cut[0]
    return ranked.recall[0][cut], ranked.precision[0][cut]


def plot_pr_curve(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    operating_points: list[dict],
    path: Path,
    title: str,
) -> Path:
    """Precision-recall curves over the full range and zoomed to recall >= 0.9.

    ``curves`` maps a label ("val", "test") to (scores, labels); the test results of the
    thresholds chosen on validation are marked.
    """
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    for axis, low in zip(axes, (0.0, 0.9), strict=True):
        for name, (scores, labels) in curves.items():
            recall, precision = pr_points(scores, labels)
            axis.step(recall, precision, where="post", label=f"{name} ({int(np.sum(labels))} malignant)")
        for point, marker in zip(operating_points, "os^Dv<>", strict=False):
            if point["test/recall"] is not None and point["test/precision"] is not None:
                axis.plot(
                    point["test/recall"],
                    point["test/precision"],
                    marker,
                    ms=8,
                    mfc="none",
                    mew=1.6,
                    label=f"test at threshold for val recall >= {point['target_recall']:g}",
                )
        axis.set_xlim(low, 1.005)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("recall (sensitivity)")
        axis.set_ylabel("precision (PPV)")
        axis.grid(alpha=0.3)
        axis.set_title("full range" if low == 0 else f"high recall ({low:g}-1)")
        axis.legend(loc="lower left", fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
