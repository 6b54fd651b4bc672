"""Make (or check) the split CSVs without training: ``python -m skinclf.split data.root=<folder>``.

Composes the training config, so every override of ``skinclf.train`` applies, and writes
train.csv, val.csv and test.csv to ``data.split_dir`` (default ``<root>/splits``) just as training
would; existing CSVs are checked against the folder instead.
"""

from __future__ import annotations

from pathlib import Path

from skinclf.config.schema import TrainConfig
from skinclf.entry import command
from skinclf.training.builders import build_datamodule


@command("split")
def main(settings: TrainConfig, run_folder: Path) -> None:
    datamodule = build_datamodule(settings)
    datamodule.prepare_data()
    for name, table in datamodule.tables.items():
        csv = datamodule.split_dir / f"{name}.csv"
        print(f"{name:5s} {len(table):6d} images, {int(table.label.sum()):5d} malignant -> {csv}")


if __name__ == "__main__":
    main()
