"""Figures of runs, written as PNG files: precision-recall, ROC, reliability, a diagnosis head's confusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, StrMethodFormatter

from skinclf.core.atomic import atomic_path
from skinclf.metrics.calibration import CALIBRATION_BINS, expected_calibration_error
from skinclf.metrics.curves import auroc, rank

#: Lower end of recall in the zoomed precision-recall panel (the reference's figure).
HIGH_RECALL_FROM = 0.95

#: Scores and labels of one curve, by its legend label.
Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def _cut_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(recall, precision, false-positive rate) at every distinct threshold, highest first."""
    ranked = rank(scores, labels)
    cut = ranked.is_cut[0]
    fpr = ranked.fp[0] / max(ranked.negatives[0], 1)
    return ranked.recall[0][cut], ranked.precision[0][cut], fpr[cut]


def with_margins(
    figsize: tuple[float, float], left: float = 0.75, right: float = 0.15, bottom: float = 0.55, top: float = 0.4
) -> tuple[Figure, dict[str, float]]:
    """A figure and the gridspec margins (given in inches) that hold the fixed labels of the curves' figures.

    Set by hand: Matplotlib's constrained layout measures every label and drew each figure twice, a third of an
    evaluation's figure time; these figures' labels are known in advance."""
    width, height = figsize
    margins = {"left": left / width, "right": 1 - right / width, "bottom": bottom / height, "top": 1 - top / height}
    return Figure(figsize=figsize), margins


def titled(axis: Axes, title: str, legend: str) -> None:
    """The plot's title, a light grid, and its legend where it says."""
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc=legend, fontsize=8)


def save_figure(figure: Figure, path: Path, dpi: int = 120) -> Path:
    """Write a figure as an image file, atomically."""
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=dpi)
    return path


def plot_pr_curves(curves: Curves, path: Path, title: str, operating_points: list[dict] | None = None) -> Path:
    """Precision-recall over the full range and zoomed to recall >= HIGH_RECALL_FROM.

    ``operating_points`` (from metrics.json) marks what the val-chosen thresholds give on test.
    """
    figure, margins = with_margins((12, 5), top=0.65)
    axes = figure.subplots(1, 2, gridspec_kw={**margins, "wspace": 0.17})
    for axis, low in zip(axes, (0.0, HIGH_RECALL_FROM), strict=True):
        shown = []  # precisions within the panel's recall range
        for name, (scores, labels) in curves.items():
            recall, precision, _ = _cut_points(scores, labels)
            axis.step(recall, precision, where="post", label=name)
            shown += list(precision[recall >= low])
        for point, marker in zip(operating_points or [], "os^Dv<>p", strict=False):
            if point["test/recall"] is not None and point["test/precision"] is not None:
                axis.plot(
                    point["test/recall"],
                    point["test/precision"],
                    marker,
                    ms=8,
                    mfc="none",
                    mew=1.6,
                    label=f"test at the val threshold for recall >= {point['target_recall']:g}",
                )
        axis.set_xlim(low - 0.002, 1.002)
        # the full range from 0 to 1; the high-recall panel around the precisions it shows
        if low == 0 or not shown:
            axis.set_ylim(0, 1.02)
        else:
            axis.set_ylim(max(0.0, min(shown) - 0.05), min(1.02, max(shown) + 0.05))
        axis.set_xlabel("recall (sensitivity)")
        axis.set_ylabel("precision (PPV)")
        axis.grid(alpha=0.3)
        axis.set_title("full range" if low == 0 else f"high recall ({low:g}-1)")
    axes[0].legend(loc="lower left", fontsize=8)
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_roc_curves(curves: Curves, path: Path, title: str) -> Path:
    """ROC curves with their AUROC in the legend."""
    figure, margins = with_margins((5.5, 5.2))
    axis = figure.subplots(gridspec_kw=margins)
    for name, (scores, labels) in curves.items():
        recall, _, fpr = _cut_points(scores, labels)
        area = auroc(rank(scores, labels))[0]
        axis.plot(np.r_[0, fpr], np.r_[0, recall], label=f"{name} (AUROC {area:.3f})")
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.set_xlabel("false-positive rate (1 - specificity)")
    axis.set_ylabel("true-positive rate (recall)")
    titled(axis, title, "lower right")
    return save_figure(figure, path)


def plot_reliability(curves: Curves, path: Path, title: str, bins: int = CALIBRATION_BINS) -> Path:
    """Reliability diagram of each curve (e.g. before and after calibration): observed malignant fraction per bin of
    predicted probability, with its ECE; the images per bin below, of the last curve."""
    edges = np.linspace(0, 1, bins + 1)
    figure, margins = with_margins((5.5, 6.5), left=0.85)
    axis, hist = figure.subplots(2, 1, sharex=True, gridspec_kw={**margins, "height_ratios": [3, 1], "hspace": 0.08})
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for name, (scores, labels) in curves.items():
        which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
        counts = np.bincount(which, minlength=bins)
        with np.errstate(invalid="ignore"):
            observed = np.bincount(which, weights=labels, minlength=bins) / counts
            predicted = np.bincount(which, weights=scores, minlength=bins) / counts
        filled = counts > 0
        ece = expected_calibration_error(scores, labels)
        axis.plot(predicted[filled], observed[filled], "o-", label=f"{name} (ECE {ece:.3f}, {bins} bins)")
    axis.set_ylabel("observed fraction malignant")
    titled(axis, title, "upper left")
    hist.bar(edges[:-1], counts, width=1 / bins, align="edge", edgecolor="white")
    hist.set_yscale("log")
    hist.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))  # 10, 100 (not 10^1), in the margin's width
    hist.yaxis.set_minor_formatter(NullFormatter())
    hist.set_xlabel("predicted probability of malignancy")
    hist.set_ylabel("images")
    return save_figure(figure, path)


def plot_risk_coverage(referral: dict, path: Path, title: str) -> Path:
    """The error at the first operating point, and the recall and specificity at each, on the images kept as the
    highest-scored images are referred; the share this policy refers marked."""
    figure, margins = with_margins((9.5, 4.2), right=3.3)
    axis = figure.subplots(gridspec_kw=margins)
    curve, colours = referral["risk_coverage"], colormaps["tab10"].colors
    shares = [entry["share_referred"] for entry in curve]
    for colour, key in zip(colours, curve[0]["operating_points"], strict=False):
        for figure_name, style in (("recall", "-"), ("specificity", "--")):
            values = [entry["operating_points"][key][figure_name] for entry in curve]
            values = [np.nan if v is None else v for v in values]
            axis.plot(shares, values, style, color=colour, label=f"{figure_name} at the threshold for recall >= {key}")
    errors = [np.nan if entry.get("error") is None else entry["error"] for entry in curve]
    axis.plot(shares, errors, "k-", linewidth=2, label="error at the first operating point")
    axis.axvline(referral["share_referred"], color="grey", linestyle=":", label="referred by the policy")
    axis.set_xlabel("share of the images referred (the highest referral scores first)")
    axis.set_ylabel("on the images kept")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    return save_figure(figure, path)


def plot_confusion_matrix(figures: dict, path: Path, title: str) -> Path:
    """The confusion matrix of the test diagnoses, each row as shares of its true diagnosis."""
    classes, counts = figures["classes"], np.array(figures["confusion_matrix"])
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(1.1 * len(classes) + 2.5, 1.0 * len(classes) + 1.8), layout="constrained")
    axis = figure.subplots()
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if shares[row, column] > 0.5 else "black"
        axis.text(
            column, row, f"{count}\n{shares[row, column]:.0%}", ha="center", va="center", fontsize=8, color=colour
        )
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("most probable diagnosis")
    axis.set_ylabel("true diagnosis")
    axis.set_title(f"{title} (balanced accuracy {figures['balanced_accuracy']:.3f})")
    return save_figure(figure, path)


def plot_forest(entries: list[dict], column: str, path: Path) -> Path:
    """The audit of one subgroup column as a forest plot: each subgroup's recall at each operating point with its
    interval, the target drawn; a subgroup too small to judge is greyed."""
    targets = [point["target_recall"] for point in entries[0]["operating_points"]] if entries else []
    figure = Figure(figsize=(7.5, 0.9 + 0.45 * len(entries) * max(1, len(targets)) ** 0.5), layout="constrained")
    axis = figure.subplots()
    colours = colormaps["tab10"].colors
    for t, target in enumerate(targets):
        offset = (t - (len(targets) - 1) / 2) * 0.8 / max(1, len(targets))
        for row, entry in enumerate(entries):
            point = entry["operating_points"][t]
            if point["recall"] is None:
                continue
            low, high = (
                point["recall_ci"] if point.get("recall_ci") and None not in point["recall_ci"] else (None, None)
            )
            alpha = 0.35 if entry.get("too_few_to_judge") else 1.0
            y = row + offset
            if low is not None:
                axis.plot([low, high], [y, y], color=colours[t], alpha=alpha, lw=1.6)
            axis.plot(
                point["recall"], y, "o", color=colours[t], alpha=alpha, ms=5, label=None if row else f"{target:g}"
            )
        axis.axvline(target, color=colours[t], ls="--", lw=1)
    axis.set_yticks(
        range(len(entries)),
        [
            f"{e['value']} ({e['malignant']} malignant){' - too few' if e.get('too_few_to_judge') else ''}"
            for e in entries
        ],
        fontsize=8,
    )
    axis.invert_yaxis()
    drawn = [x for e in entries for p in e["operating_points"] for x in (p["recall"], *(p.get("recall_ci") or []))]
    axis.set_xlim(max(0.0, min([*targets, *(x for x in drawn if x is not None), 1.0]) - 0.05), 1.005)
    axis.set_xlabel("recall at the threshold chosen on validation (95 % interval); dashed: the target")
    axis.set_title(f"recall by {column}")
    axis.grid(alpha=0.3, axis="x")
    axis.legend(title="target recall", fontsize=7, title_fontsize=7, loc="lower left")
    return save_figure(figure, path)
