"""Benchmark: ``python -m skinclf.bench [any override of skinclf.train]``.

Measures, in one run and with the model, batch and data of the composed training config:

(a) the input pipeline alone, images per second of decoding + augmentation, from the JPEG files
    and from the uint8 cache, at several worker counts;
(b) the model step alone on a batch already on the device: the ceiling;
(c) the full training loop through Lightning, and the bare PyTorch loop of
    :mod:`skinclf.bench.bare_loop` over the same loader;

then prints a table and writes bench.json with the ratios, the device, the library versions and
the peak host memory.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from skinclf.bench.bare_loop import bare_loop, model_step_ceiling
from skinclf.bench.timing import Stopwatch, machine_facts, peak_host_memory_mb
from skinclf.builders import build_datamodule, build_model, build_trainer
from skinclf.config import CONFIG_PATH, register_configs
from skinclf.data.dataset import LesionDataset
from skinclf.errors import exit_on_user_error

log = logging.getLogger(__name__)


def pipeline_throughput(dataset: LesionDataset, batch_size: int, workers: int, batches: int) -> float:
    """Images per second the loader delivers, after a first batch that starts the workers."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    watch = Stopwatch(torch.device("cpu"))
    seen = 0
    for index, batch in enumerate(loader):
        if index == 0:
            watch.start()
            continue
        seen += len(batch["image"])
        if index == batches:
            break
    return seen / watch.stop()


class Throughput(pl.Callback):
    """Images per second of the training batches after the first ``warmup`` ones."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup = warmup
        self.watch = Stopwatch(device)
        self.images = 0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: dict, index: int) -> None:
        if index == self.warmup:
            self.watch.start()

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: object, batch: dict, index: int
    ) -> None:
        if index >= self.warmup:
            self.images += len(batch["image"])
            if index == trainer.num_training_batches - 1:
                self.watch.stop()

    @property
    def images_per_second(self) -> float:
        return self.images / self.watch.seconds


def lightning_loop(cfg: DictConfig, datamodule: pl.LightningDataModule, device: torch.device) -> float:
    """Images per second of trainer.fit with the run's own module, callbacks and logger."""
    bench = cfg.bench
    timed = copy.deepcopy(cfg)
    with tempfile.TemporaryDirectory() as run_dir:
        OmegaConf.update(timed, "trainer.max_epochs", 1)
        OmegaConf.update(timed, "trainer.limit_train_batches", bench.warmup_batches + bench.batches, force_add=True)
        OmegaConf.update(timed, "trainer.limit_val_batches", 0, force_add=True)
        OmegaConf.update(timed, "trainer.num_sanity_val_steps", 0, force_add=True)
        trainer, checkpoints = build_trainer(timed, Path(run_dir))
        meter = Throughput(bench.warmup_batches, device)
        # no validation runs, so no checkpoint to keep; everything else is as in training
        trainer.callbacks = [c for c in trainer.callbacks if c not in checkpoints.values()] + [meter]
        trainer.fit(build_model(timed), datamodule=datamodule)
    return meter.images_per_second


def default_worker_counts() -> list[int]:
    """0, 1, 2, 4, ... up to the number of CPUs."""
    cpus = os.cpu_count() or 1
    return [0] + [2**k for k in range(cpus.bit_length()) if 2**k <= cpus]


def run_device(cfg: DictConfig) -> torch.device:
    accelerator = cfg.trainer.accelerator
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def print_table(results: dict) -> None:
    print(f"\nskinclf bench on {results['machine']['device']} ({results['config']})")
    print(f"{'measurement':<48}{'images/s':>12}")
    for row in results["pipeline"]:
        label = f"(a) pipeline, {row['source']}, {row['workers']} workers"
        print(f"{label:<48}{row['images_per_s']:>12.1f}")
    for key, label in (
        ("model_step", "(b) model step alone (ceiling)"),
        ("bare_loop", "(c') bare PyTorch loop"),
        ("lightning_loop", "(c) Lightning training loop"),
    ):
        print(f"{label:<48}{results['images_per_s'][key]:>12.1f}")
    for key, value in results["ratios"].items():
        print(f"{key:<48}{value:>12.3f}")
    print(f"peak host memory (MB): {results['peak_host_memory_mb']}")


@hydra.main(config_path=CONFIG_PATH, config_name="bench", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    bench = cfg.bench
    device = run_device(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    train_set = datamodule.datasets["train"]
    decoded = LesionDataset(train_set.root, train_set.table, train_set.transform)

    worker_counts = bench.worker_counts or default_worker_counts()
    pipeline = []
    for workers in worker_counts:
        for source, dataset in (("decode JPEG", decoded), ("uint8 cache", train_set)):
            if source == "uint8 cache" and train_set.cache is None:
                continue
            rate = pipeline_throughput(dataset, cfg.data.batch_size, workers, bench.pipeline_batches)
            pipeline.append({"source": source, "workers": workers, "images_per_s": rate})

    first_batch = next(iter(datamodule.train_dataloader()))
    rates = {
        "model_step": model_step_ceiling(
            build_model(cfg), first_batch, device, cfg.trainer.precision, bench.warmup_batches, bench.batches
        ),
        "bare_loop": bare_loop(
            build_model(cfg),
            datamodule.train_dataloader(),
            device,
            cfg.trainer.precision,
            bench.warmup_batches,
            bench.batches,
        ),
        "lightning_loop": lightning_loop(cfg, datamodule, device),
    }
    by_source = {(r["source"], r["workers"]): r["images_per_s"] for r in pipeline}
    ratios = {
        "lightning_loop / model_step": rates["lightning_loop"] / rates["model_step"],
        "lightning_loop / bare_loop": rates["lightning_loop"] / rates["bare_loop"],
    }
    for workers in worker_counts:
        if ("uint8 cache", workers) in by_source:
            ratios[f"cache / decode, {workers} workers"] = (
                by_source[("uint8 cache", workers)] / by_source[("decode JPEG", workers)]
            )
    results = {
        "machine": machine_facts(device),
        "config": (
            f"{cfg.model.arch}, batch {cfg.data.batch_size}, {cfg.data.resize_size}->{cfg.data.crop_size} px, "
            f"aug {cfg.aug.name}, precision {cfg.trainer.precision}, {cfg.data.num_workers} loader workers, "
            f"{len(train_set)} training images"
        ),
        "pipeline": pipeline,
        "images_per_s": rates,
        "ratios": ratios,
        "peak_host_memory_mb": peak_host_memory_mb(),
        "cache_mb": train_set.cache.data_path.stat().st_size / 1e6 if train_set.cache else None,
    }
    (output_dir / "bench.json").write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwrote {output_dir / 'bench.json'}")


register_configs()

if __name__ == "__main__":
    main()
