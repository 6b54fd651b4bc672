"""Make (or check) the split CSVs without training: ``python -m skinclf.split data.root=<folder>``.

Composes the training config, so every override of ``skinclf.train`` applies, and writes
train.csv, val.csv and test.csv to ``data.split_dir`` (default ``<root>/splits``) just as training
would; existing CSVs are checked against the folder instead.
"""

from __future__ import annotations

from skinclf.commands.entry import command
from skinclf.data.splits import load_splits
from skinclf.fitting.builders import build_datamodule
from skinclf.schema import TrainConfig


@command("split")
def main(settings: TrainConfig) -> None:
    datamodule = build_datamodule(settings)
    datamodule.prepare_data()
    tables, _ = load_splits(datamodule.split_dir)
    for name, table in tables.items():
        csv = datamodule.split_dir / f"{name}.csv"
        print(f"{name:5s} {len(table):6d} images, {int(table.label.sum()):5d} malignant -> {csv}")


if __name__ == "__main__":
    main()
