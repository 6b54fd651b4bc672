"""Benchmark: ``python -m skinclf.bench [any override of skinclf.train]``; see :mod:`skinclf.speed.measure`, for
``bench.mode=prepare`` :mod:`skinclf.speed.prepare`, for ``bench.mode=serve`` :mod:`skinclf.speed.serving`."""

from __future__ import annotations

from pathlib import Path

from skinclf.commands.entry import command
from skinclf.schema import BenchConfig
from skinclf.speed.measure import print_table, run_bench
from skinclf.speed.prepare import print_prepare_table, run_prepare_bench
from skinclf.speed.serving import print_serve_table, run_serve_bench


@command("bench")
def main(settings: BenchConfig, run_folder: Path) -> None:
    if settings.bench.mode == "prepare":
        print_prepare_table(run_prepare_bench(settings, run_folder))
    elif settings.bench.mode == "serve":
        print_serve_table(run_serve_bench(settings, run_folder))
    else:
        print_table(run_bench(settings, run_folder))
    print(f"\nwrote {run_folder / 'bench.json'}")
