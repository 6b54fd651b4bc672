"""Predict: ``python -m skinclf.predict ckpt=<checkpoint | ensemble folder> input=<image | folder | CSV>``.

Writes predictions.csv into its output folder, one row per image: path, probability of malignancy,
the decision at each operating point (the threshold chosen on validation for each of
``evaluation.target_recalls``, or ``threshold=`` alone), and why an image could not be read, if
so; unreadable images do not stop the run. An ensemble (a folder written by skinclf.ensemble)
predicts with every member and combines them as it was evaluated.
"""

from __future__ import annotations

from pathlib import Path

from skinclf.config.schema import PredictConfig
from skinclf.core.atomic import atomic_path
from skinclf.core.errors import SkinclfError
from skinclf.data.image_sets import Images, table_images
from skinclf.data.inputs import read_inputs
from skinclf.data.records import reads_tables
from skinclf.entry import command, trained_model
from skinclf.metrics.decisions import policy_at, what_decides, with_decisions
from skinclf.metrics.shift import set_alarm
from skinclf.trained.explain import Explainer, explain_images
from skinclf.trained.inference import Inference


def images_to_predict(settings: PredictConfig) -> Images:
    """An image, a folder or a CSV of paths (input=), or a dataset's table through the data group."""
    if reads_tables(settings.data):
        return table_images(settings.data, settings.input)
    if settings.input is None:
        raise SkinclfError("name the images: input=<image | folder | CSV>, or a table with data=table data.table=...")
    root, table = read_inputs(settings.input, settings.data.root)
    return Images(root, table, settings.input)


@command("predict")
def main(settings: PredictConfig, run_folder: Path) -> None:
    model, evaluation = trained_model(settings)
    inference = Inference.of(settings.data, settings.trainer)
    images = images_to_predict(settings)
    if settings.threshold is not None:
        policy = policy_at(settings.threshold, "given on the command line")
    else:
        policy, _ = model.decision_policy(evaluation, inference)
    predictions = with_decisions(model.predict(images, inference, evaluation.tta, True), policy)
    if settings.explain.enabled:
        explainer = Explainer(model.classifiers, settings.explain, evaluation.tta)
        explained = explain_images(explainer, images.root, images.table, model.preprocessing, run_folder)
        predictions["explanation"] = explained
    output = run_folder / "predictions.csv"
    with atomic_path(output) as partial:
        predictions.to_csv(partial, index=False)
    unreadable = int((predictions["error"] != "").sum())
    if policy.referral is not None:
        referred = int((predictions["refer"] == "true").sum())
        print(
            f"{referred} image(s) referred, to be decided by hand: near a decision and unusual, or unlike any image "
            f"the model knows ({policy.referral.rate:.0%} of its validation would be); the column unusual says where "
            "each image stands among the images it was checked on"
        )
    tta = f", evaluation.tta={evaluation.tta}" if evaluation.tta != "none" else ""
    calibration = ", calibrated by temperature" if policy.temperature is not None else ""
    chosen = policy.chosen_on if policy.rule == "given" else f"chosen on {policy.chosen_on}{tta}{calibration}"
    print(f"{len(predictions)} image(s), {unreadable} unreadable; thresholds {chosen}:")
    for name, threshold in policy.operating_points.items():
        malignant = int((predictions[f"decision_{name}"] == "malignant").sum())
        print(f"  {name.replace('_', ' ')}: threshold {threshold:.4f}, {malignant} malignant")
    for key, undecided in policy.undecided.items():
        print(f"  at recall {key}: {undecided.reason}: probabilities only, no decision")
    if policy.undecided:
        print(f"  to decide them, {what_decides(policy.rule, policy.undecided, policy.chosen_on).split(': ', 1)[1]}")
    if settings.explain.enabled:
        print(f"maps of where it looked ({settings.explain.method}): {run_folder / 'explanations'}")
    shift = set_alarm(model.validation(inference, evaluation.tta, settings.data.root), predictions)
    if shift is not None:
        print(f"{'warning' if shift.alarm else 'as a set'}: {shift.sentence()}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
