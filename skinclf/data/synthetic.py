"""A small synthetic dermoscopy-like dataset, generated once and cached, in the usual folder layout.

Each image shows a lesion on skin under a dermoscope's circular field. Malignant lesions show the
ABCD warning signs (Asymmetry, irregular Border, several Colours, larger Diameter) more often
than benign ones, each sign independently, so the classes overlap: a model can learn the task
but cannot separate it perfectly. Skin tone, lighting, position, rotation and hairs vary in both
classes as nuisances.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from skinclf.errors import SkinclfError

log = logging.getLogger(__name__)

MARKER_FILE = "synthetic.json"

#: Probability that a lesion shows each ABCD warning sign, for benign and malignant lesions.
SIGN_PROBABILITY = {0: 0.15, 1: 0.65}

SKIN_TONES = np.array([[236, 196, 170], [222, 172, 140], [196, 144, 110], [160, 112, 80], [120, 84, 62]])
LESION_BROWNS = np.array([[150, 96, 64], [124, 76, 48], [100, 60, 40], [140, 90, 70]])
EXTRA_COLOURS = np.array([[40, 28, 26], [92, 100, 124], [170, 70, 66], [70, 42, 28], [210, 200, 190]])


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; the cache folder is reused only for the same spec."""

    n_train: int = 800
    n_test: int = 200
    image_size: int = 128
    malignant_fraction: float = 0.3
    seed: int = 0


def _smooth_noise(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, waves: int = 4) -> np.ndarray:
    """A sum of a few random low-frequency waves, roughly in [-1, 1]."""
    field = np.zeros_like(xx)
    for _ in range(waves):
        fx, fy = rng.normal(0.0, 2.5, size=2)
        field += np.sin(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))
    return field / waves


def render_lesion(rng: np.random.Generator, malignant: bool, size: int) -> np.ndarray:
    """Draw one (size, size, 3) uint8 image of a benign or malignant lesion."""
    p = SIGN_PROBABILITY[int(malignant)]
    asymmetric, irregular, multicolour, large = rng.random(4) < p
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]

    # Skin, darker towards the rim of the dermoscope's field, with mottling and sensor noise.
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.08, size=3)
    rim = np.hypot(xx, yy)
    light = np.clip(1.0 - 0.25 * rim**2, 0, 1) * (1.0 / (1.0 + np.exp((rim - 1.25) * 14)))
    image = skin * light[..., None] * (1 + 0.04 * _smooth_noise(rng, xx, yy))[..., None]

    # The lesion outline: a radius that varies with the angle.
    cx, cy = rng.uniform(-0.15, 0.15, size=2)
    angle0 = rng.uniform(0, 2 * np.pi)
    u, v = xx - cx, yy - cy
    theta = np.arctan2(v, u) - angle0
    radius = rng.uniform(0.5, 0.7) if large else rng.uniform(0.28, 0.45)
    elongation = rng.uniform(1.5, 2.0) if asymmetric else rng.uniform(1.0, 1.1)
    outline = np.ones_like(theta)
    if asymmetric:  # a lobe on one side
        outline += rng.uniform(0.25, 0.4) * np.cos(theta - rng.uniform(0, 2 * np.pi))
    roughness = rng.uniform(0.35, 0.5) if irregular else rng.uniform(0.0, 0.05)
    for k in range(2, 17):  # a ragged border has strong high harmonics, a smooth one weak low ones
        amplitude = roughness * rng.uniform(0.2, 1.0) / k**0.8
        outline += amplitude * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rho = np.hypot(u * np.cos(angle0) + v * np.sin(angle0), (v * np.cos(angle0) - u * np.sin(angle0)) * elongation)
    edge = (radius * outline - rho) / (0.015 if irregular else 0.03)
    alpha = 1.0 / (1.0 + np.exp(-np.clip(edge, -30, 30)))

    # Lesion colour: a brown, darker at the centre, with blotches of other colours if multicolour.
    brown = LESION_BROWNS[rng.integers(len(LESION_BROWNS))] * rng.uniform(0.85, 1.15)
    depth = np.clip(1 - rho / (radius + 1e-6), 0, 1)
    lesion = brown * (1 - 0.35 * depth[..., None]) * (1 + 0.06 * _smooth_noise(rng, xx, yy))[..., None]
    n_blotches = rng.integers(2, 5) if multicolour else rng.integers(0, 2)
    palette = EXTRA_COLOURS if multicolour else LESION_BROWNS
    for _ in range(n_blotches):
        bx, by = np.array([cx, cy]) + rng.normal(0, radius * 0.45, size=2)
        spread = radius * rng.uniform(0.2, 0.45)
        weight = 0.85 * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * spread**2))
        colour = palette[rng.integers(len(palette))]
        lesion = lesion * (1 - weight[..., None]) + colour * weight[..., None]
    image = image * (1 - alpha[..., None]) + lesion * alpha[..., None]
    image = np.clip(image + rng.normal(0, 3, size=image.shape), 0, 255).astype(np.uint8)

    # Hairs, in either class.
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    for _ in range(rng.poisson(1.2)):
        start = rng.uniform(0, size, size=2)
        bend = rng.normal(0, size * 0.15, size=2)
        end = start + rng.normal(0, size * 0.5, size=2)
        points = [tuple(start), tuple((start + end) / 2 + bend), tuple(end)]
        draw.line(points, fill=(35, 25, 20), width=max(1, size // 96))
    return np.asarray(picture.filter(ImageFilter.GaussianBlur(radius=size / 256)))


def _write_split(folder: Path, n_images: int, spec: SyntheticSpec, rng: np.random.Generator) -> None:
    n_malignant = round(n_images * spec.malignant_fraction)
    labels = np.r_[np.ones(n_malignant, dtype=bool), np.zeros(n_images - n_malignant, dtype=bool)]
    for class_name in ("benign", "malignant"):
        (folder / class_name).mkdir(parents=True)
    for index, malignant in enumerate(labels):
        image = render_lesion(rng, bool(malignant), spec.image_size)
        class_name = "malignant" if malignant else "benign"
        Image.fromarray(image).save(folder / class_name / f"synthetic_{index:05d}.jpg", quality=92)


def ensure_synthetic_dataset(root: Path, spec: SyntheticSpec) -> Path:
    """Generate the dataset into root unless it is already there for the same spec."""
    marker = root / MARKER_FILE
    wanted = dataclasses.asdict(spec)
    if marker.is_file():
        if json.loads(marker.read_text()) == wanted:
            return root
        raise SkinclfError(
            f"{root} holds a synthetic dataset made with other settings ({marker}): "
            "pass another data.root or delete that folder"
        )
    if root.exists() and any(root.iterdir()):
        raise SkinclfError(f"{root} is not empty and is not a synthetic dataset: pass another data.root")
    log.info("generating a synthetic dataset in %s (once; it is cached there)", root)
    building = root.with_name(f".{root.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    rng = np.random.default_rng(spec.seed)
    _write_split(building / "train", spec.n_train, spec, rng)
    _write_split(building / "test", spec.n_test, spec, rng)
    marker_text = json.dumps(wanted, indent=2)
    (building / MARKER_FILE).write_text(marker_text)
    if root.exists():
        root.rmdir()
    os.replace(building, root)
    return root
