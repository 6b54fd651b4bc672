"""What ``python -m skinclf.bench`` measures, with the model, batch and data of the composed training config:

(a) the input pipeline alone, images per second of decoding + augmentation, from the JPEG files
    and from the uint8 cache, at several worker counts;
(b) the model step alone on a batch already on the device: the ceiling;
(c) the full training loop through Lightning, and the bare PyTorch loop of
    :mod:`skinclf.benchmark.bare_loop` over the same loader;

with the ratios between them, the device, the library versions and the peak host memory. Speed
does not depend on the weights, so the models start from random weights (no download needed).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import tempfile
from pathlib import Path
from statistics import median

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

from skinclf.benchmark.bare_loop import Timing, bare_loop, endless, model_step_ceiling
from skinclf.benchmark.timing import Stopwatch, machine_facts, peak_host_memory_mb
from skinclf.config.schema import BenchConfig
from skinclf.core.atomic import write_json
from skinclf.core.machine import runs_on_gpu, usable_cpus
from skinclf.data.dataset import LesionDataset
from skinclf.models import LesionClassifier
from skinclf.training.builders import build_datamodule, build_model, build_trainer

log = logging.getLogger(__name__)


def pipeline_throughput(dataset: LesionDataset, batch_size: int, workers: int, batches: int) -> float:
    """Images per second the loader delivers over ``batches`` batches after a first one that starts the
    workers, reading on across epochs (a small set at a large batch holds fewer batches than that)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    if len(loader) == 0:
        raise ValueError(f"data.batch_size={batch_size} is larger than the {len(dataset)} training images")
    batches_read = endless(loader)
    next(batches_read)  # starts the workers
    watch = Stopwatch(torch.device("cpu"))
    watch.start()
    for _ in itertools.islice(batches_read, batches):
        pass
    return batches * batch_size / watch.stop()


class Throughput(pl.Callback):
    """Images per second over ``timed`` training batches after ``warmup`` ones, across epochs; then stops."""

    def __init__(self, warmup: int, timed: int, device: torch.device) -> None:
        self.warmup = warmup
        self.timed = timed
        self.watch = Stopwatch(device)
        self.batches = 0
        self.images = 0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: dict, index: int) -> None:
        if self.batches == self.warmup:
            self.watch.start()

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: object, batch: dict, index: int
    ) -> None:
        self.batches += 1
        if self.batches > self.warmup:
            self.images += len(batch["image"])
        if self.batches == self.warmup + self.timed:
            self.watch.stop()
            trainer.should_stop = True

    @property
    def images_per_second(self) -> float:
        return self.images / self.watch.seconds


def random_init_model(settings: BenchConfig) -> LesionClassifier:
    return build_model(settings, load_pretrained_weights=False)


def lightning_loop(settings: BenchConfig, datamodule: pl.LightningDataModule, device: torch.device) -> float:
    """Images per second of trainer.fit with the run's own module, callbacks and logger.

    Like the bare loop it runs on across epoch ends (without validation) until it has timed
    bench.batches batches.
    """
    bench = settings.bench
    batches_per_epoch = max(1, len(datamodule.train_dataloader()))
    epochs = math.ceil((bench.warmup_batches + bench.batches) / batches_per_epoch) + 1
    trainer_settings = dataclasses.replace(
        settings.trainer, max_epochs=epochs, limit_val_batches=0, num_sanity_val_steps=0
    )
    timed = dataclasses.replace(settings, trainer=trainer_settings)
    with tempfile.TemporaryDirectory() as run_folder:
        trainer, callbacks = build_trainer(timed, Path(run_folder))
        meter = Throughput(bench.warmup_batches, bench.batches, device)
        # no validation runs, so no checkpoint to keep and nothing for early stopping to watch; the rest as in training
        watching = [c for c in callbacks.values() if isinstance(c, ModelCheckpoint | EarlyStopping)]
        trainer.callbacks = [c for c in trainer.callbacks if c not in watching] + [meter]
        trainer.fit(random_init_model(timed), datamodule=datamodule)
    return meter.images_per_second


def default_worker_counts() -> list[int]:
    """0, 1, 2, 4, ... up to the number of CPUs."""
    cpus = usable_cpus()
    return [0] + [2**k for k in range(cpus.bit_length()) if 2**k <= cpus]


def run_device(settings: BenchConfig) -> torch.device:
    return torch.device("cuda" if runs_on_gpu(settings.trainer.accelerator) else "cpu")


def print_table(results: dict) -> None:
    print(f"\nskinclf bench on {results['machine']['device']} ({results['config']})")
    print(f"{'measurement':<48}{'images/s':>12}")
    for row in results["pipeline"]:
        label = f"(a) pipeline, {row['source']}, {row['workers']} workers"
        print(f"{label:<48}{row['images_per_s']:>12.1f}")
    for key, label in (
        ("model_step", "(b) model step alone (ceiling), median"),
        ("bare_loop", "(c') bare PyTorch loop, median"),
        ("lightning_loop", "(c) Lightning training loop, median"),
    ):
        print(f"{label:<48}{results['images_per_s'][key]:>12.1f}")
    for key, value in results["ratios"].items():
        print(f"{key:<48}{value:>12.3f}")
    print(f"peak host memory (MB): {results['peak_host_memory_mb']}")


def measure_pipeline(settings: BenchConfig, train_set: LesionDataset, worker_counts: list[int]) -> list[dict]:
    """(a): images per second from the JPEG files and from the cache, at each worker count."""
    decoded = LesionDataset(train_set.root, train_set.table, train_set.transform, train_set.decode)
    rows = []
    for workers in worker_counts:
        for source, dataset in (("decode JPEG", decoded), ("uint8 cache", train_set)):
            if source == "uint8 cache" and train_set.cache is None:
                continue
            rate = pipeline_throughput(dataset, settings.data.batch_size, workers, settings.bench.pipeline_batches)
            rows.append({"source": source, "workers": workers, "images_per_s": rate})
    return rows


def measure_loops(settings: BenchConfig, datamodule: pl.LightningDataModule, device: torch.device) -> list[dict]:
    """(b), (c') and (c), side by side in each of bench.rounds rounds, so that drift hits all three."""
    bench = settings.bench
    timing = Timing(device, settings.trainer.precision, bench.warmup_batches, bench.batches)
    first_batch = next(iter(datamodule.train_dataloader()))
    rounds = []
    for _ in range(bench.rounds):
        ceiling = model_step_ceiling(random_init_model(settings), first_batch, timing)
        bare = bare_loop(random_init_model(settings), datamodule.train_dataloader(), timing)
        rounds.append(
            {"model_step": ceiling, "bare_loop": bare, "lightning_loop": lightning_loop(settings, datamodule, device)}
        )
    return rounds


def ratios_of(pipeline: list[dict], rounds: list[dict]) -> dict[str, float]:
    """Per-round ratios of the loops (their median), and cache over decode at each worker count."""
    ratios = {
        "lightning_loop / model_step": median(r["lightning_loop"] / r["model_step"] for r in rounds),
        "lightning_loop / bare_loop": median(r["lightning_loop"] / r["bare_loop"] for r in rounds),
    }
    rates = {(row["source"], row["workers"]): row["images_per_s"] for row in pipeline}
    for source, workers in rates:
        if source == "uint8 cache":
            ratios[f"cache / decode, {workers} workers"] = rates[(source, workers)] / rates[("decode JPEG", workers)]
    return ratios


def run_bench(settings: BenchConfig, run_folder: Path) -> dict:
    """Every measurement; writes bench.json into run_folder and returns its contents."""
    device = run_device(settings)
    pl.seed_everything(settings.seed, workers=True)
    datamodule = build_datamodule(settings)
    datamodule.prepare_data()
    datamodule.setup("fit")
    train_set = datamodule.datasets["train"]
    data, sizes = settings.data, f"{settings.model.preprocessing.resize_size}->{settings.model.preprocessing.crop_size}"
    pipeline = measure_pipeline(settings, train_set, settings.bench.worker_counts or default_worker_counts())
    rounds = measure_loops(settings, datamodule, device)
    results = {
        "machine": machine_facts(device),
        "config": (
            f"{settings.model.arch}, batch {data.batch_size}, {sizes} px, "
            f"aug {settings.aug.name}, precision {settings.trainer.precision}, {data.num_workers} loader workers, "
            f"{len(train_set)} training images, {settings.bench.rounds} rounds of {settings.bench.batches} batches"
        ),
        "pipeline": pipeline,
        "images_per_s": {key: median(r[key] for r in rounds) for key in rounds[0]},
        "rounds": rounds,
        "ratios": ratios_of(pipeline, rounds),
        "peak_host_memory_mb": peak_host_memory_mb(),
        "cache_mb": train_set.cache.data_path.stat().st_size / 1e6 if train_set.cache else None,
    }
    write_json(run_folder / "bench.json", results)
    return results
