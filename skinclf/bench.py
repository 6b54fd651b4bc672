"""Benchmark: ``python -m skinclf.bench [any override of skinclf.train]``; see :mod:`skinclf.benchmark.measure`, for
``bench.mode=prepare`` :mod:`skinclf.benchmark.prepare`, for ``bench.mode=serve`` :mod:`skinclf.benchmark.serving`."""

from __future__ import annotations

from pathlib import Path

from skinclf.benchmark.measure import print_table, run_bench
from skinclf.benchmark.prepare import print_prepare_table, run_prepare_bench
from skinclf.benchmark.serving import print_serve_table, run_serve_bench
from skinclf.config.schema import BenchConfig
from skinclf.entry import command


@command("bench")
def main(settings: BenchConfig, run_folder: Path) -> None:
    if settings.bench.mode == "prepare":
        print_prepare_table(run_prepare_bench(settings, run_folder))
    elif settings.bench.mode == "serve":
        print_serve_table(run_serve_bench(settings, run_folder))
    else:
        print_table(run_bench(settings, run_folder))
    print(f"\nwrote {run_folder / 'bench.json'}")


if __name__ == "__main__":
    main()
