"""What a report says of runs, as rows of text: built from each run's metrics.json alone, for the Markdown and the
HTML report alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

from skinclf.metrics.decisions import recall_key


def shown(figure: float | None) -> str:
    """A figure as a report shows it: three decimals, or a dash where it is undefined."""
    return "–" if figure is None else f"{figure:.3f}"


def with_interval(metrics: dict, key: str) -> str:
    """A figure and its interval, if it has one: 0.812 [0.774, 0.849]."""
    interval = metrics.get(f"{key}_ci")
    if interval is None or None in interval:
        return shown(metrics.get(key))
    return f"{shown(metrics.get(key))} [{interval[0]:.3f}, {interval[1]:.3f}]"


def ranking(metrics: dict) -> dict[str, str]:
    """The test AUROC and AUPRC, each with its interval."""
    return {"AUROC": with_interval(metrics, "test/auroc"), "AUPRC": with_interval(metrics, "test/auprc")}


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
        **ranking(metrics),
    }
    for point in metrics["operating_points"]:
        r = recall_key(point["target_recall"])
        row[f"P @ R≥{r} (oracle)"] = with_interval(metrics, f"test/precision_at_recall_{r}")
    for point in metrics["operating_points"]:
        r = recall_key(point["target_recall"])
        row[f"val t for R≥{r}: test P / R"] = f"{shown(point['test/precision'])} / {shown(point['test/recall'])}"
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
                "AUROC": with_interval(entry, "auroc"),
            }
            for point in entry["operating_points"]:
                r = recall_key(point["target_recall"])
                flag = " ⚠ below target" if point["below_target"] else ""
                row[f"R≥{r}: recall"] = with_interval(point, "recall") + flag
                row[f"R≥{r}: specificity"] = with_interval(point, "specificity")
            rows.append(row)
    return rows


def figure_or_dash(figures: dict, key: str) -> str:
    return with_interval(figures, key) if figures.get(key) is not None else "–"


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
        text.append(f"| {name} | {figure_or_dash(internal, key)} | {figure_or_dash(metrics, key)} |")
    text += ["", "| target recall | threshold | recall: internal | recall: external | specificity: external |"]
    text.append("|---|---|---|---|---|")
    for point in transfer["operating_points"]:
        flag = " ⚠ below target" if point["recall_below_target"] else ""
        home, here = point.get("internal") or {}, point["external"]
        text.append(
            f"| {point['target_recall']:g} | {shown(point['threshold'])} | {figure_or_dash(home, 'recall')} | "
            f"{figure_or_dash(here, 'recall')}{flag} | {figure_or_dash(here, 'specificity')} |"
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
    """What a reader must know of a run's figures: how its thresholds were chosen, its calibration, how skin tone was
    estimated."""
    lines = []
    policy = metrics.get("run", {}).get("decision_policy")
    if policy:
        lines.append(
            f"- Thresholds chosen on {policy['chosen_on']} ({policy['images']} images, {policy['malignant']} "
            f"malignant) by the rule {policy['rule']}: {policy['how']}."
        )
    undecided = metrics.get("undecided")
    for point in undecided["operating_points"] if undecided else []:
        lines.append(f"- Recall ≥ {recall_key(point['target_recall'])}: {point['reason']} (no threshold).")
    if undecided:
        lines.append(f"- {undecided['what_decides'][:1].upper()}{undecided['what_decides'][1:]}.")
    calibration = metrics.get("calibration")
    if calibration:
        ece = ", ".join(
            f"{split} ECE {calibration[f'{split}/ece_before']:.3f} → {calibration[f'{split}/ece_after']:.3f}"
            for split in ("val", "test")
            if f"{split}/ece_before" in calibration
        )
        temperature, fitted_on = calibration["temperature"], calibration["fitted_on"]
        lines.append(f"- Calibrated by temperature {temperature:.3f}, fitted on {fitted_on}: {ece}.")
    shift = metrics.get("shift")
    if shift:
        lines.append(f"- As a set: {shift['sentence']} (KS {shift['statistic']:.3f}; {shift['test']}).")
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


def left_out_rows(runs: list[dict]) -> list[dict[str, str]]:
    """Each source a run left out (cv.leave_out=source), judged on all its images: a row per source, with intervals,
    and their mean; none where no run left a source out."""
    judged = sorted((m for m in runs if "left_out_source" in m), key=lambda m: m["left_out_source"])
    if not judged:
        return []
    rows = []
    for metrics in judged:
        point = metrics["operating_points"][0]
        rows.append(
            {
                "source left out": metrics["left_out_source"],
                "images": str(metrics["test/images"]),
                "malignant": str(metrics["test/malignant"]),
                **ranking(metrics),
                f"at the threshold for recall ≥ {recall_key(point['target_recall'])}: recall / specificity": (
                    f"{with_interval(point, 'test/recall')} / {with_interval(point, 'test/specificity')}"
                ),
            }
        )
    mean = {
        key: np.nanmean([np.nan if m[key] is None else m[key] for m in judged]) for key in ("test/auroc", "test/auprc")
    }
    rows.append(
        {
            "source left out": f"mean of {len(judged)}",
            "images": "",
            "malignant": "",
            **{k.split("/")[1].upper(): shown(v) for k, v in mean.items()},
        }
    )
    return rows


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
