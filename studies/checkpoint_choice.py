"""Which checkpoint should a run evaluate? The study behind ``checkpoint.select``'s default.

Trains skinclf runs (the very training of ``python -m skinclf.train``) and, at the end of every
epoch, scores the current weights on the test split beside the validation figures the checkpoint
rules look at. Two weight averages are kept along: an EMA whose time constant is one epoch, and
the mean of the epoch-end weights of the second half of training (what Lightning's
WeightAveraging callbacks compute). One JSON line per run; ``--summary`` tabulates the rules.

    python studies/checkpoint_choice.py --seeds 0 1 2 --out results.jsonl -- data.root=<root> [overrides]
    python studies/checkpoint_choice.py --summary results.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from skinclf.config.resolvers import register_configs
from skinclf.config.schema import validate
from skinclf.metrics.curves import auroc, average_precision, rank
from skinclf.training.builders import build_datamodule, build_model, build_trainer


def test_scores(model: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
    """Test AUROC and AUPRC of a model's current weights, in eval mode."""
    was_training = model.training
    model.eval()
    scores, labels = [], []
    with torch.no_grad():
        for batch in loader:
            scores.append(model(batch["image"]).sigmoid())
            labels.append(batch["label"])
    model.train(was_training)
    ranked = rank(torch.cat(scores).numpy(), torch.cat(labels).numpy())
    return {"test_auroc": float(auroc(ranked)[0]), "test_auprc": float(average_precision(ranked)[0])}


class Probe(pl.Callback):
    """Records every epoch's validation figures and test scores, and keeps two weight averages."""

    def __init__(self, test_loader: DataLoader) -> None:
        self.test_loader = test_loader
        self.epochs: list[dict] = []
        self.ema: AveragedModel | None = None
        self.swa: AveragedModel | None = None

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        decay = 1 - 1 / trainer.num_training_batches  # a time constant of one epoch
        self.ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.swa = AveragedModel(module, use_buffers=True)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        self.ema.update_parameters(module)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        record = {
            "epoch": trainer.current_epoch,
            "val_auprc": float(metrics["val/auprc"]),
            "val_auroc": float(metrics["val/auroc"]),
            "val_loss": float(metrics["val/loss"]),
            **test_scores(module, self.test_loader),
        }
        self.epochs.append(record)
        if trainer.current_epoch >= trainer.max_epochs // 2:
            self.swa.update_parameters(module)

    def averages(self) -> dict[str, dict[str, float]]:
        return {
            "ema": test_scores(self.ema.module, self.test_loader),
            "swa": test_scores(self.swa.module, self.test_loader),
        }


def study_run(overrides: list[str]) -> dict:
    register_configs()
    with initialize_config_module(config_module="skinclf.conf", version_base="1.3"):
        cfg = validate(compose(config_name="train", overrides=overrides))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    probe = Probe(datamodule.test_dataloader())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_folder:
        trainer, _ = build_trainer(cfg, Path(run_folder))
        trainer.callbacks.append(probe)
        trainer.fit(build_model(cfg, load_pretrained_weights=True), datamodule=datamodule)
    return {
        "overrides": overrides,
        "seed": cfg.seed,
        "aug": cfg.aug.name,
        "max_epochs": cfg.trainer.max_epochs,
        "val_images": len(datamodule.datasets["val"]),
        "val_malignant": int(datamodule.datasets["val"].labels.sum()),
        "seconds": time.perf_counter() - started,
        "epochs": probe.epochs,
        "averages": probe.averages(),
    }


def rule_scores(run: dict) -> dict[str, float]:
    """Test AUROC of the checkpoint each rule would choose."""
    epochs = pd.DataFrame(run["epochs"])
    best_auprc = epochs.loc[epochs["val_auprc"].idxmax()]  # first of equals, as ModelCheckpoint keeps
    best_loss = epochs.loc[epochs["val_loss"].idxmin()]
    return {
        "best val AUPRC": best_auprc["test_auroc"],
        "best val loss": best_loss["test_auroc"],
        "last": epochs.iloc[-1]["test_auroc"],
        "EMA (1 epoch)": run["averages"]["ema"]["test_auroc"],
        "mean of 2nd-half epochs": run["averages"]["swa"]["test_auroc"],
        "oracle best epoch": epochs["test_auroc"].max(),
    }


def summary(paths: list[Path]) -> str:
    runs = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for run in runs:
        label = run.get("label") or Path(run["overrides"][0]).name
        rows.append({"setting": label, "aug": run["aug"], "epochs": run["max_epochs"], **rule_scores(run)})
    frame = pd.DataFrame(rows)
    keys = ["setting", "aug", "epochs"]
    lines = ["| " + " | ".join([*keys, "seeds", *frame.columns[3:]]) + " |", "|" + "---|" * (len(frame.columns) + 1)]
    for group_key, group in frame.groupby(keys, sort=False):
        cells = [
            f"{group[c].mean():.3f} ± {group[c].std(ddof=1) if len(group) > 1 else np.nan:.3f}"
            for c in frame.columns[3:]
        ]
        lines.append("| " + " | ".join([*map(str, group_key), str(len(group)), *cells]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--label", default="", help="the setting's name in the summary table")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--summary", type=Path, nargs="+")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.summary:
        print(summary(args.summary))
        return
    for seed in args.seeds:
        result = {"label": args.label, **study_run([*args.overrides, f"seed={seed}"])}
        with args.out.open("a") as out:
            out.write(json.dumps(result) + "\n")
        print(json.dumps({"seed": seed, **rule_scores(result)}), flush=True)


if __name__ == "__main__":
    main()
