"""report.md: the runs side by side as Markdown tables, to read in a terminal and to diff."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from skinclf.core.atomic import write_text
from skinclf.metrics.subgroups import MIN_IMAGES_TO_JUDGE
from skinclf.reports.tables import (
    left_out_rows,
    markdown_table,
    notes,
    run_row,
    seed_summary,
    subgroup_rows,
    transfer_section,
)
from skinclf.runs import REPORT_MD, Runs


def write_markdown(runs: Runs, output: Path, figure: Path) -> Path:
    """report.md: the runs' table, their mean ± sd over seeds, and each run's transfer, subgroups and notes."""
    labels, common = runs.labels, runs.common
    table = pd.DataFrame([run_row(label, m) for label, m in zip(labels, runs.metrics, strict=True)])
    text = [
        "# Run comparison",
        "",
        f"{len(labels)} run(s) below {common}. Figures on each run's test set; brackets: 95 % stratified "
        "bootstrap intervals. *Oracle*: the highest test precision among thresholds reaching the recall "
        "(the threshold picked with the test labels, an optimistic bound). *val t*: the threshold chosen on "
        "validation for that recall, and the precision / recall it gives on test.",
        "",
        markdown_table(table),
    ]
    summary = seed_summary(runs.metrics)
    if not summary.empty:
        text += ["", "## Over seeds (mean ± sd)", "", markdown_table(summary)]
    left_out = left_out_rows(runs.metrics)
    if left_out:
        text += ["", "## Each source left out", "", markdown_table(pd.DataFrame(left_out).fillna(""))]
    for label, metrics in zip(labels, runs.metrics, strict=True):
        text += transfer_section(label, metrics)
        rows = subgroup_rows(metrics)
        if rows:
            text += [
                "",
                f"## Subgroups of {label}",
                "",
                "At the thresholds chosen on the whole validation set; ⚠: recall below the target even at the top "
                f"of its interval; too few to judge: under {MIN_IMAGES_TO_JUDGE} malignant or benign images, whose "
                "intervals are too wide to mean anything.",
                "",
                markdown_table(pd.DataFrame(rows)),
            ]
        if notes(metrics):
            text += ["", f"## Notes on {label}", "", *notes(metrics)]
    text += ["", f"![precision-recall]({figure.name})", ""]
    report = output / REPORT_MD
    write_text(report, "\n".join(text))
    return report
