"""A bare PyTorch training loop: the yardstick the Lightning loop is compared with.

Same model, loss, optimizer (with its keyword arguments), learning-rate schedule stepped every
batch, data loader, precision and memory format as a skinclf run, and nothing else: no logging,
no callbacks, no progress bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from skinclf.benchmark.timing import Stopwatch
from skinclf.models import LesionClassifier

AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def endless(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches epoch after epoch: a small set at a large batch holds few batches an epoch."""
    while True:
        yield from loader


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context Lightning uses for a precision setting (none for 32-true)."""
    dtype = AUTOCAST_DTYPES.get(str(precision))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def train_steps(
    model: LesionClassifier, batches: Iterator[dict[str, torch.Tensor]], device: torch.device, precision: str
) -> Iterator[None]:
    """One optimizer and schedule step per batch, yielding after each.

    The optimizer and schedule are the module's own (``configure_optimizers`` builds them the same
    way), for a run of a thousand steps over ten epochs: where in the schedule it is changes no timing.
    """
    configured = model.optimizer_and_schedule(total_steps=1000, max_epochs=10)
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    scaler = torch.amp.GradScaler(device.type, enabled=str(precision) == "16-mixed")
    model.train()
    for batch in batches:
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with autocast(device, precision):
            loss = model.loss(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        yield


@dataclass(frozen=True)
class Timing:
    """Where and how steps are timed: the device and precision, and the untimed steps before the timed ones."""

    device: torch.device
    precision: str
    warmup: int
    timed: int


def images_per_second(
    model: LesionClassifier, batches: Iterator[dict[str, torch.Tensor]], batch_size: int, timing: Timing
) -> float:
    """Training throughput over ``timing.timed`` steps after ``timing.warmup`` untimed ones."""
    model = model.to(timing.device)
    if model.uses_channels_last():
        model.backbone.to(memory_format=torch.channels_last)
    steps = train_steps(model, batches, timing.device, timing.precision)
    for _ in range(timing.warmup):
        next(steps)
    watch = Stopwatch(timing.device)
    watch.start()
    for _ in range(timing.timed):
        next(steps)
    return timing.timed * batch_size / watch.stop()


def bare_loop(model: LesionClassifier, loader: DataLoader, timing: Timing) -> float:
    """Images per second of the bare loop over a real DataLoader."""
    return images_per_second(model, endless(loader), loader.batch_size, timing)


def model_step_ceiling(model: LesionClassifier, batch: dict[str, torch.Tensor], timing: Timing) -> float:
    """Images per second of the model step alone, on one batch already on the device."""
    on_device = {k: v.to(timing.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}

    def same_batch() -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield on_device

    return images_per_second(model, same_batch(), len(batch["image"]), timing)
