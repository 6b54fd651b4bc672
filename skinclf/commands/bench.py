"""Benchmark: ``python -m skinclf.bench [any override of skinclf.train]``; see :mod:`skinclf.speed.measure`, and
for ``bench.mode=prepare`` :mod:`skinclf.speed.prepare`."""

from __future__ import annotations

from skinclf.commands.entry import command, output_folder
from skinclf.schema import BenchConfig
from skinclf.speed.measure import print_table, run_bench
from skinclf.speed.prepare import print_prepare_table, run_prepare_bench


@command("bench")
def main(settings: BenchConfig) -> None:
    output_dir = output_folder()
    if settings.bench.mode == "prepare":
        print_prepare_table(run_prepare_bench(settings, output_dir))
    else:
        print_table(run_bench(settings, output_dir))
    print(f"\nwrote {output_dir / 'bench.json'}")


if __name__ == "__main__":
    main()
