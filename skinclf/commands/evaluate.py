"""Evaluate a trained model: ``python -m skinclf.evaluate ckpt=<checkpoint | ensemble folder> [input=...] [data=...]``.

Writes the same files as the end of training (metrics.json with bootstrap intervals, predictions,
PR/ROC/reliability plots, the most confident errors, report.md) into its own output folder. The
images are a split of the model's run, a labelled folder or CSV, or a dataset's table read through
the data group as training reads it (``data=ham10000 data.table=... data.images=...``). The
thresholds of the operating points are chosen on the model's validation predictions (or on
``evaluation.threshold_source``), and the evaluation settings are those it was made with, but for
the keys the command line gives. On any images but the run's own, the evaluation is external: it
names the images the model trained on that it meets again, and says how the model transferred.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pytorch_lightning.loggers import Logger

from skinclf.artifact import Images, TrainedModel, table_images
from skinclf.commands.entry import command, trained_model
from skinclf.data.inputs import missing_paths, read_inputs
from skinclf.data.overlap import Hashed, Overlap, overlap
from skinclf.data.records import reads_tables
from skinclf.data.splits import SPLITS
from skinclf.errors import SkinclfError, examples
from skinclf.inference import Inference
from skinclf.metrics.figures import summary_line
from skinclf.metrics.transfer import transfer
from skinclf.models.adaptation import GUARD
from skinclf.results import RunRecord, evaluation_loggers, write_results
from skinclf.schema import EvaluateConfig, EvaluationSettings, ExplainSettings
from skinclf.tracking import config_params


def labelled_images(settings: EvaluateConfig, model: TrainedModel) -> Images:
    """The images to evaluate, with their labels: a table of the data group, a split of the model's run, or a
    labelled folder or CSV."""
    if reads_tables(settings.data):
        return table_images(settings.data, settings.input)
    if settings.input is None or settings.input in SPLITS:
        images = model.split(settings.input or "test", settings.data.root)
    else:
        root, table = read_inputs(settings.input, settings.data.root)
        images = Images(root, table, settings.input)
        if "label" not in table.columns:
            raise SkinclfError(
                f"{settings.input} has no labels: evaluate needs benign/ and malignant/ subfolders or a label "
                "column; use skinclf.predict for unlabelled images"
            )
    missing = missing_paths(images.root, images.table)
    if missing:
        raise SkinclfError(
            f"{len(missing)} image(s) to evaluate are not under {images.root}, e.g. {examples(missing, 3)}: "
            "pass data.root=<the folder the paths are relative to, or the data root if it moved>"
        )
    return images


def is_external(settings: EvaluateConfig) -> bool:
    """True for images other than the model's own run's splits."""
    return reads_tables(settings.data) or settings.input not in (None, *SPLITS)


def training_copies(training: Images, images: Images) -> Overlap:
    """The evaluated images that are copies of the images the model trained on."""
    return overlap(Hashed.of(images.root, images.table), Hashed.of(training.root, training.table))


def without(images: Images, paths: set[str]) -> Images:
    kept = images.table[~images.table["path"].isin(paths)].reset_index(drop=True)
    return Images(images.root, kept, f"{images.described}, without {len(paths)} copies of training images")


def adapted(
    model: TrainedModel, images: Images, evaluation: EvaluationSettings, inference: Inference, training: pd.DataFrame
) -> dict:
    """evaluation.adapt=batchnorm: the model's batch-norm statistics re-estimated on the images (in memory), and what
    metrics.json records of it."""
    before = model.predict(images, inference, evaluation.tta)["probability"].to_numpy()
    share = float(training["label"].mean())
    layers = model.adapt_batchnorm(images, inference, before, share)
    return {
        "method": "batchnorm",
        "layers": layers,
        "images": len(images.table),
        "training_malignant_share": share,
        "estimated_malignant_share": float(before.mean()),
        "guard": GUARD,
    }


def evaluate_model(
    model: TrainedModel,
    images: Images,
    evaluation: EvaluationSettings,
    inference: Inference,
    explain: ExplainSettings,
    loggers: list[Logger],
    run_folder: Path,
    external: bool,
    run_root: str | None = None,
    left_out: str | None = None,
) -> dict:
    """Evaluate the model on labelled images into run_folder, as training evaluates; an external evaluation (any images
    but its run's own splits) also names the images the model trained on that it meets again, says how it
    transferred, and may adapt it to them (evaluation.adapt); ``left_out``: the source a run left out, these being
    its images (cv.leave_out=source). Returns metrics.json's contents."""
    trained_on = model.training_images()
    copies = training_copies(trained_on, images) if external else None
    if copies is not None and evaluation.exclude_training_duplicates and copies.evaluated:
        images = without(images, copies.evaluated)
    policy, sample = model.decision_policy(evaluation, inference, run_root)
    adaptation = adapted(model, images, evaluation, inference, trained_on.table) if evaluation.adapt != "none" else None
    evaluated = model.predict(images, inference, evaluation.tta)
    record = RunRecord(model.identity, images.described, evaluation, policy, checkpoint=str(model.path.resolve()))

    def outside(metrics: dict) -> dict:  # what an external evaluation adds to metrics.json
        overlap_record = copies.record(evaluation.exclude_training_duplicates)
        added = {"overlap_with_training": overlap_record, "transfer": transfer(metrics, model.internal_run())}
        return {
            **added,
            **({"adaptation": adaptation} if adaptation is not None else {}),
            **({"left_out_source": left_out} if left_out is not None else {}),
        }

    return write_results(
        run_folder,
        record,
        {"val": sample, "test": evaluated},
        model.seen(images.root, explain, evaluation.tta),
        loggers,
        extend=outside if copies is not None else None,
        training=trained_on.table,
    )


@command("evaluate")
def main(settings: EvaluateConfig, run_folder: Path) -> None:
    model, evaluation = trained_model(settings)
    images = labelled_images(settings, model)
    if evaluation.adapt != "none" and not is_external(settings):
        raise SkinclfError(
            f"evaluation.adapt={evaluation.adapt} adapts a model to another clinic's images: name them with input= "
            "or a table, not a split of the model's own run"
        )
    inference = Inference.of(settings.data, settings.trainer)
    loggers = evaluation_loggers(settings.logger, run_folder, config_params(settings))
    run_root = settings.data.root if not is_external(settings) else None
    metrics = evaluate_model(
        model, images, evaluation, inference, settings.explain, loggers, run_folder, is_external(settings), run_root
    )
    print(f"{images.described}: {summary_line(metrics)}")
    print(f"run folder: {run_folder}  (report.html, metrics.json, report.md, pr_curve.png)")
