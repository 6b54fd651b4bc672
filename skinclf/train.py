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
from hydra.types import RunMode
from omegaconf import DictConfig

from skinclf.builders import build_datamodule, build_model, build_trainer, chosen_checkpoint, resume_checkpoint
from skinclf.checkpoints import load_classifier, store_validation
from skinclf.config import CONFIG_PATH, register_configs
from skinclf.errors import SkinclfError, exit_on_user_error
from skinclf.evaluation.bootstrap import BootstrapSettings
from skinclf.evaluation.metrics import summary_line
from skinclf.evaluation.outputs import predict_dataset, write_evaluation
from skinclf.inference import inference_trainer
from skinclf.schema import validate


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Fit (or continue fitting), then evaluate the chosen checkpoint on val and test.

    Writes the run's files into run_dir and returns its metrics; under DDP only the process of
    rank 0 evaluates and writes, the others return an empty dict.
    """
    validate(cfg)
    resume_from = resume_checkpoint(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, load_pretrained_weights=resume_from is None)
    trainer, checkpoints = build_trainer(cfg, run_dir)
    trainer.fit(torch.compile(model) if cfg.speed.compile else model, datamodule=datamodule, ckpt_path=resume_from)
    if not trainer.is_global_zero:
        return {}

    ckpt_path = chosen_checkpoint(checkpoints, cfg.checkpoint.select)
    chosen, _ = load_classifier(ckpt_path)
    predictor = inference_trainer(cfg.trainer.accelerator, cfg.trainer.precision)  # one device, even after DDP
    predictions = {
        "val": predict_dataset(predictor, chosen, datamodule.val_dataloader()),
        "test": predict_dataset(predictor, chosen, datamodule.test_dataloader()),
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


def refuse_ddp_in_local_multirun(cfg: DictConfig) -> None:
    """DDP re-runs the command line to start its processes, which inside a local multirun re-runs the sweep."""
    hydra_cfg = HydraConfig.get()
    local_sweep = hydra_cfg.mode == RunMode.MULTIRUN and "BasicLauncher" in str(hydra_cfg.launcher.get("_target_"))
    if local_sweep and "ddp" in str(cfg.trainer.strategy):
        raise SkinclfError(
            "trainer.strategy=ddp does not mix with a local multirun (-m): Lightning starts the other "
            "processes by re-running the command, sweep and all. Run the jobs one at a time, or sweep with "
            "hydra/launcher=submitit_slurm, which gives every job processes of its own."
        )


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Run one training job; returns the validation AUPRC of the chosen checkpoint (for sweepers)."""
    refuse_ddp_in_local_multirun(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = train(cfg, run_dir)
    if not metrics:  # a DDP process other than rank 0
        return None
    print(f"{cfg.name}: {summary_line(metrics)}")
    print(f"run directory: {run_dir}  (metrics.json, pr_curve.png, checkpoints/, tensorboard/)")
    return metrics["val/auprc"]


register_configs()

if __name__ == "__main__":
    main()
