"""Compare runs: ``python -m skinclf.report runs=[<run or multirun folder>,...]``.

Finds every run (a folder with metrics.json) below the given folders and writes into its output
folder report.md, a Markdown table with a row per run and, for experiments run over several seeds,
mean ± sd, and report.png, the runs' test precision-recall curves overlaid over the full range and
at high recall.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from skinclf.artifact import find_runs
from skinclf.atomic import write_text
from skinclf.cli import command, output_folder
from skinclf.evaluation.metrics import recall_key
from skinclf.evaluation.plots import plot_pr_curves
from skinclf.evaluation.subgroups import MIN_IMAGES_TO_JUDGE
from skinclf.schema import ReportConfig


def _value(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _with_interval(metrics: dict, key: str) -> str:
    interval = metrics.get(f"{key}_ci")
    if interval is None or None in interval:
        return _value(metrics.get(key))
    return f"{_value(metrics.get(key))} [{interval[0]:.3f}, {interval[1]:.3f}]"


def run_row(label: str, metrics: dict) -> dict[str, str]:
    """One table row: who the run is, its ranking figures and its operating points, with intervals."""
    run = metrics.get("run", {})
    row = {
        "run": label,
        "experiment": str(run.get("name", "")),
        "model": str(run.get("arch", "")),
        "aug": str(run.get("aug", "")),
        "seed": str(run.get("seed", "")),
        "evaluated on": str(run.get("evaluated_on", "")),
        "AUROC": _with_interval(metrics, "test/auroc"),
        "AUPRC": _with_interval(metrics, "test/auprc"),
    }
    for point in metrics["operating_points"]:
        r = recall_key(point["target_recall"])
        row[f"P @ R≥{r} (oracle)"] = _with_interval(metrics, f"test/precision_at_recall_{r}")
    for point in metrics["operating_points"]:
        r = recall_key(point["target_recall"])
        row[f"val t for R≥{r}: test P / R"] = f"{_value(point['test/precision'])} / {_value(point['test/recall'])}"
    return row


def subgroup_rows(metrics: dict) -> list[dict[str, str]]:
    """The audit by subgroup of a run: a row per subgroup, recall and specificity at each operating point."""
    rows = []
    for column, entries in metrics.get("subgroups", {}).items():
        for entry in entries:
            few = " (too few to judge)" if entry.get("too_few_to_judge") else ""
            row = {
                "subgroup": f"{column} = {entry['value']}{few}",
                "images": str(entry["images"]),
                "malignant": str(entry["malignant"]),
                "AUROC": _with_interval(entry, "auroc"),
            }
            for point in entry["operating_points"]:
                r = recall_key(point["target_recall"])
                flag = " ⚠ below target" if point["below_target"] else ""
                row[f"R≥{r}: recall"] = _with_interval(point, "recall") + flag
                row[f"R≥{r}: specificity"] = _with_interval(point, "specificity")
            rows.append(row)
    return rows


def _range(figures: dict, key: str) -> str:
    return _with_interval(figures, key) if figures.get(key) is not None else "–"


def transfer_section(label: str, metrics: dict) -> list[str]:
    """How an externally evaluated model transferred: its figures here beside its own run's, each operating point's
    recall and specificity at the threshold chosen on its own validation, the images it trained on met again."""
    transfer = metrics.get("transfer")
    if transfer is None:
        return []
    internal = transfer.get("internal") or {}
    text = [
        "",
        f"## How {label} transferred",
        "",
        f"External: {metrics['run'].get('evaluated_on', '')}. Internal: "
        f"{internal.get('evaluated_on', 'not recorded beside the checkpoint')}. Thresholds chosen on "
        f"{metrics['run'].get('thresholds_chosen_on', 'validation')}.",
        "",
        "| figure | internal | external |",
        "|---|---|---|",
    ]
    for key, name in (("test/auroc", "AUROC"), ("test/auprc", "AUPRC"), ("test/ece", "ECE")):
        text.append(f"| {name} | {_range(internal, key)} | {_range(metrics, key)} |")
    text += ["", "| target recall | threshold | recall: internal | recall: external | specificity: external |"]
    text.append("|---|---|---|---|---|")
    for point in transfer["operating_points"]:
        flag = " ⚠ below target" if point["recall_below_target"] else ""
        home, here = point.get("internal") or {}, point["external"]
        text.append(
            f"| {point['target_recall']:g} | {_value(point['threshold'])} | {_range(home, 'recall')} | "
            f"{_range(here, 'recall')}{flag} | {_range(here, 'specificity')} |"
        )
    overlap = metrics.get("overlap_with_training")
    if overlap:
        text += [
            "",
            f"Images the model trained on, met again here: {overlap['identical']} identical, "
            f"{overlap['near_identical']} near-identical"
            + (
                f"; {overlap['excluded']} left out (evaluation.exclude_training_duplicates)."
                if overlap["excluded"]
                else "."
            ),
        ]
    return text


def notes(metrics: dict) -> list[str]:
    """What a reader must know of a run's figures: its calibration, how skin tone was estimated."""
    lines = []
    calibration = metrics.get("calibration")
    if calibration:
        ece = ", ".join(
            f"{split} ECE {calibration[f'{split}/ece_before']:.3f} → {calibration[f'{split}/ece_after']:.3f}"
            for split in ("val", "test")
            if f"{split}/ece_before" in calibration
        )
        temperature, fitted_on = calibration["temperature"], calibration["fitted_on"]
        lines.append(f"- Calibrated by temperature {temperature:.3f}, fitted on {fitted_on}: {ece}.")
    if "skin_tone" in metrics:
        lines.append(f"- Skin tone ({metrics['skin_tone']['column']}) is {metrics['skin_tone']['how']}.")
    return lines


def numeric_figures(metrics: dict) -> dict[str, float]:
    """The figures that are averaged over seeds, by column name."""
    figures = {"AUROC": metrics["test/auroc"], "AUPRC": metrics["test/auprc"]}
    for point in metrics["operating_points"]:
        r = recall_key(point["target_recall"])
        figures[f"P @ R≥{r} (oracle)"] = metrics.get(f"test/precision_at_recall_{r}")
        figures[f"val t for R≥{r}: test P"] = point["test/precision"]
        figures[f"val t for R≥{r}: test R"] = point["test/recall"]
    return {k: np.nan if v is None else v for k, v in figures.items()}


def seed_summary(runs: list[dict]) -> pd.DataFrame:
    """Mean ± sd over the seeds of each experiment (on the same data) run with several seeds."""
    frame = pd.DataFrame(
        [
            {
                "experiment": m.get("run", {}).get("name", ""),
                "evaluated on": m.get("run", {}).get("evaluated_on", ""),
                "seed": m.get("run", {}).get("seed"),
                **numeric_figures(m),
            }
            for m in runs
        ]
    )
    rows = []
    for (experiment, data), group in frame.groupby(["experiment", "evaluated on"], sort=False):
        group = group.drop_duplicates("seed")  # the same run evaluated again is not another seed
        if len(group) < 2:
            continue
        row = {"experiment": experiment, "evaluated on": data, "seeds": ", ".join(map(str, group["seed"]))}
        for column in frame.columns[3:]:
            row[column] = f"{group[column].mean():.3f} ± {group[column].std(ddof=1):.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def write_report(run_dirs: list[Path], output: Path) -> tuple[Path, Path]:
    """Write report.md and report.png for the runs into output."""
    output.mkdir(parents=True, exist_ok=True)
    run_dirs = [d.resolve() for d in run_dirs]  # given relative or absolute: labelled from their common folder
    runs = [json.loads((d / "metrics.json").read_text()) for d in run_dirs]
    common = Path(os.path.commonpath(run_dirs))
    labels = [d.name if d == common else d.relative_to(common).as_posix() for d in run_dirs]
    table = pd.DataFrame([run_row(label, m) for label, m in zip(labels, runs, strict=True)])
    curves = {}
    for label, directory, metrics in zip(labels, run_dirs, runs, strict=True):
        predictions = directory / "predictions_test.csv"
        if predictions.is_file():
            test = pd.read_csv(predictions)
            name = metrics.get("run", {}).get("name", label)
            curves[f"{label} ({name})"] = (test["probability"].to_numpy(), test["label"].to_numpy())
    figure = plot_pr_curves(curves, output / "report.png", "test precision-recall of the compared runs")
    text = [
        "# Run comparison",
        "",
        f"{len(runs)} run(s) below {common}. Figures on each run's test set; brackets: 95 % stratified "
        "bootstrap intervals. *Oracle*: the highest test precision among thresholds reaching the recall "
        "(the threshold picked with the test labels, an optimistic bound). *val t*: the threshold chosen on "
        "validation for that recall, and the precision / recall it gives on test.",
        "",
        markdown_table(table),
    ]
    summary = seed_summary(runs)
    if not summary.empty:
        text += ["", "## Over seeds (mean ± sd)", "", markdown_table(summary)]
    for label, metrics in zip(labels, runs, strict=True):
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
    report = output / "report.md"
    write_text(report, "\n".join(text))
    return report, figure


@command("report")
def main(settings: ReportConfig) -> None:
    folder = output_folder()
    report, figure = write_report([run.directory for run in find_runs(settings.runs)], folder)
    print(report.read_text())
    print(f"wrote {report} and {figure}")


if __name__ == "__main__":
    main()
