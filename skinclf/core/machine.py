"""What this machine offers a run: the CPUs this process may use, and whether a run lands on a GPU."""

from __future__ import annotations

import os

import torch


def usable_cpus() -> int:
    """The CPUs this process may run on: those of its affinity mask (taskset, a SLURM allocation, a
    container's cpuset), not every CPU of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def runs_on_gpu(accelerator: str) -> bool:
    """Whether trainer.accelerator puts the run on a CUDA GPU (auto: when there is one)."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
