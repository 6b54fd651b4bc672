"""report.html: one self-contained page for a run, an evaluation, an ensemble or a comparison of runs.

Every picture is inline (base64 PNG or JPEG), the style sheet too, and nothing is fetched: the page
opens from a file or an e-mail attachment. It shows the summary and its warnings first, the
operating points with intervals, the PR, ROC and reliability plots, the audit by subgroup as forest
plots and tables, a diagnosis head's confusion matrix, the error gallery with where the model
looked, how an externally evaluated model transferred, and a model card (Mitchell et al., FAT*
2019) filled from what each run's metrics.json knows.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import jinja2

from skinclf.core.atomic import write_text
from skinclf.metrics.decisions import recall_key
from skinclf.metrics.subgroups import MIN_IMAGES_TO_JUDGE
from skinclf.reports.plots import plot_forest
from skinclf.reports.summary import summary_line
from skinclf.reports.tables import (
    left_out_rows,
    notes,
    ranking,
    run_row,
    seed_summary,
    shown,
    subgroup_rows,
    with_interval,
)
from skinclf.runs import CONFUSION_MATRIX, ERRORS, PR_CURVE, RELIABILITY, REPORT_HTML, RISK_COVERAGE, ROC_CURVE, Runs

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("skinclf.reports", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)

#: The plots a run folder holds, shown in this order where present.
PLOTS = (
    (PR_CURVE, "Precision-recall, full range and at high recall, with the operating points chosen on validation"),
    (ROC_CURVE, "ROC"),
    (RELIABILITY, "Reliability of the test probabilities"),
    (CONFUSION_MATRIX, "Confusion matrix of the diagnoses"),
    (RISK_COVERAGE, "Risk-coverage: recall and specificity on the images kept as the most novel are referred"),
)

INTENDED_USE = (
    "A screening aid: to rank dermoscopy images of skin lesions by their probability of malignancy and flag those "
    "above a threshold chosen for a high recall, for a clinician to examine. It does not diagnose, is not a "
    "medical device, and has been evaluated only on the data named below; before use at a site, evaluate it on "
    "that site's images and choose its thresholds there (evaluation.threshold_source)."
)


def inline_picture(path: Path) -> str:
    """A picture file as a data URI."""
    kind = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    return f"data:image/{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def limitations(metrics: dict) -> list[str]:
    """What the run found that limits what its figures say."""
    found = []
    undecided = metrics.get("undecided")
    if undecided:
        reasons = "; ".join(
            f"recall ≥ {recall_key(p['target_recall'])}: {p['reason']}" for p in undecided["operating_points"]
        )
        found.append(
            f"No threshold was set ({reasons}): the model gives probabilities there, not decisions. "
            f"{undecided['what_decides'][:1].upper()}{undecided['what_decides'][1:]}."
        )
    few = [recall_key(p["target_recall"]) for p in metrics["operating_points"] if p.get("set_by_few_images")]
    if few:
        found.append(
            f"The thresholds for recall >= {', '.join(few)} are each set by the one or two lowest-scored of "
            f"{metrics.get('val/malignant')} malignant validation images: their recall elsewhere is little more than "
            "a guess."
        )
    for column, entries in metrics.get("subgroups", {}).items():
        below = [e["value"] for e in entries if any(p["below_target"] for p in e["operating_points"])]
        small = [e["value"] for e in entries if e.get("too_few_to_judge")]
        if below:
            found.append(f"By {column}, the recall falls below a target beyond its interval for: {', '.join(below)}.")
        if small:
            found.append(
                f"By {column}, too few images (under {MIN_IMAGES_TO_JUDGE} malignant or benign) to judge: "
                f"{', '.join(small)}."
            )
    shift = metrics.get("shift")
    if shift and shift["alarm"]:
        found.append(f"As a set, {shift['sentence'].removeprefix('these ')}.")
    overlap = metrics.get("overlap_with_training")
    if overlap and overlap["identical"] + overlap["near_identical"]:
        found.append(
            f"The evaluated images include {overlap['identical']} identical and {overlap['near_identical']} "
            "near-identical copies of training images"
            + (f" ({overlap['excluded']} left out)." if overlap["excluded"] else ": its figures are optimistic.")
        )
    checks = metrics.get("explanation_checks")
    if checks and not checks["beats_centre"]:
        found.append(saliency_verdict(checks))
    for point in (metrics.get("transfer") or {}).get("operating_points", []):
        if point["recall_below_target"]:
            found.append(
                f"On the evaluated set, the threshold chosen for recall >= {point['target_recall']:g} gave a recall "
                f"of {shown(point['external']['recall'])}, below its target beyond its interval."
            )
    return found or ["None found by the checks the run makes (thresholds, subgroups, copies, transfer)."]


def saliency_verdict(checks: dict) -> str:
    """In plain words, whether the maps beat the plain guesses."""
    points = checks["pointing_game"]
    if checks["beats_centre"]:
        return (
            "The maps point into the lesion more often than the crop's centre does, and removing what they rank "
            "highest lowers the score more than removing the centre: they show something of what the score rests on."
        )
    return (
        f"The maps do not beat the crop's centre: it falls inside the lesion for {points['centre']:.0%} of these "
        f"images against {points['maps']:.0%} for the maps' maximum, or removing what the maps rank highest lowers "
        "the score no more than removing the centre. Read them as no more than where the lesion usually is."
    )


def saliency_rows(checks: dict | None) -> dict | None:
    """What the page shows of the checks of the maps against plain guesses."""
    if checks is None:
        return None
    drops = next(value for key, value in checks.items() if key.startswith("score_drop"))
    removed = next(key for key in checks if key.startswith("score_drop")).rsplit("_", 1)[-1]
    points = checks["pointing_game"]
    return {
        **checks,
        "verdict": saliency_verdict(checks),
        "removed": removed,
        "points": {
            "maps": shown(points["maps"]),
            "random": shown(points["random point"]),
            "centre": shown(points["centre"]),
        },
        "drops": {key: shown(value) for key, value in drops.items()},
    }


def referral_rows(referral: dict | None) -> dict | None:
    """What the page shows of referral: how many were referred, and each operating point on all and on kept images."""
    if referral is None:
        return None
    points = [
        {
            "target": recall_key(p["target_recall"]),
            **{
                f"{figure}_{images}": shown(p[images][figure])
                for figure in ("recall", "specificity")
                for images in ("all", "kept")
            },
        }
        for p in referral["operating_points"]
    ]
    return {**referral, "share": f"{referral['share_referred']:.1%}", "points": points}


def weights_origin(origin: dict[str, str]) -> str:
    """Where the starting weights came from, in one line: the package and version (or the source) and the file's
    sha256."""
    where = f"{origin['package']} {origin['version']}" if "package" in origin else origin["source"]
    named = origin.get("repository") or origin.get("weights") or ""
    file = origin.get("file", origin.get("url", ""))
    return f"{where}{f' ({named})' if named else ''}, {file}, sha256 {origin['sha256']}"


def model_card(metrics: dict) -> dict[str, Any]:
    """The model card's sections (Mitchell et al. 2019) from what a run's metrics.json knows."""
    run = metrics.get("run", {})
    recipe = run.get("recipe", {})
    training = metrics.get("training_data") or {}
    details = {
        "name": run.get("name"),
        "model": f"{run.get('library', 'torchvision')} {run.get('arch')} ({run.get('task', 'binary')} head), "
        f"started from {run.get('weights') or 'random initialisation'}",
        **({"starting weights from": weights_origin(run["weights_origin"])} if run.get("weights_origin") else {}),
        **(
            {"members": f"an ensemble of {len(run['members'])} runs, combined by {run['combine']}"}
            if "members" in run
            else {}
        ),
        **{key: value for key, value in recipe.items()},
        "seed": run.get("seed"),
    }
    evaluation = {
        "evaluated on": run.get("evaluated_on"),
        "images": f"{metrics.get('test/images')} ({metrics.get('test/malignant')} malignant)",
        "thresholds chosen on": run.get("thresholds_chosen_on", "validation"),
        "factors audited": ", ".join(metrics.get("subgroups", {})) or "none",
    }
    figures = {
        **ranking(metrics),
        **{f"ECE{' (calibrated)' if 'calibration' in metrics else ''}": shown(metrics.get("test/ece"))},
    }
    for point in metrics["operating_points"]:
        r = recall_key(point["target_recall"])
        figures[f"at the threshold for recall >= {r}: recall / specificity"] = (
            f"{with_interval(point, 'test/recall')} / {with_interval(point, 'test/specificity')}"
        )
    return {
        "details": details,
        "intended_use": INTENDED_USE,
        "training": training,
        "evaluation": evaluation,
        "figures": figures,
        "limitations": limitations(metrics),
        "notes": notes(metrics),
    }


def forest_plots(metrics: dict, prefix: str, output: Path) -> list[tuple[str, str]]:
    """The forest plot of each audited column, written into output (forest_<prefix><column>.png) and inline."""
    plots = []
    for column, entries in metrics.get("subgroups", {}).items():
        path = plot_forest(entries, column, output / f"forest_{prefix}{re.sub(r'[^A-Za-z0-9_.-]+', '_', column)}.png")
        plots.append((inline_picture(path), column))
    return plots


def run_section(folder: Path, label: str, metrics: dict, output: Path, prefix: str) -> dict[str, Any]:
    """What the page shows of one run (its forest plots written into output, their names begun with prefix)."""
    plots = [(inline_picture(folder / name), caption) for name, caption in PLOTS if (folder / name).is_file()]
    forests = forest_plots(metrics, prefix, output)
    errors = folder / ERRORS
    return {
        "label": label,
        "summary": summary_line(metrics).splitlines(),
        "operating_points": [
            {
                "target": recall_key(p["target_recall"]),
                "threshold": with_interval(p, "threshold"),
                **{name: with_interval(p, f"test/{name}") for name in ("precision", "recall", "specificity", "npv")},
                "few": p.get("set_by_few_images", False),
            }
            for p in metrics["operating_points"]
        ],
        "policy": metrics.get("run", {}).get("decision_policy"),
        "referral": referral_rows(metrics.get("referral")),
        "saliency": saliency_rows(metrics.get("explanation_checks")),
        "plots": plots,
        "forests": forests,
        "subgroups": subgroup_rows(metrics),
        "errors": inline_picture(errors) if errors.is_file() else None,
        "transfer": metrics.get("transfer"),
        "overlap": metrics.get("overlap_with_training"),
        "card": model_card(metrics),
    }


def write_html(runs: Runs, output: Path, figure: Path) -> Path:
    """report.html of the runs: one section per run, and for several the comparison table and curves first."""
    several = len(runs.folders) > 1
    sections = [
        run_section(folder, label, metrics, output, f"{number}_" if several else "")
        for number, (folder, label, metrics) in enumerate(zip(runs.folders, runs.labels, runs.metrics, strict=True))
    ]
    comparison = [run_row(label, m) for label, m in zip(runs.labels, runs.metrics, strict=True)]
    summary = seed_summary(runs.metrics)
    page = TEMPLATES.get_template("report.html.j2").render(
        title=sections[0]["label"] if len(sections) == 1 else f"{len(sections)} runs compared",
        common=str(runs.common),
        sections=sections,
        comparison=comparison if len(sections) > 1 else [],
        seeds=summary.to_dict("records") if not summary.empty else [],
        left_out=left_out_rows(runs.metrics),
        overlaid=inline_picture(figure) if len(sections) > 1 and figure.is_file() else None,
    )
    path = output / REPORT_HTML
    write_text(path, page)
    return path
