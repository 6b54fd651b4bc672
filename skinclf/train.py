"""Train, choose a checkpoint, evaluate it on test: ``python -m skinclf.train [overrides]``.

Examples::

    python -m skinclf.train data.root=/data/melanoma model=resnext50 aug=albu
    python -m skinclf.train -m experiment=r18_baseline,r18_albu,rx50_albu data.root=/data/melanoma
    python -m skinclf.train model=resnext50 aug=albu --cfg job     # print the composed config
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from skinclf.config.schema import TrainConfig
from skinclf.core.errors import SkinclfError, examples
from skinclf.entry import command
from skinclf.reports.summary import summary_line
from skinclf.runs import LEFT_OUT, read_run
from skinclf.training.run import train


def refuse_ddp_in_local_multirun(settings: TrainConfig) -> None:
    """DDP re-runs the command line to start its processes, which inside a local multirun re-runs the sweep."""
    hydra_cfg = HydraConfig.get()
    local_sweep = hydra_cfg.mode == RunMode.MULTIRUN and "BasicLauncher" in str(hydra_cfg.launcher.get("_target_"))
    if local_sweep and "ddp" in str(settings.trainer.strategy):
        raise SkinclfError(
            "trainer.strategy=ddp does not mix with a local multirun (-m): Lightning starts the other "
            "processes by re-running the command, sweep and all. Run the jobs one at a time, or sweep with "
            "hydra/launcher=submitit_slurm, which gives every job processes of its own."
        )


def objective(metrics: dict, key: str) -> float:
    """The run's figure for a sweeper: a validation figure of its metrics.json."""
    if not isinstance(metrics.get(key), float):
        figures = [k for k, v in metrics.items() if k.startswith("val/") and isinstance(v, float)]
        raise SkinclfError(
            f"objective={key} is not a validation figure of metrics.json: choose one of {examples(figures)}"
        )
    return metrics[key]


@command("train")
def main(settings: TrainConfig, run_folder: Path) -> float | None:
    """Run one training job; returns its objective (the validation AUPRC of the chosen checkpoint) to sweepers."""
    refuse_ddp_in_local_multirun(settings)
    metrics = train(settings, run_folder)
    if settings.trainer.fast_dev_run:
        print(f"trainer.fast_dev_run: training and validation ran; nothing is evaluated (run folder: {run_folder})")
    if not metrics:  # a DDP process other than rank 0, or a fast_dev_run
        return None
    print(f"{settings.name}: {summary_line(metrics)}")
    if settings.cv.leave_out:  # the run also judged the source it left out
        left_out = read_run(run_folder / LEFT_OUT).metrics
        print(f"{left_out['run']['evaluated_on']}: {summary_line(left_out)}")
    folders = [name for name in ("checkpoints/", "tensorboard/", "csv/") if (run_folder / name).is_dir()]
    print(f"run folder: {run_folder}  ({', '.join(['report.html', 'metrics.json', 'pr_curve.png', *folders])})")
    return objective(metrics, settings.objective)


if __name__ == "__main__":
    main()
