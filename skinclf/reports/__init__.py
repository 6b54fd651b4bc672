"""The reports of runs: report.html (one self-contained page), report.md (the same tables, to diff) and report.png."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skinclf.reports.html import write_html
from skinclf.reports.markdown import write_markdown
from skinclf.reports.plots import plot_pr_curves
from skinclf.runs import PR_CURVE, REPORT_FIGURE, Runs


@dataclass(frozen=True)
class Written:
    html: Path
    markdown: Path
    figure: Path


def write_reports(folders: list[Path], output: Path) -> Written:
    """report.html, report.md and report.png of the run folders, in output. A run's report in its own folder shows
    the run's pr_curve.png instead of drawing its test curve again as report.png."""
    output.mkdir(parents=True, exist_ok=True)
    runs = Runs.of(folders)
    own_curves = output / PR_CURVE
    if [folder.resolve() for folder in folders] == [output.resolve()] and own_curves.is_file():
        figure = own_curves
    else:
        figure = plot_pr_curves(
            runs.test_curves(), output / REPORT_FIGURE, "test precision-recall of the compared runs"
        )
    return Written(write_html(runs, output, figure), write_markdown(runs, output, figure), figure)
