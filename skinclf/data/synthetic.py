"""A small synthetic dermoscopy-like dataset, generated once and cached: class folders, or a table.

Each image shows a lesion on skin under a dermoscope's circular field. Malignant lesions show the
ABCD warning signs (Asymmetry, irregular Border, several Colours, larger Diameter) more often
than benign ones, each sign independently, so the classes overlap: a model can learn the task
but cannot separate it perfectly. Skin tone, lighting, position, rotation and hairs vary in both
classes as nuisances.

``layout=folders`` writes ``train/`` and ``test/`` with ``benign/`` and ``malignant/`` folders.
``layout=table`` writes ``images/`` and ``lesions.csv`` as the public datasets ship them: five
diagnoses, each with its own look (melanoma and carcinoma malignant; nevus, keratosis and
dermatofibroma benign), patients with one to three lesions and some lesions imaged twice, and an
age, sex and body site that go with the diagnosis, with missing values and a few rows that cannot
be used (an image that is not there, an unknown diagnosis); each image's lesion mask in ``images/masks/``, named by
the column ``mask`` (for explain.mask_column).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from skinclf.config.schema import SyntheticSpec
from skinclf.core.atomic import reporting_full_disk
from skinclf.core.errors import SkinclfError
from skinclf.core.locks import exclusive_lock

log = logging.getLogger(__name__)

MARKER_FILE = "synthetic.json"
#: The table layout's folder of lesion masks (images/masks/<image_id>_mask.png, the lesion white), named by the column
#: mask relative to the dataset's root, the data root of data=synthetic_table.
MASKS = "masks"

SKIN_TONES = np.array([[236, 196, 170], [222, 172, 140], [196, 144, 110], [160, 112, 80], [120, 84, 62]])
LESION_BROWNS = np.array([[150, 96, 64], [124, 76, 48], [100, 60, 40], [140, 90, 70]])
EXTRA_COLOURS = np.array([[40, 28, 26], [92, 100, 124], [170, 70, 66], [70, 42, 28], [210, 200, 190]])


@dataclasses.dataclass(frozen=True)
class Look:
    """How a kind of lesion looks: how often it shows each ABCD sign, its colours, and vessels."""

    sign_probability: float
    browns: np.ndarray = dataclasses.field(default_factory=lambda: LESION_BROWNS)
    blotches: np.ndarray = dataclasses.field(default_factory=lambda: EXTRA_COLOURS)
    #: red branching lines over the lesion, as the vessels of a basal cell carcinoma
    vessels: bool = False


#: The benign and the malignant lesions of layout=folders.
CLASS_LOOKS = {0: Look(0.15), 1: Look(0.65)}


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """A diagnosis of layout=table: its look, its share of its class, and who has it where."""

    malignant: bool
    share: float
    look: Look
    age: tuple[float, float]  # mean and sd of the patient's age
    male: float  # probability that the patient is male
    sites: tuple[float, ...]  # probability of each of SITES


#: Body sites, as ISIC names them.
SITES = ("head/neck", "torso", "upper extremity", "lower extremity", "palms/soles")
DIAGNOSES = {
    "nevus": Diagnosis(False, 0.6, Look(0.1), (35, 12), 0.45, (0.1, 0.5, 0.15, 0.2, 0.05)),
    "keratosis": Diagnosis(
        False,
        0.25,
        Look(
            0.35,
            np.array([[170, 140, 100], [150, 125, 90], [185, 160, 120]]),
            np.array([[60, 50, 40], [200, 190, 170]]),
        ),
        (62, 10),
        0.5,
        (0.25, 0.55, 0.1, 0.1, 0.0),
    ),
    "dermatofibroma": Diagnosis(
        False,
        0.15,
        Look(0.1, np.array([[170, 110, 100], [160, 100, 90]]), np.array([[235, 225, 215]])),
        (42, 12),
        0.3,
        (0.02, 0.18, 0.2, 0.6, 0.0),
    ),
    "melanoma": Diagnosis(True, 0.6, Look(0.7), (58, 14), 0.55, (0.15, 0.45, 0.15, 0.2, 0.05)),
    "carcinoma": Diagnosis(
        True,
        0.4,
        Look(0.45, np.array([[200, 150, 150], [190, 140, 140]]), np.array([[92, 100, 124], [120, 125, 140]]), True),
        (67, 10),
        0.6,
        (0.6, 0.25, 0.1, 0.05, 0.0),
    ),
}


def _smooth_noise(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, waves: int = 4) -> np.ndarray:
    """A sum of a few random low-frequency waves, roughly in [-1, 1]."""
    field = np.zeros_like(xx)
    for _ in range(waves):
        fx, fy = rng.normal(0.0, 2.5, size=2)
        field += np.sin(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))
    return field / waves


def render_lesion(rng: np.random.Generator, look: Look, size: int) -> np.ndarray:
    """Draw one (size, size, 3) uint8 image of a lesion that looks so."""
    return render_lesion_and_mask(rng, look, size)[0]


def render_lesion_and_mask(rng: np.random.Generator, look: Look, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one (size, size, 3) uint8 image of a lesion that looks so, and the (size, size) mask of the lesion
    (where it covers more than half of the skin): what a map of where a model looks should point into."""
    p = look.sign_probability
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
    brown = look.browns[rng.integers(len(look.browns))] * rng.uniform(0.85, 1.15)
    depth = np.clip(1 - rho / (radius + 1e-6), 0, 1)
    lesion = brown * (1 - 0.35 * depth[..., None]) * (1 + 0.06 * _smooth_noise(rng, xx, yy))[..., None]
    n_blotches = rng.integers(2, 5) if multicolour else rng.integers(0, 2)
    palette = look.blotches if multicolour else look.browns
    for _ in range(n_blotches):
        bx, by = np.array([cx, cy]) + rng.normal(0, radius * 0.45, size=2)
        spread = radius * rng.uniform(0.2, 0.45)
        weight = 0.85 * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * spread**2))
        colour = palette[rng.integers(len(palette))]
        lesion = lesion * (1 - weight[..., None]) + colour * weight[..., None]
    image = image * (1 - alpha[..., None]) + lesion * alpha[..., None]
    image = np.clip(image + rng.normal(0, 3, size=image.shape), 0, 255).astype(np.uint8)
    if look.vessels:
        image = _draw_vessels(rng, image, (cx, cy), radius)

    # Hairs, in either class.
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    for _ in range(rng.poisson(1.2)):
        start = rng.uniform(0, size, size=2)
        bend = rng.normal(0, size * 0.15, size=2)
        end = start + rng.normal(0, size * 0.5, size=2)
        points = [tuple(start), tuple((start + end) / 2 + bend), tuple(end)]
        draw.line(points, fill=(35, 25, 20), width=max(1, size // 96))
    return np.asarray(picture.filter(ImageFilter.GaussianBlur(radius=size / 256))), alpha > 0.5


def _draw_vessels(
    rng: np.random.Generator, image: np.ndarray, centre: tuple[float, float], radius: float
) -> np.ndarray:
    """Thin red branching lines over the lesion."""
    size = image.shape[0]
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    for _ in range(rng.integers(3, 7)):
        start = (np.array(centre) + rng.normal(0, radius * 0.4, size=2) + 1) * size / 2
        points = [tuple(start)]
        for _ in range(4):
            points.append(tuple(np.array(points[-1]) + rng.normal(0, size * radius * 0.12, size=2)))
        draw.line(points, fill=(190, 40, 50), width=max(1, size // 128))
    return np.asarray(picture)


def _write_split(folder: Path, n_images: int, spec: SyntheticSpec, rng: np.random.Generator) -> None:
    n_malignant = round(n_images * spec.malignant_fraction)
    labels = np.r_[np.ones(n_malignant, dtype=bool), np.zeros(n_images - n_malignant, dtype=bool)]
    for class_name in ("benign", "malignant"):
        (folder / class_name).mkdir(parents=True)
    for index, malignant in enumerate(labels):
        image = render_lesion(rng, CLASS_LOOKS[int(malignant)], spec.image_size)
        class_name = "malignant" if malignant else "benign"
        Image.fromarray(image).save(folder / class_name / f"synthetic_{index:05d}.jpg", quality=92)


#: Share of table rows whose age, sex or site is left empty, as real tables do.
MISSING_SHARE = 0.05
#: Share of lesions imaged twice (the second image turned and a little brighter).
TWICE_IMAGED = 0.25


def _table_rows(folder: Path, spec: SyntheticSpec, rng: np.random.Generator) -> list[dict]:
    """Draw patients, their lesions and images into folder; the rows of the table."""
    rows: list[dict] = []
    patient = 0
    while len(rows) < spec.n_train + spec.n_test:
        patient += 1
        person = None
        for lesion in range(rng.integers(1, 4)):
            malignant = rng.random() < spec.malignant_fraction
            names = [n for n, d in DIAGNOSES.items() if d.malignant == malignant]
            shares = np.array([DIAGNOSES[n].share for n in names])
            name = names[rng.choice(len(names), p=shares / shares.sum())]
            diagnosis = DIAGNOSES[name]
            if person is None:  # the patient's age and sex go with the first lesion's diagnosis
                age = float(np.clip(rng.normal(*diagnosis.age), 5, 90))
                person = {
                    "age_approx": int(5 * round(age / 5)),
                    "sex": "male" if rng.random() < diagnosis.male else "female",
                }
            sites = np.array(diagnosis.sites)
            site = SITES[rng.choice(len(SITES), p=sites / sites.sum())]
            image, mask = render_lesion_and_mask(rng, diagnosis.look, spec.image_size)
            views = [(image, mask)]
            if rng.random() < TWICE_IMAGED:
                views.append((np.clip(np.rot90(image).astype(float) * 1.05, 0, 255).astype(np.uint8), np.rot90(mask)))
            for view, lesion_mask in views:
                image_id = f"SYN_{len(rows):06d}"
                Image.fromarray(view).save(folder / f"{image_id}.jpg", quality=92)
                Image.fromarray(np.where(lesion_mask, 255, 0).astype(np.uint8)).save(
                    folder / MASKS / f"{image_id}_mask.png"
                )
                rows.append(
                    {
                        "image_id": image_id,
                        "patient_id": f"P{patient:05d}",
                        "lesion_id": f"L{patient:05d}_{lesion}",
                        "diagnosis": name,
                        **person,
                        "anatom_site_general": site,
                        "mask": f"images/{MASKS}/{image_id}_mask.png",
                    }
                )
    return rows


def _write_table(root: Path, spec: SyntheticSpec, rng: np.random.Generator) -> None:
    """images/ and lesions.csv, with missing values and four rows that cannot be used."""
    (root / "images" / MASKS).mkdir(parents=True)
    table = pd.DataFrame(_table_rows(root / "images", spec, rng))
    for column in ("age_approx", "sex", "anatom_site_general"):
        table[column] = table[column].astype(object).where(rng.random(len(table)) >= MISSING_SHARE, "")
    table.loc[rng.choice(len(table), size=2, replace=False), "diagnosis"] = "unknown"
    absent = table.sample(2, random_state=np.random.RandomState(spec.seed)).assign(
        image_id=["SYN_gone_0", "SYN_gone_1"]
    )
    pd.concat([table, absent], ignore_index=True).to_csv(root / "lesions.csv", index=False)


def ensure_synthetic_dataset(root: Path, spec: SyntheticSpec) -> Path:
    """Generate the dataset into root unless it is already there for the same spec.

    Jobs started together generate it once: the first takes the lock, the others wait for it.
    """
    with exclusive_lock(root.with_name(f".{root.name}.lock"), f"the synthetic dataset {root}"):
        if not _already_there(root, spec):
            _generate(root, spec)
    return root


def _already_there(root: Path, spec: SyntheticSpec) -> bool:
    marker = root / MARKER_FILE
    if marker.is_file():
        if {"layout": "folders", **json.loads(marker.read_text())} == dataclasses.asdict(spec):
            return True
        raise SkinclfError(
            f"{root} holds a synthetic dataset made with other settings ({marker}): "
            "pass another data.root or delete that folder"
        )
    if root.exists() and any(root.iterdir()):
        raise SkinclfError(f"{root} is not empty and is not a synthetic dataset: pass another data.root")
    return False


def _generate(root: Path, spec: SyntheticSpec) -> None:
    """Write the images into a folder beside root, then rename it to root: never half a dataset."""
    log.info("generating a synthetic dataset in %s (once; it is cached there)", root)
    building = root.with_name(f".{root.name}.building-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with reporting_full_disk(root):
            rng = np.random.default_rng(spec.seed)
            if spec.layout == "table":
                _write_table(building, spec, rng)
            else:
                _write_split(building / "train", spec.n_train, spec, rng)
                _write_split(building / "test", spec.n_test, spec, rng)
            (building / MARKER_FILE).write_text(json.dumps(dataclasses.asdict(spec), indent=2))
        if root.exists():
            root.rmdir()
        os.replace(building, root)
    finally:
        shutil.rmtree(building, ignore_errors=True)
