"""Wall-clock timing that waits for the accelerator, and the machine's facts for the record."""

from __future__ import annotations

import platform
import resource
import time
from importlib.metadata import version
from pathlib import Path

import torch

from skinclf.core.machine import usable_cpus


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished its queued work, so that timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Seconds between start() and stop(), synchronising the device at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.started = 0.0
        self.seconds = 0.0

    def start(self) -> None:
        synchronize(self.device)
        self.started = time.perf_counter()

    def stop(self) -> float:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self.started
        return self.seconds


def peak_host_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest child (DataLoader workers), in MB."""
    to_mb = 1 / 1024  # ru_maxrss is in kilobytes on Linux
    return {
        "main_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_mb,
        "largest_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_mb,
    }


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else its architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_facts(device: torch.device) -> dict[str, object]:
    """Device, CPU and library versions of a benchmark run."""
    facts: dict[str, object] = {
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_cores": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["cuda"] = torch.version.cuda
    facts["versions"] = {
        name: version(name)
        for name in ("torch", "torchvision", "pytorch-lightning", "albumentations", "numpy", "pillow")
    }
    return facts
