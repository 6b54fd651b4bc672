"""How far the test suite's training figures move across instruction sets, thread counts and seeds.

The tests that train ("it learns", the shared run) assert bands, not pinned floats: float kernels
differ between instruction sets (PyTorch's ATen kernels, oneDNN's convolutions, MKL's matrix
products) and with the number of threads (the order of reductions), and a short run at 32 px
turns a difference in the last bit into a different model. This study runs each of those tests'
configurations under each variant below and each seed, and prints every figure the tests assert,
with its range, so that each test's threshold can be set below the lowest value with a margin.

    python studies/machine_spread.py --seeds 0 1 2 --out spread.json

Takes about 30 minutes on 2 cores. BENCHMARKS.md ("What the tests' bands rest on") records the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from conftest import LEARNABLE_SPEC, command_line, small_table, synthetic_overrides, tiny  # noqa: E402
from test_metadata import METADATA, blank_table  # noqa: E402
from test_pretrained import lite0_overrides  # noqa: E402
from test_timm import SMALL  # noqa: E402

from skinclf.data.synthetic import ensure_synthetic_dataset  # noqa: E402

#: PyTorch's ATen kernels, oneDNN and MKL each choose their instruction set at run time; these cap them.
VARIANTS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse41": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "one_thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}


def shared_run(metrics: dict) -> dict[str, float]:
    return {key: metrics[key] for key in ("val/auroc", "test/auroc", "test/auprc")}


def diagnosis_figures(metrics: dict) -> dict[str, float]:
    per = metrics["diagnosis"]["per_diagnosis"]
    return {
        "lowest one-vs-rest auroc": min(f["auroc_one_vs_rest"] for f in per.values()),
        "balanced_accuracy": metrics["diagnosis"]["balanced_accuracy"],
        "test/auroc": metrics["test/auroc"],
    }


def test_auroc(metrics: dict) -> dict[str, float]:
    return {"test/auroc": metrics["test/auroc"], "test/auprc": metrics["test/auprc"]}


def configurations(folder: Path) -> dict[str, tuple[list[str], Callable[[dict], dict[str, float]]]]:
    """The overrides of each test that trains, as the tests give them, and what the test asserts of its metrics."""
    root = ensure_synthetic_dataset(folder / "learnable", LEARNABLE_SPEC)
    (folder / "metadata").mkdir(exist_ok=True)
    table = blank_table(folder / "metadata") if not (folder / "metadata" / "lesions.csv").exists() else None
    table = table or folder / "metadata" / "lesions.csv"
    metadata = [
        *("data=table", f"data.table={table}", f"data.images={folder / 'metadata' / 'images'}"),
        *("data.label_column=label", "data.near_duplicates=off", f"data.split_dir={folder / 'metadata' / 'splits'}"),
        *(
            "data.val_min_malignant=0",
            "model.weights=null",
            "trainer=cpu",
            "model.preprocessing.resize_size=16",
            "model.preprocessing.crop_size=16",
        ),
        *("data.batch_size=32", "data.num_workers=0", "trainer.max_epochs=5", "optim.lr=3e-3"),
        *("optim.warmup_epochs=1", "evaluation.bootstrap.resamples=0"),
        f"model.metadata_columns=[{','.join(METADATA)}]",
    ]
    return {
        "shared run (2 epochs at 32 px)": (tiny(root, "trainer.max_epochs=2"), shared_run),
        "short training (8 epochs at 40 px)": (
            [
                *synthetic_overrides(root),
                *("model.preprocessing.resize_size=45", "model.preprocessing.crop_size=40"),
                *("data.batch_size=32", "data.num_workers=0"),
                *("trainer.max_epochs=8", "optim.lr=1e-3", "optim.warmup_epochs=1"),
            ],
            test_auroc,
        ),
        "diagnosis (10 epochs at 48 px)": (
            small_table(
                folder / "diagnosis",
                400,
                300,
                48,
                *("task=diagnosis", "task.class_weights=balanced", "trainer.max_epochs=10", "optim.lr=2e-3"),
                "evaluation.bootstrap.resamples=0",
            ),
            diagnosis_figures,
        ),
        "timm (15 epochs at 32 px)": (
            tiny(root, "model=timm", f"model.arch={SMALL}", "model.weights=null", "trainer.max_epochs=15"),
            test_auroc,
        ),
        "metadata fusion (5 epochs)": (metadata, test_auroc),
        "Lite0 from ImageNet (2 epochs at 64 px)": (lite0_overrides(root, "pretrained"), test_auroc),
        "Lite0 from random init (2 epochs at 64 px)": (lite0_overrides(root, "null"), test_auroc),
        "Lite0 from ImageNet (1 epoch at 64 px)": (lite0_overrides(root, "pretrained", 1), test_auroc),
        "Lite0 from random init (1 epoch at 64 px)": (lite0_overrides(root, "null", 1), test_auroc),
    }


def run(overrides: list[str], seed: int, variant: dict[str, str], run_folder: Path) -> dict:
    environment = {**os.environ, **variant, "PYTHONWARNINGS": "ignore"}
    environment.pop("SKINCLF_DATA", None)
    command = command_line("train", *overrides, f"seed={seed}", f"hydra.run.dir={run_folder}")
    subprocess.run(command, env=environment, check=True, capture_output=True, timeout=1800)
    return json.loads((run_folder / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--only", nargs="*", default=None, help="names of configurations (a prefix) to run")
    parser.add_argument("--out", type=Path, default=Path("spread.json"))
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (overrides, figures) in configurations(Path(folder)).items():
            if args.only and not any(name.startswith(prefix) for prefix in args.only):
                continue
            for variant in args.variants:
                for seed in args.seeds:
                    run_folder = Path(folder) / "runs" / f"{len(results)}-{variant}-{seed}"
                    measured = figures(run(overrides, seed, VARIANTS[variant], run_folder))
                    results.setdefault(name, {})[f"{variant}, seed {seed}"] = measured
                    print(f"{name} | {variant} | seed {seed} | {json.dumps(measured)}", flush=True)
                    args.out.write_text(json.dumps(results, indent=2))
    for name, runs in results.items():
        print(f"\n{name}")
        for figure in next(iter(runs.values())):
            values = [r[figure] for r in runs.values()]
            seed0 = [r[figure] for key, r in runs.items() if key.endswith("seed 0")]
            print(
                f"  {figure}: {min(values):.3f} to {max(values):.3f} over all "
                f"({min(seed0):.3f} to {max(seed0):.3f} at seed 0 across variants)"
            )


if __name__ == "__main__":
    main()
