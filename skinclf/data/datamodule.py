"""The LightningDataModule: owns the splits, the image pipelines and the loaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from skinclf.config.schema import CrossValidationSettings, DataSettings, Preprocessing
from skinclf.core.errors import SkinclfError, examples
from skinclf.data.cache import ImageCache, Staging, build_cache, remove_staged
from skinclf.data.dataset import LesionDataset, eval_dataset
from skinclf.data.folds import fold_tables, leave_source_out, pool_of, prepare_folds, read_folds, source_names
from skinclf.data.metadata import Encoding, encode, fit_encoding
from skinclf.data.preprocessing import train_transform
from skinclf.data.reading import CachedPixels
from skinclf.data.records import data_root, default_split_dir
from skinclf.data.sampler import EpochSampler
from skinclf.data.splits import load_splits, prepare_splits
from skinclf.data.synthetic import ensure_synthetic_dataset


class LesionDataModule(pl.LightningDataModule):
    """Splits ``data.root`` (see :mod:`skinclf.data.splits`) and serves train, val and test loaders.

    ``preprocessing`` is the model's (its decoding, sizes; see :mod:`skinclf.data.preprocessing`);
    ``train_steps`` are the aug group's albumentations transforms; None trains on the eval
    pipeline (resize, centre crop), as the reference's baseline did. With ``data.cache`` every
    split is decoded once into a memory-mapped uint8 cache at resize_size (see
    :mod:`skinclf.data.cache`: when the splits are made, from the same decode as their checks).
    ``seed`` seeds the training order and augmentation (see
    :class:`~skinclf.data.sampler.EpochSampler`). With ``diagnoses`` (task=diagnosis) every item
    carries the index of its diagnosis. With ``cv`` folds (see :mod:`skinclf.data.folds`) train
    and val are those of fold ``cv.fold``; the train and val images are then cached together,
    once for every fold.
    """

    def __init__(
        self,
        data: DataSettings,
        preprocessing: Preprocessing,
        train_steps: Sequence[A.BasicTransform] | None,
        seed: int,
        diagnoses: list[str] | None = None,
        cv: CrossValidationSettings | None = None,
        metadata_columns: Sequence[str] = (),
    ) -> None:
        super().__init__()
        root = data_root(data.root, data)
        if root is None:
            raise SkinclfError(
                "no data: pass data.root=<folder holding train/ and test/> (or set SKINCLF_DATA), a table with "
                "data=table data.table=<csv> data.images=<folder>, or try data=synthetic"
            )
        self.data = data
        self.root = root
        self.split_dir = Path(data.split_dir).expanduser() if data.split_dir else default_split_dir(root, data)
        cache_dir = Path(data.cache_dir).expanduser() if data.cache_dir else self.split_dir / "cache"
        self.cache_dir = cache_dir if data.cache else None
        self.preprocessing = preprocessing
        self.pixels = CachedPixels(preprocessing)
        self.train_transform = train_transform(preprocessing, train_steps)
        self.seed = seed
        self.diagnoses = diagnoses
        self.cv = cv if cv is not None and (cv.folds or cv.leave_out) else None
        self.metadata_columns = list(metadata_columns)
        self._metadata_encoding: Encoding | None = None
        self._tables: dict[str, pd.DataFrame] | None = None
        self.datasets: dict[str, LesionDataset] = {}

    def prepare_data(self) -> None:
        """Generate the synthetic dataset if asked for; create or check the split CSVs (once), and build the caches."""
        if self._tables is not None:
            return
        if self.data.synthetic is not None:
            ensure_synthetic_dataset(self.root, self.data.synthetic)
        data = self.data
        staged = Staging(self.cache_dir, self.pixels) if self.cache_dir is not None else None
        tables = prepare_splits(
            self.root,
            self.split_dir,
            data.split_settings(),
            data.check_images,
            data.skip_corrupt,
            data.prepare_workers,
            staged,
        )
        if self.cv is not None and self.cv.folds:
            prepare_folds(self.split_dir, tables, self.cv, data.split_seed)
        self._caches(tables)
        if self.cache_dir is not None:
            remove_staged(self.cache_dir)
        self._tables = tables

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The split CSVs, read once: by prepare_data, or where it did not run (DDP's other processes) here."""
        if self._tables is None:
            self._tables, _ = load_splits(self.split_dir)
        return self._tables

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        caches = self._caches(self.tables)
        for name, table in self.run_tables().items():
            if name == "train":
                metadata = self.metadata_of(table, name)
                self.datasets[name] = LesionDataset(
                    self.root,
                    table,
                    self.train_transform,
                    self.pixels.decoding,
                    False,
                    caches[name],
                    self.diagnoses,
                    metadata,
                )
            self.datasets[f"{name} as evaluated" if name == "train" else name] = eval_dataset(
                self.preprocessing,
                self.root,
                table,
                metadata=self.metadata_of(table, name),
                cache=caches[name],
                diagnoses=self.diagnoses,
            )

    def metadata_of(self, table: pd.DataFrame, name: str) -> np.ndarray | None:
        """The encoded metadata of a split's images, for a model that reads metadata."""
        encoding = self.metadata_encoding()
        return encode(table, encoding, f"the {name} split") if encoding else None

    def metadata_encoding(self) -> Encoding | None:
        """How model.metadata_columns are encoded, fitted on the run's training split; None without metadata."""
        if not self.metadata_columns:
            return None
        if self._metadata_encoding is None:
            self.prepare_data()
            self._metadata_encoding = fit_encoding(self.run_tables()["train"], self.metadata_columns)
        return self._metadata_encoding

    def run_tables(self) -> dict[str, pd.DataFrame]:
        """The run's train, val and test tables: the splits, or with cross-validation those of its fold; leaving a
        source out, also the images of that source (left_out)."""
        if self.cv is None:
            return self.tables
        if self.cv.leave_out:
            return leave_source_out(self.tables, self.left_out)
        return fold_tables(self.tables, read_folds(self.split_dir, self.tables, self.cv.folds), self.cv.fold)

    @property
    def left_out(self) -> str:
        """The source this run leaves out (cv.leave_out=source): number cv.fold of data.sources."""
        names = source_names(self.tables)
        if self.cv.fold >= len(names):
            raise SkinclfError(
                f"cv.fold={self.cv.fold}: there are {len(names)} sources to leave out ({examples(names)})"
            )
        return names[self.cv.fold]

    def _caches(self, tables: dict[str, pd.DataFrame]) -> dict[str, ImageCache | None]:
        """The image cache of each of the run's tables (None without data.cache), built once for all jobs."""
        if self.cv is None or self.cv.leave_out:
            caches = {name: self._cache(name, table) for name, table in tables.items()}
            if self.cv is None:
                return caches
            left_out = self.left_out  # refused here, with the sources there are, where it is not one of them
            kept = {name: (tables[name]["source"] != left_out).to_numpy() for name in ("train", "val")}
            of_kept = {
                name: caches[name].rows(rows) if caches[name] is not None else None for name, rows in kept.items()
            }
            return {**of_kept, "test": caches["test"], "left_out": None}
        pool = self._cache("pool", pool_of(tables))  # train and val of every fold, together
        held = read_folds(self.split_dir, tables, self.cv.folds) == self.cv.fold
        return {
            "train": pool.rows(~held) if pool is not None else None,
            "val": pool.rows(held) if pool is not None else None,
            "test": self._cache("test", tables["test"]),
        }

    def _cache(self, name: str, table: pd.DataFrame) -> ImageCache | None:
        """The split's image cache, built by the first job that needs it; None without data.cache."""
        if self.cache_dir is None:
            return None
        return build_cache(self.root, table, self.pixels, self.cache_dir, name, self.data.prepare_workers)

    def diagnosis_counts(self) -> pd.Series:
        """How many training images each diagnosis has (the splits are made first if need be)."""
        self.prepare_data()
        return self.run_tables()["train"]["diagnosis"].value_counts()

    def location(self) -> dict[str, str | int]:
        """Where the run's splits (and fold) are: every checkpoint records it, so that evaluate finds them again."""
        folds = {}
        if self.cv is not None:
            folds = {
                "cv_fold": self.cv.fold,
                **({"left_out": self.left_out} if self.cv.leave_out else {"cv_folds": self.cv.folds}),
            }
        return {"root": str(self.root), "split_dir": str(self.split_dir), **folds}

    def train_dataloader(self) -> DataLoader:
        """Shuffled by an EpochSampler (class- and/or source-balanced with data.sampler=balanced and
        data.source_balance), sharded across DDP processes."""
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        train = self.datasets["train"]
        return self._loader("train", EpochSampler(len(train), self.seed, rank, world_size, self.balancing_weights()))

    def balancing_weights(self) -> np.ndarray | None:
        """Each training image's weight in the draw: equal shares for each class (data.sampler=balanced) and each
        source (data.source_balance), within one another; None to draw each image once an epoch."""
        table = self.datasets["train"].table
        keys = [
            *(["label"] if self.data.sampler == "balanced" else []),
            *(["source"] if self.data.source_balance else []),
        ]
        if not keys:
            return None
        if "source" in keys and "source" not in table.columns:
            raise SkinclfError("data.source_balance=true needs several sources: name them in data.sources")
        return 1.0 / table.groupby(keys)[keys[0]].transform("size").to_numpy()

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def train_as_evaluated_dataloader(self) -> DataLoader:
        """The training images as an evaluation sees them (no augmentation, in order): what referral is fitted on."""
        return self._loader("train as evaluated")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def _loader(self, name: str, sampler: EpochSampler | None = None) -> DataLoader:
        dataset = self.datasets[name]
        return DataLoader(
            dataset,
            batch_size=self.data.batch_size,
            sampler=sampler,
            # a last batch of one image would break BatchNorm in training
            drop_last=sampler is not None and len(dataset) > self.data.batch_size,
            num_workers=self.data.num_workers,
            pin_memory=self.data.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.data.persistent_workers and self.data.num_workers > 0,
        )
