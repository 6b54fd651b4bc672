"""Evaluate a trained model: ``python -m skinclf.evaluate ckpt=<checkpoint | ensemble folder> [input=...]``.

Writes the same files as the end of training (metrics.json with bootstrap intervals, predictions,
PR/ROC/reliability plots, the most confident errors) into its own output folder. The thresholds
of the operating points are chosen on the model's validation predictions, and the evaluation
settings are those it was made with, but for the keys the command line gives.
"""

from __future__ import annotations

import dataclasses

from skinclf.artifact import Images, TrainedModel, load_model
from skinclf.cli import command, output_folder
from skinclf.data.inputs import missing_paths, read_inputs
from skinclf.data.splits import SPLITS
from skinclf.errors import SkinclfError, examples
from skinclf.evaluation.metrics import summary_line
from skinclf.evaluation_step import evaluation_loggers, evaluation_step
from skinclf.inference import Inference, eval_transform
from skinclf.schema import EvaluateConfig
from skinclf.training.tracking import config_params


def labelled_images(settings: EvaluateConfig, model: TrainedModel) -> Images:
    """The images to evaluate, with their labels: a split of the model's run, or a labelled folder or CSV."""
    if settings.input in SPLITS:
        images = model.split(settings.input, settings.data.root)
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


@command("evaluate")
def main(settings: EvaluateConfig) -> None:
    folder = output_folder()
    model = load_model(settings.ckpt)
    evaluation = model.evaluation_settings(settings.evaluation)
    images = labelled_images(settings, model)
    inference = Inference.of(settings.data, settings.trainer)
    run_root = settings.data.root if settings.input in SPLITS else None
    validation = model.validation(inference, evaluation.tta, run_root)
    evaluated = model.predict(images, inference, evaluation.tta)
    info = {
        **model.run_info,
        "checkpoint": str(model.path.resolve()),
        "evaluated_on": images.described,
        "evaluation": dataclasses.asdict(evaluation),
        **({"tta": evaluation.tta} if evaluation.tta != "none" else {}),
    }
    loggers = evaluation_loggers(settings.logger, folder, config_params(settings))
    predictions = {"val": validation, "test": evaluated}
    shown = (images.root, eval_transform(model.preprocessing))
    metrics = evaluation_step(folder, predictions, evaluation, info, shown, loggers)
    print(f"{images.described}: {summary_line(metrics)}")
    print(f"output directory: {folder}")


if __name__ == "__main__":
    main()
