"""The LightningDataModule: owns the splits, the image pipelines and the loaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from skinclf.data.cache import build_cache
from skinclf.data.dataset import LesionDataset
from skinclf.data.sampler import EpochSampler
from skinclf.data.splits import SplitSettings, load_splits, prepare_splits
from skinclf.data.synthetic import SyntheticSpec, ensure_synthetic_dataset
from skinclf.data.transforms import eval_pipeline, train_pipeline
from skinclf.errors import SkinclfError


class LesionDataModule(pl.LightningDataModule):
    """Splits ``root`` (see :mod:`skinclf.data.splits`) and serves train, val and test loaders.

    ``train_steps`` are the aug group's albumentations transforms; None trains on the eval
    pipeline (resize, centre crop), as the reference's baseline did. With ``cache`` every split is
    decoded once into a memory-mapped uint8 cache at resize_size (see :mod:`skinclf.data.cache`),
    in ``cache_dir`` (default ``<split_dir>/cache``).
    """

    def __init__(
        self,
        root: str | Path,
        split_dir: str | Path | None = None,
        split: SplitSettings | None = None,
        resize_size: int = 256,
        crop_size: int = 224,
        train_steps: Sequence[A.BasicTransform] | None = None,
        batch_size: int = 256,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        check_images: bool = True,
        skip_corrupt: bool = False,
        synthetic: SyntheticSpec | None = None,
        seed: int | None = None,
        cache: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        if not root:
            raise SkinclfError(
                "no data root: pass data.root=<folder holding train/ and test/>, set SKINCLF_DATA, "
                "or try data=synthetic"
            )
        self.root = Path(root).expanduser()
        self.split_dir = Path(split_dir).expanduser() if split_dir else self.root / "splits"
        self.split = split or SplitSettings()
        self.train_transform = train_pipeline(train_steps, resize_size, crop_size)
        self.eval_transform = eval_pipeline(resize_size, crop_size)
        self.seed = seed or 0
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.persistent_workers = persistent_workers and num_workers > 0
        self.check_images = check_images
        self.skip_corrupt = skip_corrupt
        self.synthetic = synthetic
        self.resize_size = resize_size
        self.cache_dir = (Path(cache_dir).expanduser() if cache_dir else self.split_dir / "cache") if cache else None
        self.datasets: dict[str, LesionDataset] = {}
        self._prepared = False

    def prepare_data(self) -> None:
        """Generate the synthetic dataset if asked for; create or check the split CSVs (once)."""
        if self._prepared:
            return
        if self.synthetic is not None:
            ensure_synthetic_dataset(self.root, self.synthetic)
        tables = prepare_splits(self.root, self.split_dir, self.split, self.check_images, self.skip_corrupt)
        if self.cache_dir is not None:
            for name, table in tables.items():
                build_cache(self.root, table, self.resize_size, self.cache_dir, name, self.num_workers)
        self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        tables, _ = load_splits(self.split_dir)
        for name, table in tables.items():
            cache = None
            if self.cache_dir is not None:
                cache = build_cache(self.root, table, self.resize_size, self.cache_dir, name, self.num_workers)
            transform = self.train_transform if name == "train" else self.eval_transform
            self.datasets[name] = LesionDataset(self.root, table, transform, cache=cache)

    def state_dict(self) -> dict[str, str]:
        """Saved in every checkpoint, so that evaluate can find the run's splits again."""
        return {"root": str(self.root), "split_dir": str(self.split_dir)}

    def _loader(self, name: str, sampler: EpochSampler | None = None) -> DataLoader:
        dataset = self.datasets[name]
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # a last batch of one image would break BatchNorm in training
            drop_last=sampler is not None and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled by an EpochSampler, sharded across DDP processes by it."""
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochSampler(len(self.datasets["train"]), self.seed, rank, world_size)
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
