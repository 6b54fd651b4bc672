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

from skinclf.config.schema import EvaluateConfig
from skinclf.core.errors import SkinclfError, examples
from skinclf.data.image_sets import Images, table_images
from skinclf.data.inputs import missing_paths, read_inputs
from skinclf.data.records import reads_tables
from skinclf.data.splits import SPLITS
from skinclf.entry import command, trained_model
from skinclf.evaluation import Evaluation, evaluation_loggers
from skinclf.reports.summary import summary_line
from skinclf.tracking import config_params
from skinclf.trained import TrainedModel
from skinclf.trained.inference import Inference


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


@command("evaluate")
def main(settings: EvaluateConfig, run_folder: Path) -> None:
    model, evaluation = trained_model(settings)
    images = labelled_images(settings, model)
    external = is_external(settings)
    if evaluation.adapt != "none" and not external:
        raise SkinclfError(
            f"evaluation.adapt={evaluation.adapt} adapts a model to another clinic's images: name them with input= "
            "or a table, not a split of the model's own run"
        )
    inference = Inference.of(settings.data, settings.trainer)
    loggers = evaluation_loggers(settings.logger, run_folder, config_params(settings))
    run_root = settings.data.root if not external else None
    checkpoint = str(model.path.resolve())
    judged = Evaluation(model, evaluation, settings.explain, inference, loggers, run_root)
    metrics = judged.run(images, run_folder, external=external, checkpoint=checkpoint)
    print(f"{images.described}: {summary_line(metrics)}")
    print(f"run folder: {run_folder}  (report.html, metrics.json, report.md, pr_curve.png)")


if __name__ == "__main__":
    main()
