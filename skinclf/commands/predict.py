"""Predict: ``python -m skinclf.predict ckpt=<checkpoint | ensemble folder> input=<image | folder | CSV>``.

Writes predictions.csv into its output folder, one row per image: path, probability of malignancy,
the decision at each operating point (the threshold chosen on validation for each of
``evaluation.target_recalls``, or ``threshold=`` alone), and why an image could not be read, if
so; unreadable images do not stop the run. An ensemble (a folder written by skinclf.ensemble)
predicts with every member and combines them as it was evaluated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skinclf.artifact import Images, load_model, table_images
from skinclf.atomic import atomic_path
from skinclf.commands.entry import command, output_folder
from skinclf.data.inputs import read_inputs
from skinclf.data.records import reads_tables
from skinclf.errors import SkinclfError
from skinclf.explain import Explainer, explain_images
from skinclf.inference import Inference
from skinclf.metrics.calibration import calibrate
from skinclf.metrics.diagnosis import PROBABILITY_PREFIX
from skinclf.metrics.thresholds import thresholds_for_recalls
from skinclf.schema import PredictConfig


def decisions(predictions: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """The predictions with a decision column per threshold (``decision_<name>``: malignant or benign); unreadable
    images get no probability and no decision."""
    readable = predictions["error"] == ""
    predictions.loc[~readable, "probability"] = np.nan
    for name, threshold in thresholds.items():
        decided = np.where(predictions["probability"] >= threshold, "malignant", "benign")
        predictions[f"decision_{name}"] = np.where(readable, decided, "")
    per_diagnosis = [c for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)]
    columns = [
        "path",
        *(["label"] if "label" in predictions else []),
        "probability",
        *per_diagnosis,
        *(f"decision_{name}" for name in thresholds),
        "error",
    ]
    return predictions[columns]


def images_to_predict(settings: PredictConfig) -> Images:
    """An image, a folder or a CSV of paths (input=), or a dataset's table through the data group."""
    if reads_tables(settings.data):
        return table_images(settings.data, settings.input)
    if settings.input is None:
        raise SkinclfError("name the images: input=<image | folder | CSV>, or a table with data=table data.table=...")
    root, table = read_inputs(settings.input, settings.data.root)
    return Images(root, table, settings.input)


@command("predict")
def main(settings: PredictConfig) -> None:
    folder = output_folder()
    model = load_model(settings.ckpt)
    evaluation = model.evaluation_settings(settings.evaluation)
    inference = Inference.of(settings.data, settings.trainer)
    images = images_to_predict(settings)
    predictions = model.predict(images, inference, evaluation.tta, True)
    if settings.threshold is not None:
        thresholds = {f"at_{settings.threshold:g}": settings.threshold}
        source = "given on the command line"
    else:
        validation, chosen_on = model.operating_predictions(evaluation, inference)
        if evaluation.calibration == "temperature":
            fitted_on = f"the predictions thresholds are chosen on ({chosen_on})"
            _, validation, others = calibrate(validation, {"new": predictions}, model.malignant_diagnoses, fitted_on)
            predictions = others["new"]
        thresholds = {
            f"at_recall_{recall}": threshold
            for recall, threshold in thresholds_for_recalls(validation, evaluation.target_recalls).items()
        }
        tta = f", evaluation.tta={evaluation.tta}" if evaluation.tta != "none" else ""
        calibration = ", calibrated by temperature" if evaluation.calibration == "temperature" else ""
        source = f"chosen on {chosen_on}{tta}{calibration}"
    predictions = decisions(predictions, thresholds)
    if settings.explain.enabled:
        explainer = Explainer(model.classifiers, settings.explain, evaluation.tta)
        predictions["explanation"] = explain_images(explainer, images.root, images.table, model.preprocessing, folder)
    output = folder / "predictions.csv"
    with atomic_path(output) as partial:
        predictions.to_csv(partial, index=False)
    unreadable = int((predictions["error"] != "").sum())
    print(f"{len(predictions)} image(s), {unreadable} unreadable; thresholds {source}:")
    for name, threshold in thresholds.items():
        malignant = int((predictions[f"decision_{name}"] == "malignant").sum())
        print(f"  {name.replace('_', ' ')}: threshold {threshold:.4f}, {malignant} malignant")
    if settings.explain.enabled:
        print(f"maps of where it looked ({settings.explain.method}): {folder / 'explanations'}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
