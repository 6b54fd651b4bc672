"""Train, pick a checkpoint on validation, evaluate on test: ``python -m skinclf.train [overrides]``.

Examples::

    python -m skinclf.train data.root=/data/melanoma model=resnext50 aug=albu
    python -m skinclf.train -m experiment=r18_baseline,r18_albu,rx50_albu data.root=/data/melanoma
    python -m skinclf.train model=resnext50 aug=albu --cfg job     # print the composed config
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from skinclf.builders import CHECKPOINT_CHOICES, build_datamodule, build_model, build_trainer, chosen_checkpoint
from skinclf.checkpoints import load_classifier, store_validation
from skinclf.config import CONFIG_PATH, register_resolvers
from skinclf.errors import SkinclfError, exit_on_user_error
from skinclf.evaluation.bootstrap import BootstrapSettings
from skinclf.evaluation.metrics import summary_line
from skinclf.evaluation.outputs import predict_dataset, write_evaluation


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Fit, evaluate the chosen checkpoint on val and test, write the run's files into run_dir."""
    if cfg.checkpoint.select not in CHECKPOINT_CHOICES:
        raise SkinclfError(f"checkpoint.select={cfg.checkpoint.select!r} is not one of {', '.join(CHECKPOINT_CHOICES)}")
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    trainer, checkpoints = build_trainer(cfg, run_dir)
    trainer.fit(torch.compile(model) if cfg.speed.compile else model, datamodule=datamodule)

    ckpt_path = chosen_checkpoint(checkpoints, cfg.checkpoint.select)
    chosen, _ = load_classifier(ckpt_path)
    predictions = {
        "val": predict_dataset(trainer, chosen, datamodule.val_dataloader()),
        "test": predict_dataset(trainer, chosen, datamodule.test_dataloader()),
    }
    run_info = {
        "name": cfg.name,
        "arch": cfg.model.arch,
        "weights": cfg.model.weights,
        "aug": cfg.aug.name,
        "seed": cfg.seed,
    }
    store_validation(ckpt_path, predictions["val"], run_info)
    return write_evaluation(
        run_dir,
        predictions,
        list(cfg.evaluation.target_recalls),
        BootstrapSettings(**cfg.evaluation.bootstrap),
        {**run_info, "checkpoint": str(Path(ckpt_path).relative_to(run_dir)), "evaluated_on": "test split"},
        images=(datamodule.root, datamodule.eval_transform),
        logger=trainer.logger,
        step=trainer.global_step,
    )


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Run one training job; returns the validation AUPRC of the chosen checkpoint (for sweepers)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = train(cfg, run_dir)
    print(f"{cfg.name}: {summary_line(metrics)}")
    print(f"run directory: {run_dir}  (metrics.json, pr_curve.png, checkpoints/, tensorboard/)")
    return metrics["val/auprc"]


register_resolvers()

if __name__ == "__main__":
    main()
