"""The lines a command prints of its figures: the headline test figures on one line, then each warning."""

from __future__ import annotations

from skinclf.metrics.decisions import recall_key


def threshold_warning(metrics: dict) -> str | None:
    """A line saying which operating points rest on too few malignant validation images, if any."""
    few = [recall_key(p["target_recall"]) for p in metrics["operating_points"] if p["set_by_few_images"]]
    if not few:
        return None
    return (
        f"warning: the thresholds for recall >= {', '.join(few)} are each set by the one or two lowest-scored of "
        f"{metrics['val/malignant']} malignant validation images, so their test recall is little more than a guess "
        "(see the intervals in metrics.json). More malignant validation images (data.val_min_malignant) or lower "
        "targets give steadier thresholds."
    )


def subgroup_warnings(metrics: dict) -> list[str]:
    """Lines naming the audited subgroups whose recall falls below a target beyond their interval."""
    lines = []
    for column, entries in metrics.get("subgroups", {}).items():
        for entry in entries:
            for point in entry["operating_points"]:
                if point["below_target"]:
                    low, high = point["recall_ci"]
                    lines.append(
                        f"warning: {column}={entry['value']} ({entry['malignant']} malignant): recall "
                        f"{point['recall']:.3f} [{low:.3f}, {high:.3f}] at the threshold for recall >= "
                        f"{point['target_recall']:g}"
                    )
    return lines


def summary_line(metrics: dict) -> str:
    """The headline test figures in one line (an operating point no threshold was set for says why), then warnings:
    undecided operating points and what would decide them, thin thresholds, subgroups below target."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    parts = [
        f"test AUROC {fmt(metrics['test/auroc'])}",
        f"AUPRC {fmt(metrics['test/auprc'])}",
        f"acc@0.5 {fmt(metrics['test/accuracy'])}",
    ]
    for point in metrics["operating_points"]:
        r = recall_key(point["target_recall"])
        rates = f"P {fmt(point['test/precision'])} R {fmt(point['test/recall'])}"
        if point["test/recall"] is None and point["test/specificity"] is not None:  # a benign-only test set
            rates = f"specificity {fmt(point['test/specificity'])}"
        parts.append(f"@val-recall {r}: {rates}")
    undecided = metrics.get("undecided")
    for point in undecided["operating_points"] if undecided else []:
        parts.append(f"@val-recall {recall_key(point['target_recall'])}: {point['reason']}")
    warnings = [
        w
        for w in [
            undecided_warning(metrics),
            threshold_warning(metrics),
            *subgroup_warnings(metrics),
            *transfer_warnings(metrics),
            shift_line(metrics),
        ]
        if w
    ]
    return "\n".join([" | ".join(parts), *warnings])


def shift_line(metrics: dict) -> str | None:
    """The set alarm's finding: a warning where it fired, else what it found."""
    shift = metrics.get("shift")
    if not shift:
        return None
    return f"{'warning' if shift['alarm'] else 'set'}: {shift['sentence']}"


def undecided_warning(metrics: dict) -> str | None:
    """A line naming the operating points no threshold was set for, and what would decide them."""
    undecided = metrics.get("undecided")
    if not undecided:
        return None
    targets = ", ".join(recall_key(p["target_recall"]) for p in undecided["operating_points"])
    return f"warning: no threshold for recall >= {targets}: {undecided['what_decides']}"


def transfer_warnings(metrics: dict) -> list[str]:
    """Lines naming the operating points whose external recall fell below the target beyond its interval."""
    lines = []
    for point in (metrics.get("transfer") or {}).get("operating_points", []):
        if point["recall_below_target"]:
            external = point["external"]
            low, high = external["recall_ci"]
            home = point.get("internal", {}).get("recall")
            at_home = f" (on the model's own test split: {home:.3f})" if home is not None else ""
            lines.append(
                f"warning: transfer: at the threshold chosen for recall >= {point['target_recall']:g}, the recall here "
                f"is {external['recall']:.3f} [{low:.3f}, {high:.3f}]{at_home}: choose thresholds on this site's own "
                "images (evaluation.threshold_source)"
            )
    return lines
