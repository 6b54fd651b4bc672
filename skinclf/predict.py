"""Predict: ``python -m skinclf.predict ckpt=<checkpoint | ensemble folder> input=<image|folder|CSV> output=<csv>``.

Writes one row per image: path, probability of malignancy, the decision at the operating point
chosen on validation for ``target_recall`` (or at ``threshold``), and why an image could not be
read, if so; unreadable images do not stop the run. An ensemble (a folder written by
skinclf.ensemble) predicts with every member and combines them as it was evaluated, its threshold
chosen on its own validation predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl

from skinclf.atomic import atomic_path
from skinclf.cli import command
from skinclf.data.inputs import read_inputs
from skinclf.errors import SkinclfError
from skinclf.evaluation.diagnosis import PROBABILITY_PREFIX
from skinclf.evaluation.ensemble import combine, is_ensemble, read_ensemble
from skinclf.evaluation.thresholds import threshold_for_recall
from skinclf.inference import inference_trainer, predict_images
from skinclf.models import LesionClassifier
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


def predicted(
    classifier: LesionClassifier, settings: PredictConfig, trainer: pl.Trainer, root: Path, table: pd.DataFrame
) -> pd.DataFrame:
    """One classifier's predictions of the images, unreadable ones noted, with the views asked for."""
    batches = (settings.batch_size, settings.num_workers)
    return predict_images(trainer, classifier, root, table, *batches, tolerate_unreadable=True, views=settings.tta)


def checkpoint_predictions(
    settings: PredictConfig, trainer: pl.Trainer, root: Path, table: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A checkpoint's predictions of the images, and its validation predictions (None with a given threshold)."""
    classifier, checkpoint = load_classifier(settings.ckpt)
    validation = None
    if settings.threshold is None:
        validation = validation_of(
            checkpoint, classifier, trainer, None, settings.batch_size, settings.num_workers, settings.tta
        )
    return predicted(classifier, settings, trainer, root, table), validation


def ensemble_predictions(
    settings: PredictConfig, trainer: pl.Trainer, root: Path, table: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An ensemble's predictions of the images (every member's, combined), and its validation predictions."""
    ensemble = read_ensemble(Path(settings.ckpt).expanduser())
    views = sorted({m.tta for m in ensemble.members})
    if len(views) > 1:
        raise SkinclfError(
            f"the members of the ensemble {settings.ckpt} were evaluated with different test-time views "
            f"(tta={', '.join(views)}): make the ensemble of runs evaluated alike"
        )
    if views != [settings.tta]:
        raise SkinclfError(
            f"the ensemble {settings.ckpt} was evaluated with tta={views[0]}, and its thresholds were chosen on "
            f"those scores: pass tta={views[0]}"
        )
    per_member = [predicted(load_classifier(m.checkpoint)[0], settings, trainer, root, table) for m in ensemble.members]
    predictions = per_member[0].drop(columns=[c for c in per_member[0] if c.startswith(PROBABILITY_PREFIX)])
    probabilities = [p["probability"].to_numpy() for p in per_member]
    predictions["probability"] = combine(ensemble.members, probabilities, ensemble.rule)
    return predictions, ensemble.validation


@command("predict")
def main(settings: PredictConfig) -> None:
    trainer = inference_trainer(settings.accelerator, settings.precision)
    root, table = read_inputs(settings.input, settings.root)
    an_ensemble = is_ensemble(Path(settings.ckpt).expanduser())
    predict = ensemble_predictions if an_ensemble else checkpoint_predictions
    predictions, validation = predict(settings, trainer, root, table)
    if settings.threshold is not None:
        threshold, source = settings.threshold, "given on the command line"
    else:
        threshold = threshold_for_recall(validation, settings.target_recall)
        tta = f", tta={settings.tta}" if settings.tta != "none" else ""
        of = "the ensemble's " if an_ensemble else ""
        source = f"chosen on {of}validation for recall >= {settings.target_recall:g}{tta}"
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
