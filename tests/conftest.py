"""Shared fixtures: small generated image folders; nothing here touches the network or a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image

from skinclf.config import register_configs
from skinclf.data.synthetic import SyntheticSpec, ensure_synthetic_dataset

#: The environment of the commands the tests run: no data root from the caller's shell, quiet libraries.
COMMAND_ENV = {**{k: v for k, v in os.environ.items() if k != "SKINCLF_DATA"}, "PYTHONWARNINGS": "ignore"}


def command_line(command: str, *args: str) -> list[str]:
    """``python -m skinclf.<command> <args>``."""
    return [sys.executable, "-m", f"skinclf.{command}", *args]


def run_command(
    command: str, *args: str, cwd: Path, status: int = 0, timeout: int = 280
) -> subprocess.CompletedProcess:
    """Run a skinclf command as a user would; check its exit status (showing stderr if it differs)."""
    result = subprocess.run(
        command_line(command, *args), cwd=cwd, capture_output=True, text=True, env=COMMAND_ENV, timeout=timeout
    )
    assert result.returncode == status, result.stderr[-3000:]
    return result


#: A synthetic dataset large enough to learn from in a few CPU seconds at low resolution.
LEARNABLE_SPEC = SyntheticSpec(n_train=480, n_test=160, image_size=64, malignant_fraction=0.35, seed=7)


def write_image(path: Path, seed: int, size: int = 8, suffix_format: str | None = None) -> Path:
    """A small random RGB image; a different seed gives different bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=suffix_format)
    return path


def make_image_folder(
    root: Path,
    counts: dict[str, dict[str, int]],
    extension: str = ".png",
) -> Path:
    """Write ``counts[split][class_folder]`` distinct images under root/split/class_folder/."""
    seed = 0
    for split, classes in counts.items():
        for class_folder, n in classes.items():
            (root / split / class_folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                write_image(root / split / class_folder / f"img_{i:04d}{extension}", seed, suffix_format="PNG")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """train: 60 benign + 20 malignant, test: 10 + 5, class folders in mixed case."""
    return make_image_folder(
        tmp_path / "data",
        {"train": {"Benign": 60, "MALIGNANT": 20}, "test": {"benign": 10, "Malignant": 5}},
    )


@pytest.fixture(scope="session")
def learnable_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "data", LEARNABLE_SPEC)


def compose_train_config(overrides: list[str]) -> DictConfig:
    """The training config as ``python -m skinclf.train <overrides>`` would compose it."""
    register_configs()
    with initialize_config_module(config_module="skinclf.conf", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)
