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

import dataclasses

from skinclf.artifact import Images, TrainedModel, load_model, table_images
from skinclf.commands.entry import command, output_folder
from skinclf.data.inputs import missing_paths, read_inputs
from skinclf.data.overlap import Hashed, Overlap, overlap
from skinclf.data.records import reads_tables
from skinclf.data.splits import SPLITS
from skinclf.errors import SkinclfError, examples
from skinclf.fitting.tracking import config_params
from skinclf.inference import Inference
from skinclf.metrics.figures import summary_line
from skinclf.metrics.transfer import transfer
from skinclf.results import evaluation_loggers, evaluation_step
from skinclf.schema import EvaluateConfig


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


@command("evaluate")
def main(settings: EvaluateConfig) -> None:
    folder = output_folder()
    model = load_model(settings.ckpt)
    evaluation = model.evaluation_settings(settings.evaluation)
    images = labelled_images(settings, model)
    trained_on = model.training_images()
    copies = training_copies(trained_on, images) if is_external(settings) else None
    if copies is not None and evaluation.exclude_training_duplicates and copies.evaluated:
        images = without(images, copies.evaluated)
    inference = Inference.of(settings.data, settings.trainer)
    run_root = settings.data.root if not is_external(settings) else None
    validation, chosen_on = model.operating_predictions(evaluation, inference, run_root)
    evaluated = model.predict(images, inference, evaluation.tta)
    info = {
        **model.run_info,
        "checkpoint": str(model.path.resolve()),
        "evaluated_on": images.described,
        "thresholds_chosen_on": chosen_on,
        "evaluation": dataclasses.asdict(evaluation),
        **({"tta": evaluation.tta} if evaluation.tta != "none" else {}),
    }
    loggers = evaluation_loggers(settings.logger, folder, config_params(settings))
    predictions = {"val": validation, "test": evaluated}

    def external(metrics: dict) -> dict:  # what an external evaluation adds to metrics.json
        overlap_record = copies.record(evaluation.exclude_training_duplicates)
        return {"overlap_with_training": overlap_record, "transfer": transfer(metrics, model.internal_run())}

    seen = model.seen(images.root, settings.explain, evaluation.tta)
    extend = external if copies is not None else None
    metrics = evaluation_step(
        folder, predictions, evaluation, info, seen, loggers, extend=extend, training=trained_on.table
    )
    print(f"{images.described}: {summary_line(metrics)}")
    print(f"output directory: {folder}  (report.html, metrics.json, report.md, pr_curve.png)")


if __name__ == "__main__":
    main()
