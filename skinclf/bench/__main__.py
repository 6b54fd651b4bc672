"""Benchmark: ``python -m skinclf.bench [any override of skinclf.train]``; see :mod:`skinclf.bench.measure`."""

from __future__ import annotations

from skinclf.bench.measure import print_table, run_bench
from skinclf.cli import command, output_folder
from skinclf.schema import BenchConfig


@command("bench")
def main(settings: BenchConfig) -> None:
    output_dir = output_folder()
    print_table(run_bench(settings, output_dir))
    print(f"\nwrote {output_dir / 'bench.json'}")


if __name__ == "__main__":
    main()
