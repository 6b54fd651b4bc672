"""The GPU check: every figure BENCHMARKS.md's GPU section quotes, from one command (run by scripts/gpu_check.sh).

Runs, each as a command of its own with a time limit, and goes on when one fails:

1. the tests marked for a GPU (tests/test_gpu.py);
2. the bench commands of BENCHMARKS.md: ResNet18, ResNeXt50, EfficientNet-B4 at 384 px, ResNet18 compiled,
   EfficientNet-Lite0 at 128 px on a set of 20 batches an epoch and more;
3. the three-experiment reproduction at the reference's size on the synthetic 512 px data.

Writes gpu_check.json (every figure, each step's status, time and last lines) and gpu_check.md (the
tables for BENCHMARKS.md) into --output. ``--cpu`` runs the same steps on the CPU at tiny sizes, so that
the script itself is tested where there is no GPU (CI runs it so); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: Sizes for one H100/H200 within 8 minutes in all, and tiny ones for the CPU.
GPU_SIZES = {
    "trainer": ["trainer=gpu", "trainer.enable_progress_bar=false"],
    "bench": ["bench.rounds=3", "bench.batches=10", "bench.warmup_batches=3", "bench.worker_counts=[0,2,8,16]"],
    # the pipeline is timed at every worker count once, in the first bench; then at the loaders' own count
    "bench_workers_later": f"bench.worker_counts=[{min(8, len(os.sched_getaffinity(0)))}]",
    "reproduction": ["data=synthetic_512px"],
    "budget_s": 470,
}
CPU_SIZES = {
    "trainer": ["trainer=cpu", "trainer.enable_progress_bar=false"],
    "bench": [
        *("bench.rounds=1", "bench.batches=2", "bench.warmup_batches=1", "bench.pipeline_batches=2"),
        *("data=synthetic", "data.synthetic.n_train=48", "data.synthetic.n_test=16", "data.synthetic.image_size=48"),
        *("model.preprocessing.resize_size=36", "model.preprocessing.crop_size=32"),
        *("data.batch_size=8", "data.num_workers=0"),
        "bench.worker_counts=[0]",
    ],
    "bench_workers_later": "bench.worker_counts=[0]",
    # 160 training images: enough malignant ones in validation for the rule's 10 (issue 28's refusal)
    "reproduction": [
        *("data=synthetic", "data.synthetic.n_train=160", "data.synthetic.n_test=16", "data.synthetic.image_size=48"),
        *("model.preprocessing.resize_size=36", "model.preprocessing.crop_size=32"),
        *("data.batch_size=8", "data.num_workers=0"),
        *("trainer.max_epochs=1", "trainer.limit_train_batches=2", "evaluation.bootstrap.resamples=50"),
    ],
    "budget_s": 1200,
}

#: The bench commands of BENCHMARKS.md, as (name, overrides); random init: speed needs no weights.
BENCHES = [
    ("resnet18", ["model.weights=null", "data.batch_size=256"]),
    ("resnext50", ["model=resnext50", "model.weights=null", "data.batch_size=256"]),
    (
        "efficientnet_b4_384",
        [
            *("model=efficientnet_b4", "model.weights=null"),
            *("model.preprocessing.resize_size=416", "model.preprocessing.crop_size=384"),
            "data.batch_size=64",
        ],
    ),
    ("resnet18_compiled", ["model.weights=null", "data.batch_size=256", "speed.compile=true"]),
    # what the real-data studies train (issue 34), on a set of its own that holds 20 batches an epoch and more
    # (about 2,800 training images of 160 px), so that the loops are not starved at each epoch's start
    (
        "efficientnet_lite0_128",
        [
            *("model=efficientnet_lite0", "model.weights=null", "data.batch_size=128"),
            *("model.preprocessing.resize_size=146", "model.preprocessing.crop_size=128"),
            *("data=synthetic", "data.synthetic.n_train=3000", "data.synthetic.n_test=50"),
            "data.synthetic.image_size=160",
        ],
    ),
]


@dataclass
class Step:
    """One command of the check (at most limit_s seconds), what became of it and what it measured."""

    name: str
    command: list[str]
    limit_s: int
    status: str = "not run"
    seconds: float = 0.0
    tail: str = ""
    figures: dict = field(default_factory=dict)


def run(step: Step, timeout_s: int, environment: dict[str, str]) -> None:
    """Run the step's command, recording its status, time and last lines of output."""
    started = time.monotonic()
    try:
        done = subprocess.run(step.command, capture_output=True, text=True, timeout=timeout_s, env=environment)
        step.status = "ok" if done.returncode == 0 else f"failed (exit status {done.returncode})"
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as stopped:
        step.status = f"stopped after {timeout_s} s"
        output = (stopped.stdout or b"").decode(errors="replace") + (stopped.stderr or b"").decode(errors="replace")
    step.seconds = round(time.monotonic() - started, 1)
    step.tail = "\n".join(output.strip().splitlines()[-25:])
    print(f"{step.name}: {step.status} in {step.seconds} s", flush=True)


def skinclf(command: str, *overrides: str) -> list[str]:
    """``python -m skinclf.<command>`` with the overrides, a key given twice taking its last value (the sizes)."""
    last = {override.partition("=")[0]: override for override in overrides}
    return [sys.executable, "-m", f"skinclf.{command}", *last.values()]


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def bench_figures(folder: Path) -> dict:
    bench = json.loads((folder / "bench.json").read_text())
    return {"config": bench["config"], "images_per_s": bench["images_per_s"], "ratios": bench["ratios"]}


def reproduction_figures(folder: Path) -> dict:
    runs = {}
    for path in sorted(folder.glob("*_*/metrics.json")):
        metrics = json.loads(path.read_text())
        point = next(p for p in metrics["operating_points"] if p["target_recall"] == 0.99)
        runs[metrics["run"]["name"]] = {
            "test/auroc": metrics["test/auroc"],
            "test/auprc": metrics["test/auprc"],
            "test precision at the val threshold for recall 0.99": point["test/precision"],
            "test recall there": point["test/recall"],
        }
    return runs


def pytest_figures(tail: str) -> dict:
    return {"summary": tail.strip().splitlines()[-1] if tail.strip() else ""}


def steps(sizes: dict, output: Path) -> list[tuple[Step, Callable[[Step], dict]]]:
    """Each step, and how its figures are read once it has run: the first bench generates the data, the
    reproduction comes next, so that the compiled bench (the slowest to start) cannot starve it."""
    tests = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "tests/test_gpu.py"]
    planned: list[tuple[Step, Callable[[Step], dict]]] = [
        (Step("tests marked gpu", tests, 100), lambda step: pytest_figures(step.tail))
    ]
    benches = []
    for number, (name, overrides) in enumerate(BENCHES):
        folder = output / f"bench_{name}"
        later = [sizes["bench_workers_later"]] if number else []
        command = skinclf("bench", *sizes["trainer"], *overrides, *sizes["bench"], *later, f"hydra.run.dir={folder}")
        limit = 150 if not number else 90 if "compile" in str(overrides) else 60  # the first generates the data
        benches.append((Step(f"bench {name}", command, limit), lambda step, f=folder: bench_figures(f)))
    folder = output / "reproduction"
    command = skinclf(
        "train",
        "-m",
        "experiment=r18_baseline,r18_albu,rx50_albu",
        "model.weights=null",
        *sizes["reproduction"],
        *sizes["trainer"],
        f"hydra.sweep.dir={folder}",
    )
    reproduction = (Step("three-experiment reproduction", command, 150), lambda step: reproduction_figures(folder))
    return planned + benches[:1] + [reproduction] + benches[1:]


def markdown(report: dict) -> str:
    lines = [
        "# GPU check",
        "",
        f"Machine: {report['machine']}",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} |" for s in report["steps"]]
    lines += ["", "## Bench (images/s)", "", "| model | model step | bare loop | Lightning loop | Lightning / bare |"]
    lines += ["|---|---|---|---|---|"]
    for step in report["steps"]:
        if step["name"].startswith("bench") and step["figures"]:
            rates, ratios = step["figures"]["images_per_s"], step["figures"]["ratios"]
            lines.append(
                f"| {step['name'].removeprefix('bench ')} | {rates['model_step']:.0f} | {rates['bare_loop']:.0f} | "
                f"{rates['lightning_loop']:.0f} | {ratios['lightning_loop / bare_loop']:.2f} |"
            )
    for reproduction in (s for s in report["steps"] if s["name"] == "three-experiment reproduction"):
        lines += ["", f"## Reproduction ({reproduction['seconds']} s for the three)", ""]
        for name, figures in reproduction["figures"].items():
            lines.append(f"- {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if v is not None))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU: checks the script, not the speed")
    parser.add_argument("--output", type=Path, default=Path("gpu_check"))
    parser.add_argument("--only", nargs="+", default=[], help="run only the steps whose names hold one of these")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU here; pass --cpu to run the check at tiny sizes on the CPU")
    sizes = CPU_SIZES if args.cpu else GPU_SIZES
    output = args.output.absolute()
    output.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONWARNINGS": "ignore", "SKINCLF_CACHE": str(output / "data")}
    report = {"machine": machine(), "mode": "cpu, tiny sizes" if args.cpu else "gpu", "steps": []}
    deadline = time.monotonic() + sizes["budget_s"]
    for step, figures in steps(sizes, output):
        if args.only and not any(word in step.name for word in args.only):
            continue
        left = int(deadline - time.monotonic())
        if left < 10:
            step.status = "not run: the check's time was spent"
        else:  # on the CPU every step may take the time that is left; on a GPU each has its own limit
            run(step, left if args.cpu else min(step.limit_s, left), environment)
        if step.status == "ok":
            try:
                step.figures = figures(step)
            except (OSError, KeyError, ValueError) as error:
                step.status = f"ok, but its figures cannot be read: {error}"
        report["steps"].append(step.__dict__)
        (output / "gpu_check.json").write_text(json.dumps(report, indent=2))
    (output / "gpu_check.md").write_text(markdown(report))
    print(f"wrote {output / 'gpu_check.json'} and {output / 'gpu_check.md'}")
    sys.exit(0 if all(s["status"] == "ok" for s in report["steps"]) else 1)


if __name__ == "__main__":
    main()
