"""Shared fixtures: small generated image folders; nothing here touches the network or a GPU."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from huggingface_hub import constants
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image
from safetensors.torch import save_file
from xdist.scheduler import LoadScopeScheduling

from skinclf.config.resolvers import register_configs
from skinclf.config.schema import Preprocessing, SplitSettings, TrainConfig, validate
from skinclf.core.locks import exclusive_lock
from skinclf.data.synthetic import SyntheticSpec, ensure_synthetic_dataset
from skinclf.metrics.decisions import HIGHEST_PRECISION, choose_thresholds, recall_key
from skinclf.training.run import train

#: Whether this is one of pytest-xdist's test processes (make test), rather than pytest alone.
UNDER_XDIST = "PYTEST_XDIST_WORKER" in os.environ

#: Under pytest-xdist each test process computes on one thread, so that the processes share the machine's CPUs
#: instead of fighting over them; the commands the tests start do the same, so that a run made in a test and one
#: made by a command repeat each other exactly.
ONE_THREAD_EACH = UNDER_XDIST
if ONE_THREAD_EACH:
    torch.set_num_threads(1)

#: A session fixture that takes half a minute: the test files that name it run in one test process, so that it is
#: made once; every other file runs whole in one process (--dist loadfile).
MADE_ONCE = "diagnosis_run"

#: The groups of test files that take over 5 s, slowest first (their summed --durations=0 on 2 cores: 73 s for
#: test_external down to 5 s for test_bench): each test process takes the next group when it is free, so the
#: processes end together on the quick files instead of one running a long file alone.
SLOWEST_FIRST = [
    "test_external.py",
    MADE_ONCE,  # test_explain, test_external_inputs, test_report_page, test_tables
    "test_training.py",
    "test_commands.py",
    "test_faults.py",
    "test_tracking.py",
    "test_reliability.py",
    "test_cross_validation.py",
    "test_pretrained.py",
    "test_serve.py",
    "test_sources.py",
    "test_sweeps.py",
    "test_metadata.py",
    "test_bad_input.py",
    "test_training_aids.py",
    "test_timm.py",
    "test_folder_and_splits.py",
    "test_docs.py",
    "test_small_data.py",
    "test_packaging.py",
    "test_decisions.py",
    "test_models.py",
    "test_bench.py",
]


@functools.cache
def files_sharing_the_fixture() -> frozenset[str]:
    return frozenset(path.name for path in Path(__file__).parent.glob("test_*.py") if MADE_ONCE in path.read_text())


def group_of(nodeid: str) -> str:
    """The test's group: its file's name, or MADE_ONCE for the files that share it."""
    name = Path(nodeid.split("::", 1)[0]).name
    return MADE_ONCE if name in files_sharing_the_fixture() else name


class SharedFixtureScheduling(LoadScopeScheduling):
    """--dist loadfile, with the files that share MADE_ONCE as one unit of work. (pytest-xdist's --dist loadgroup
    does this for marked tests by appending the group to each test id, which pytest 9 ignores: it computes ids.)"""

    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadScopeScheduling | None:
    return SharedFixtureScheduling(config, log) if config.getvalue("dist") == "loadfile" else None


#: The fixtures that train a model or start a server: a test that asks for one is slow (make test-fast leaves it out),
#: as is one marked so itself (it trains, or starts a process).
TRAINING_FIXTURES = frozenset(
    {
        "trained_run",
        "diagnosis_run",
        "clinics",
        "transferred",
        "cv_sweep",
        "fold_ensemble",
        "runs",
        "two_clinics",
        "pilot",
        "server",
        "tracking_server",
        "browser",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that ask for a training fixture marked slow; the slowest groups first (pytest-xdist keeps this order
    with --no-loadscope-reorder)."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: place for place, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(SLOWEST_FIRST)))


#: The environment of the commands the tests run: no data root from the caller's shell, quiet libraries.
COMMAND_ENV = {
    **{k: v for k, v in os.environ.items() if k != "SKINCLF_DATA"},
    "PYTHONWARNINGS": "ignore",
    **({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if ONE_THREAD_EACH else {}),
}


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


def run_in_process(command: str, *args: str, status: int = 0) -> subprocess.CompletedProcess:
    """``python -m skinclf.<command> <args>`` run in this process, as its entry point (no interpreter start-up).

    For the tests of what a command does; the tests of what the command line shows of an error run
    it as a process (run_command).
    """
    module = importlib.import_module(f"skinclf.{command}" if command != "bench" else "skinclf.bench")
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", [f"skinclf.{command}", *args]), redirect_stdout(out), redirect_stderr(err):
        try:
            module.main()
            code = 0
        except SystemExit as stop:
            code = stop.code or 0
    assert code == status, err.getvalue()[-3000:]
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


#: A synthetic dataset large enough to learn from in a few CPU seconds at low resolution.
LEARNABLE_SPEC = SyntheticSpec(
    layout="folders", n_train=480, n_test=160, image_size=64, malignant_fraction=0.35, seed=7
)


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


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder that every test process of this session sees (pytest-xdist gives each worker a base temp folder of
    its own, below the session's): what it holds is made once, under skinclf's lock, as jobs started together
    make a dataset once."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if UNDER_XDIST else base) / name


@pytest.fixture(scope="session")
def learnable_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_synthetic_dataset(shared_folder(tmp_path_factory, "learnable"), LEARNABLE_SPEC)


def synthetic_overrides(root: Path) -> list[str]:
    """Train on the learnable synthetic dataset in root, on the CPU, from random init, quietly."""
    spec = LEARNABLE_SPEC
    return [
        "data=synthetic",
        f"data.root={root}",
        f"data.synthetic.n_train={spec.n_train}",
        f"data.synthetic.n_test={spec.n_test}",
        f"data.synthetic.image_size={spec.image_size}",
        f"data.synthetic.malignant_fraction={spec.malignant_fraction}",
        f"data.synthetic.seed={spec.seed}",
        "model.weights=null",
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


def small_table(root: Path, n_train: int, n_test: int, image_size: int, *more: str) -> list[str]:
    """A short quiet CPU run at 32 px on a small synthetic table (data=synthetic_table) generated in root."""
    return [
        "data=synthetic_table",
        f"data.root={root}",
        *(f"data.synthetic.n_train={n_train}", f"data.synthetic.n_test={n_test}"),
        f"data.synthetic.image_size={image_size}",
        *("model.weights=null", "trainer=cpu", "optim.warmup_epochs=1"),
        *(
            "model.preprocessing.resize_size=36",
            "model.preprocessing.crop_size=32",
            "data.batch_size=32",
            "data.num_workers=0",
        ),
        *("trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"),
        *more,
    ]


def tiny(root: Path, *more: str) -> list[str]:
    """A run of a few seconds an epoch: ResNet18 at 32 px on the learnable synthetic dataset."""
    return [
        *synthetic_overrides(root),
        *(
            "model.preprocessing.resize_size=36",
            "model.preprocessing.crop_size=32",
            "data.batch_size=32",
            "data.num_workers=0",
        ),
        *("optim.lr=1e-3", "optim.warmup_epochs=1", "evaluation.bootstrap.resamples=200"),
        *more,
    ]


#: For a test of what a run does (logs, stops, resumes, sweeps), not of what it learns: a few batches an epoch.
FEW_BATCHES = "trainer.limit_train_batches=4"


#: The run of the trained_run fixture: a command given these overrides must give its metrics.json.
TRAINED_RUN_EPOCHS = "trainer.max_epochs=2"


@pytest.fixture(scope="session")
def trained_run(learnable_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with a small trained ResNet18 (two epochs at 32 px), made once for every test process."""
    run_folder = shared_folder(tmp_path_factory, "trained_run")
    with exclusive_lock(run_folder.with_suffix(".lock"), "the shared trained run"):
        if not (run_folder / "metrics.json").is_file():
            run_in_process("train", *tiny(learnable_root, TRAINED_RUN_EPOCHS), f"hydra.run.dir={run_folder}")
    return run_folder


def trained_metrics(run_folder: Path) -> dict:
    return json.loads((run_folder / "metrics.json").read_text())


def compose_train_config(overrides: list[str]) -> DictConfig:
    """The training config as ``python -m skinclf.train <overrides>`` would compose it."""
    register_configs()
    with initialize_config_module(config_module="skinclf.conf", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def train_settings(overrides: list[str]) -> TrainConfig:
    """The typed settings python -m skinclf.train <overrides> would run with."""
    return validate(compose_train_config(overrides))


def sizes(resize_size: int, crop_size: int) -> tuple[str, str]:
    """The overrides of a model's image sizes."""
    return f"model.preprocessing.resize_size={resize_size}", f"model.preprocessing.crop_size={crop_size}"


def preprocessing_of(resize_size: int, crop_size: int | None = None, **changes: object) -> Preprocessing:
    """A model's preprocessing at these sizes (the crop: the resize), ImageNet's normalisation, whole decodes unless
    changed."""
    crop = resize_size if crop_size is None else crop_size
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    return Preprocessing(
        **{"interpolation": "bilinear", "color_constancy": "none", "jpeg_dct_scaling": False, **imagenet, **changes},
        resize_size=resize_size,
        crop_size=crop,
    )


def threshold_for_recall(predictions: pd.DataFrame, target_recall: float) -> float:
    """The threshold the default decision rule chooses for a target recall on labelled predictions."""
    return choose_thresholds(predictions, [target_recall], HIGHEST_PRECISION)[recall_key(target_recall)]


def split_settings(**changes: object) -> SplitSettings:
    """The shipped split settings (conf/data/folder.yaml), with some changed.

    Near-duplicates are not looked for unless asked: the tiny random test images have too few
    pixels for a perceptual hash (tests/test_near_duplicates.py tests it on photo-like images).
    """
    shipped = train_settings(["model.weights=null"]).data.split_settings()
    return dataclasses.replace(shipped, **{"near_duplicates": "off", **changes})


@pytest.fixture(scope="session")
def diagnosis_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """task=diagnosis on a small synthetic table, audited by sex, site and age. 700 rows, split by patient into 417
    training, 141 validation and 141 test images: with 500 (298, 100, 100) its test AUROC spread 0.60-0.91 across
    machines and seeds, 0.92-0.95 now (BENCHMARKS.md)."""
    folder = tmp_path_factory.mktemp("diagnosis")
    overrides = small_table(
        folder / "data",
        400,
        300,
        48,
        *("task=diagnosis", "task.class_weights=balanced", "trainer.max_epochs=10", "optim.lr=2e-3"),
        *("evaluation.bootstrap.resamples=200", "evaluation.subgroups=[sex,anatom_site_general,age_approx]"),
    )
    train(train_settings(overrides), folder / "run")
    return folder / "run"


@pytest.fixture
def hub_cache(tmp_path: Path) -> Iterator[Path]:
    """An empty Hugging Face cache, offline: nothing is downloaded."""
    cache = tmp_path / "hub"
    with mock.patch.object(constants, "HF_HUB_OFFLINE", True), mock.patch.object(constants, "HF_HUB_CACHE", str(cache)):
        yield cache


def cache_in_hub(cache: Path, repository: str, state: dict[str, torch.Tensor]) -> None:
    """The state dict as the Hugging Face cache holds a repository's model.safetensors."""
    revision = "0" * 40
    folder = cache / f"models--{repository.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    save_file(state, folder / "snapshots" / revision / "model.safetensors")


def chromium_executable() -> str | None:
    """A system Chromium, or None for Playwright's own (downloaded by `playwright install chromium`)."""
    named = os.environ.get("SKINCLF_CHROMIUM")
    return named or next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium through Playwright (the pages' tests); skipped, saying why, where there is none."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: make install")
    with playwright.sync_playwright() as driver:
        try:
            chromium = driver.chromium.launch(
                executable_path=chromium_executable(), args=["--no-sandbox", "--disable-gpu"]
            )
        except playwright.Error as error:
            pytest.skip(f"no Chromium to open the page in (apt-get install chromium, or set SKINCLF_CHROMIUM): {error}")
        yield chromium
        chromium.close()
