"""Compare runs: ``python -m skinclf.report runs=[<run or multirun folder>,...]``.

Finds every run (a folder with metrics.json: training runs, evaluations, ensembles) below the given
folders and writes into its output folder report.html, one self-contained page comparing them (the
forest plots of their subgroup audits side by side), report.md, the same tables as Markdown, and
report.png, their test precision-recall curves overlaid.
"""

from __future__ import annotations

from pathlib import Path

from skinclf.config.schema import ReportConfig
from skinclf.entry import command
from skinclf.reports import write_reports
from skinclf.runs import find_runs


@command("report")
def main(settings: ReportConfig, run_folder: Path) -> None:
    written = write_reports([run.folder for run in find_runs(settings.runs)], run_folder)
    print(written.markdown.read_text())
    print(f"wrote {written.html}, {written.markdown} and {written.figure}")


if __name__ == "__main__":
    main()
