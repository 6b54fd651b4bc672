"""Predict: ``python -m skinclf.predict ckpt=<path> input=<image|folder|CSV> output=<csv>``.

Writes one row per image: path, probability of malignancy, the decision at the operating point
chosen on validation for ``target_recall`` (or at ``threshold``), and why an image could not be
read, if so; unreadable images do not stop the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from skinclf.atomic import atomic_path
from skinclf.checkpoints import load_classifier, stored_validation, threshold_for_recall
from skinclf.config import CONFIG_PATH, register_configs
from skinclf.data.inputs import read_inputs
from skinclf.errors import SkinclfError, exit_on_user_error
from skinclf.inference import inference_trainer, predict_images
from skinclf.schema import validate

log = logging.getLogger(__name__)


def decision_threshold(checkpoint: dict, target_recall: float, threshold: float | None) -> tuple[float, str]:
    """The threshold to decide with, and where it comes from."""
    if threshold is not None:
        return float(threshold), "given on the command line"
    validation = stored_validation(checkpoint)
    if validation is None:
        raise SkinclfError(
            "the checkpoint holds no validation predictions to choose a threshold on: pass threshold=<value>, "
            "or use the checkpoint that training chose (see run.checkpoint in its metrics.json)"
        )
    chosen = threshold_for_recall(validation, target_recall)
    return chosen, f"chosen on validation for recall >= {target_recall:g}"


@hydra.main(config_path=CONFIG_PATH, config_name="predict", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    validate(cfg)
    model, checkpoint = load_classifier(cfg.ckpt)
    threshold, source = decision_threshold(checkpoint, cfg.target_recall, cfg.threshold)
    root, table = read_inputs(cfg.input, cfg.root)
    if cfg.flip_tta:
        model.flip_tta = True
        log.warning("flip_tta: the validation threshold was chosen without flips; decisions may shift slightly")
    trainer = inference_trainer(cfg.accelerator, cfg.precision)
    predictions = predict_images(trainer, model, root, table, cfg.batch_size, cfg.num_workers, tolerate_unreadable=True)
    readable = predictions["error"] == ""
    predictions.loc[~readable, "probability"] = np.nan
    predictions["decision"] = np.where(
        readable, np.where(predictions["probability"] >= threshold, "malignant", "benign"), ""
    )
    columns = ["path", *(["label"] if "label" in predictions else []), "probability", "decision", "error"]
    predictions = predictions[columns]
    output = Path(cfg.output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as partial:
        predictions.to_csv(partial, index=False)
    n_malignant = int((predictions["decision"] == "malignant").sum())
    print(
        f"{len(predictions)} image(s): {n_malignant} malignant, {int(readable.sum()) - n_malignant} benign, "
        f"{int((~readable).sum())} unreadable; threshold {threshold:.4f} ({source}) -> {output}"
    )


register_configs()

if __name__ == "__main__":
    main()
