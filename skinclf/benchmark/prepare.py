"""``python -m skinclf.bench bench.mode=prepare``: how long skinclf takes to prepare full-size photographs.

Generates bench.prepare.images JPEGs of width x height (synthetic lesions, upscaled, with sensor-like noise so that
they compress as photographs do), then times, in one run:

- the floor in one process: each file decoded as small as DCT scaling allows for the model's resize_size, then resized;
- the floor on every usable core: the same in a process pool;
- skinclf's preparation: the split (check, byte hash, perceptual hash) and the image caches, from a fresh split
  folder, as training's first step does it;
- with bench.prepare.whole_decode, the same with model.preprocessing.jpeg_dct_scaling=false: every image decoded whole.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.pool
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skinclf.benchmark.timing import machine_facts, peak_host_memory_mb
from skinclf.config.schema import BenchConfig, PrepareBenchSettings, Preprocessing
from skinclf.core.atomic import write_json
from skinclf.core.machine import usable_cpus
from skinclf.data.images import load_rgb
from skinclf.data.preprocessing import resize_step
from skinclf.data.synthetic import CLASS_LOOKS, render_lesion
from skinclf.training.builders import build_datamodule

#: The share of the generated images in test/ (the rest in train/), and of malignant ones.
TEST_SHARE, MALIGNANT_SHARE = 0.2, 0.5
#: The side the lesions are drawn at before they are upscaled to the photograph's size.
DRAWN = 512


def write_photographs(folder: Path, settings: PrepareBenchSettings) -> list[Path]:
    """The generated JPEGs in folder's train/ and test/ class folders (written once for these settings)."""
    done = folder / f".complete-{settings.images}-{settings.width}x{settings.height}-q{settings.quality}"
    labels_rng, drawing_rng = (np.random.default_rng(seed) for seed in (0, 1))  # the labels whether drawn or not
    paths = []
    for index in range(settings.images):
        split = "test" if index < settings.images * TEST_SHARE else "train"
        label = int(labels_rng.random() < MALIGNANT_SHARE)
        path = folder / split / ("malignant" if label else "benign") / f"photo_{index:05d}.jpg"
        paths.append(path)
        if done.exists():
            continue
        drawn = Image.fromarray(render_lesion(drawing_rng, CLASS_LOOKS[label], DRAWN))
        photo = np.asarray(drawn.resize((settings.width, settings.height), Image.Resampling.BICUBIC), dtype=np.int16)
        noisy = photo + drawing_rng.integers(-6, 7, size=photo.shape, dtype=np.int16)  # as a sensor's
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=settings.quality)
    done.touch()
    return paths


def floor_image(job: tuple[Path, Preprocessing]) -> tuple[int, int]:
    """One image decoded as small as DCT scaling allows for the model's size, then resized as it resizes: the least
    any preparation does."""
    path, preprocessing = job
    return resize_step(preprocessing)(image=load_rgb(path, preprocessing.resize_size))["image"].shape[:2]


def floor_seconds(paths: list[Path], preprocessing: Preprocessing, processes: int) -> float:
    """Seconds to decode and resize every image in one process (processes=1) or a pool of processes."""
    jobs = [(path, preprocessing) for path in paths]
    start = time.perf_counter()
    if processes == 1:
        for job in jobs:
            floor_image(job)
    else:
        with forked_pool(processes) as pool:
            list(pool.imap(floor_image, jobs, chunksize=4))
    return time.perf_counter() - start


def forked_pool(processes: int) -> multiprocessing.pool.Pool:
    """A pool of forked processes that its exit can always stop. They are forked with SIGTERM's default action:
    the command's handler, which they would inherit, runs only between Python instructions, so a process stuck in C
    (a lock held by another thread of the parent when it forked) outlived the pool's SIGTERM and its exit waited for
    it for ever."""
    handler = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        return multiprocessing.get_context("fork").Pool(processes)
    finally:
        signal.signal(signal.SIGTERM, handler)


def preparation_seconds(settings: BenchConfig, root: Path, work: Path, dct_scaling: bool) -> float:
    """Seconds skinclf takes to make the splits and the caches of root from nothing, as training does first."""
    data = dataclasses.replace(
        settings.data, root=str(root), split_dir=str(work), cache_dir=None, cache=True, synthetic=None
    )
    preprocessing = dataclasses.replace(settings.model.preprocessing, jpeg_dct_scaling=dct_scaling)
    model = dataclasses.replace(settings.model, preprocessing=preprocessing)
    datamodule = build_datamodule(dataclasses.replace(settings, data=data, model=model))
    start = time.perf_counter()
    datamodule.prepare_data()
    return time.perf_counter() - start


def run_prepare_bench(settings: BenchConfig, run_folder: Path) -> dict:
    """Every measurement of the prepare mode; writes bench.json into run_folder and returns its contents."""
    prepare, preprocessing = settings.bench.prepare, settings.model.preprocessing
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(prepare.folder).expanduser() if prepare.folder else Path(scratch) / "photographs"
        paths = write_photographs(folder, prepare)
        processes = usable_cpus()
        seconds = {
            "floor, one process": floor_seconds(paths, preprocessing, 1),
            f"floor, {processes} processes": floor_seconds(paths, preprocessing, processes),
            "skinclf": preparation_seconds(settings, folder, Path(scratch) / "dct", True),
        }
        if prepare.whole_decode:
            seconds["skinclf, whole decode"] = preparation_seconds(settings, folder, Path(scratch) / "whole", False)
    all_cores = seconds[f"floor, {processes} processes"]
    results = {
        "machine": machine_facts(torch.device("cpu")),
        "config": (
            f"{prepare.images} JPEGs of {prepare.width}x{prepare.height} (quality {prepare.quality}, "
            f"{sum(p.stat().st_size for p in paths) / len(paths) / 1e6:.1f} MB each) -> "
            f"{preprocessing.resize_size} px, "
            f"{processes} usable CPUs, data.prepare_workers={settings.data.prepare_workers}"
        ),
        "seconds": seconds,
        "ratios": {f"{name} / all-cores floor": value / all_cores for name, value in seconds.items()},
        "peak_host_memory_mb": peak_host_memory_mb(),
    }
    write_json(run_folder / "bench.json", results)
    return results


def print_prepare_table(results: dict) -> None:
    print(f"\nskinclf bench, preparation ({results['config']})")
    print(f"{'measurement':<44}{'seconds':>10}{'/ all-cores floor':>20}")
    for name, value in results["seconds"].items():
        print(f"{name:<44}{value:>10.2f}{results['ratios'][f'{name} / all-cores floor']:>20.2f}")
    print(f"peak host memory (MB): {results['peak_host_memory_mb']}")
