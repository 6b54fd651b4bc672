"""Evaluate a checkpoint: ``python -m skinclf.evaluate ckpt=<path> [input=test | val | train | <folder|CSV>]``.

Writes the same files as the end of training (metrics.json with bootstrap intervals, predictions,
PR/ROC/reliability plots, the most confident errors) into its own output folder. The thresholds
of the operating points are chosen on the checkpoint's validation predictions.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig

from skinclf.cli import command
from skinclf.data.inputs import missing_paths, read_inputs
from skinclf.data.splits import SPLITS
from skinclf.errors import SkinclfError, examples
from skinclf.evaluation.metrics import summary_line
from skinclf.inference import checkpoint_pipeline, inference_trainer, predict_images
from skinclf.results import error_images, write_results
from skinclf.schema import EvaluateConfig
from skinclf.training.checkpoints import load_classifier, run_split, stored_run_info, validation_of
from skinclf.training.tracking import config_params, log_evaluation


def labelled_input(settings: EvaluateConfig, checkpoint: dict) -> tuple[Path, pd.DataFrame, str]:
    """(root, table with labels, what it is) of the images to evaluate."""
    if settings.input in SPLITS:
        root, table = run_split(checkpoint, settings.input, settings.root)
        described = f"{settings.input} split"
    else:
        root, table = read_inputs(settings.input, settings.root)
        described = settings.input
        if "label" not in table.columns:
            raise SkinclfError(
                f"{settings.input} has no labels: evaluate needs benign/ and malignant/ subfolders or a label "
                "column; use skinclf.predict for unlabelled images"
            )
    missing = missing_paths(root, table)
    if missing:
        raise SkinclfError(
            f"{len(missing)} image(s) to evaluate are not under {root}, e.g. {examples(missing, 3)}: "
            "pass root=<the folder the paths are relative to, or the data root if it moved>"
        )
    return root, table, described


@command("evaluate")
def main(settings: EvaluateConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    classifier, checkpoint = load_classifier(settings.ckpt)
    root, table, described = labelled_input(settings, checkpoint)
    trainer = inference_trainer(settings.accelerator, settings.precision)
    run_root = settings.root if settings.input in SPLITS else None
    tta = settings.evaluation.tta
    validation = validation_of(
        checkpoint, classifier, trainer, run_root, settings.batch_size, settings.num_workers, tta
    )
    evaluated = predict_images(trainer, classifier, root, table, settings.batch_size, settings.num_workers, views=tta)
    hparams = classifier.hparams
    info = {
        "arch": hparams.arch,
        "weights": hparams.weights,
        **stored_run_info(checkpoint),
        "checkpoint": str(Path(settings.ckpt).resolve()),
        "evaluated_on": described,
        **({"tta": tta} if tta != "none" else {}),
    }
    errors = error_images(root, checkpoint_pipeline(classifier), evaluated)
    predictions = {"val": validation, "test": evaluated}
    metrics = write_results(run_dir, predictions, settings.evaluation, info, errors)
    log_evaluation(settings.logger, config_params(settings), metrics, predictions, errors, run_dir)
    print(f"{described}: {summary_line(metrics)}")
    print(f"output directory: {run_dir}")


if __name__ == "__main__":
    main()
