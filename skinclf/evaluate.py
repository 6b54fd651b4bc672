"""Evaluate a checkpoint: ``python -m skinclf.evaluate ckpt=<path> [split=test | input=<folder|CSV>]``.

Writes the same files as the end of training (metrics.json with bootstrap intervals, predictions,
PR/ROC/reliability plots, the most confident errors) into its own output folder. The thresholds
of the operating points are chosen on the validation predictions stored in the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from skinclf.checkpoints import data_location, load_classifier, stored_run_info, stored_validation
from skinclf.config import CONFIG_PATH, register_configs
from skinclf.data.inputs import missing_paths, read_inputs
from skinclf.data.splits import SPLITS, load_splits
from skinclf.data.transforms import eval_pipeline
from skinclf.errors import SkinclfError, examples, exit_on_user_error
from skinclf.evaluation.bootstrap import BootstrapSettings
from skinclf.evaluation.metrics import summary_line
from skinclf.evaluation.outputs import write_evaluation
from skinclf.inference import inference_trainer, predict_images
from skinclf.schema import validate


def run_split(checkpoint: dict, split: str, data_root: str | None) -> tuple[Path, pd.DataFrame]:
    """(root, table) of a split of the run that wrote the checkpoint."""
    if split not in SPLITS:
        raise SkinclfError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    location = data_location(checkpoint)
    if location is None:
        raise SkinclfError("the checkpoint does not record its data root: pass input=<folder or CSV> instead")
    root, split_dir = location
    if data_root:
        root = Path(data_root).expanduser()
    tables, _ = load_splits(split_dir)
    return root, tables[split]


@hydra.main(config_path=CONFIG_PATH, config_name="evaluate", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    validate(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    model, checkpoint = load_classifier(cfg.ckpt)
    if cfg.input:
        root, table = read_inputs(cfg.input, cfg.root)
        evaluated_on = str(cfg.input)
        if "label" not in table.columns:
            raise SkinclfError(
                f"{cfg.input} has no labels: evaluate needs benign/ and malignant/ subfolders or a label column; "
                "use skinclf.predict for unlabelled images"
            )
    else:
        root, table = run_split(checkpoint, cfg.split, cfg.data_root)
        evaluated_on = f"{cfg.split} split"
    missing = missing_paths(root, table)
    if missing:
        raise SkinclfError(
            f"{len(missing)} image(s) to evaluate are not under {root}, e.g. {examples(missing, 3)}: "
            "pass root=<folder the paths are relative to> (or data_root= for a run's split)"
        )
    validation = stored_validation(checkpoint)
    if validation is None:
        raise SkinclfError(
            f"{cfg.ckpt} holds no validation predictions to choose thresholds on: evaluate the checkpoint "
            "that training chose (see run.checkpoint in its metrics.json)"
        )
    trainer = inference_trainer(cfg.accelerator, cfg.precision)
    evaluated = predict_images(trainer, model, root, table, cfg.batch_size, cfg.num_workers)
    hparams = model.hparams
    run_info = {
        "arch": hparams.arch,
        "weights": hparams.weights,
        **stored_run_info(checkpoint),
        "checkpoint": str(Path(cfg.ckpt).resolve()),
        "evaluated_on": evaluated_on,
    }
    metrics = write_evaluation(
        run_dir,
        {"val": validation, "test": evaluated},
        list(cfg.target_recalls),
        BootstrapSettings(**cfg.bootstrap),
        run_info,
        images=(root, eval_pipeline(hparams.resize_size, hparams.crop_size)),
    )
    print(f"{evaluated_on}: {summary_line(metrics)}")
    print(f"output directory: {run_dir}")


register_configs()

if __name__ == "__main__":
    main()
