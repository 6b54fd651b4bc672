"""Benchmark: ``python -m skinclf.bench [any override of skinclf.train]``; see :mod:`skinclf.bench.measure`."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from skinclf.bench.measure import print_table, run_bench
from skinclf.cli import command
from skinclf.schema import BenchConfig


@command("bench")
def main(settings: BenchConfig) -> None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    print_table(run_bench(settings, output_dir))
    print(f"\nwrote {output_dir / 'bench.json'}")


if __name__ == "__main__":
    main()
