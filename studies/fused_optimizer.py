"""The optimizer step of skinclf's models, PyTorch's per-tensor loop against the fused kernel skinclf chooses.

    python studies/fused_optimizer.py --threads 1 2

Prints the milliseconds of one step (median of 20, after 3 warm-up steps) and their ratio, for each optimizer
and model. BENCHMARKS.md ("The optimizer step") records the result.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.models import get_model

#: The optimizers of conf/optim/, with their settings there.
OPTIMIZERS = {
    "Adam": (torch.optim.Adam, {}),
    "AdamW": (torch.optim.AdamW, {"weight_decay": 0.01}),
    "SGD": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
}


def step_ms(model: torch.nn.Module, optimizer_class: type, **kwargs: object) -> float:
    """Median milliseconds of one optimizer step over the model's parameters, gradients already there."""
    optimizer = optimizer_class(model.parameters(), lr=1e-3, **kwargs)
    times = []
    for i in range(23):
        start = time.perf_counter()
        optimizer.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnext50_32x4d"])
    args = parser.parse_args()
    print("| model | optimizer | threads | per-tensor loop (ms) | fused (ms) | loop / fused |")
    print("|---|---|---|---|---|---|")
    for arch in args.models:
        model = get_model(arch, num_classes=1)
        for parameter in model.parameters():
            parameter.grad = torch.randn_like(parameter)
        for threads in args.threads:
            torch.set_num_threads(threads)
            for name, (optimizer_class, settings) in OPTIMIZERS.items():
                loop = step_ms(model, optimizer_class, foreach=False, **settings)
                fused = step_ms(model, optimizer_class, fused=True, **settings)
                print(f"| {arch} | {name} | {threads} | {loop:.1f} | {fused:.1f} | {loop / fused:.1f} |", flush=True)


if __name__ == "__main__":
    main()
