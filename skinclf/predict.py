"""Predict: ``python -m skinclf.predict ckpt=<path> input=<image|folder|CSV> output=<csv>``.

Writes one row per image: path, probability of malignancy, the decision at the operating point
chosen on validation for ``target_recall`` (or at ``threshold``), and why an image could not be
read, if so; unreadable images do not stop the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from skinclf.atomic import atomic_path
from skinclf.cli import command
from skinclf.data.inputs import read_inputs
from skinclf.evaluation.diagnosis import PROBABILITY_PREFIX
from skinclf.evaluation.thresholds import threshold_for_recall
from skinclf.inference import inference_trainer, predict_images
from skinclf.schema import PredictConfig
from skinclf.training.checkpoints import load_classifier, validation_of


def decisions(predictions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The predictions with a decision per readable image; unreadable ones get no probability and no decision."""
    readable = predictions["error"] == ""
    predictions.loc[~readable, "probability"] = np.nan
    predictions["decision"] = np.where(
        readable, np.where(predictions["probability"] >= threshold, "malignant", "benign"), ""
    )
    per_diagnosis = [c for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)]
    columns = [
        "path",
        *(["label"] if "label" in predictions else []),
        "probability",
        *per_diagnosis,
        "decision",
        "error",
    ]
    return predictions[columns]


@command("predict")
def main(settings: PredictConfig) -> None:
    classifier, checkpoint = load_classifier(settings.ckpt)
    trainer = inference_trainer(settings.accelerator, settings.precision)
    if settings.threshold is not None:
        threshold, source = settings.threshold, "given on the command line"
    else:
        validation = validation_of(
            checkpoint, classifier, trainer, None, settings.batch_size, settings.num_workers, settings.tta
        )
        threshold = threshold_for_recall(validation, settings.target_recall)
        tta = f", tta={settings.tta}" if settings.tta != "none" else ""
        source = f"chosen on validation for recall >= {settings.target_recall:g}{tta}"
    root, table = read_inputs(settings.input, settings.root)
    predictions = predict_images(
        trainer,
        classifier,
        root,
        table,
        settings.batch_size,
        settings.num_workers,
        tolerate_unreadable=True,
        views=settings.tta,
    )
    predictions = decisions(predictions, threshold)
    output = Path(settings.output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as partial:
        predictions.to_csv(partial, index=False)
    decided = predictions["decision"]
    n_malignant, n_unreadable = int((decided == "malignant").sum()), int((decided == "").sum())
    print(
        f"{len(predictions)} image(s): {n_malignant} malignant, {len(predictions) - n_malignant - n_unreadable} "
        f"benign, {n_unreadable} unreadable; threshold {threshold:.4f} ({source}) -> {output}"
    )


if __name__ == "__main__":
    main()
