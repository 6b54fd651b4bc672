"""What changes between dermoscopes that albumentations has no step for (aug=domain): the round field of view of a
contact dermoscope, dark in the corners, and hairs across the lesion. Both are seeded by the pipeline like any
albumentations step, so that each image's augmentation repeats (skinclf.data.sampler)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from albumentations.core.transforms_interface import ImageOnlyTransform


class CircularField(ImageOnlyTransform):
    """Black outside a circle of radius ``radius`` (a share of half the diagonal), its edge softened over ``edge``."""

    def __init__(self, radius: tuple[float, float] = (0.75, 1.0), edge: float = 0.05, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.radius, self.edge = radius, edge

    def get_params(self) -> dict[str, Any]:
        return {"radius": self.py_random.uniform(*self.radius)}

    def apply(self, img: np.ndarray, radius: float = 1.0, **params: Any) -> np.ndarray:
        height, width = img.shape[:2]
        yy, xx = np.mgrid[:height, :width]
        distance = np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2) / (np.hypot(height, width) / 2)
        shade = np.clip((radius - distance) / self.edge, 0, 1)
        return (img * shade[..., None]).astype(img.dtype)


class HairLines(ImageOnlyTransform):
    """``count`` dark, thin, gently curved lines across the image, as hairs lie over a lesion."""

    def __init__(self, count: tuple[int, int] = (1, 6), width: tuple[int, int] = (1, 2), p: float = 0.3) -> None:
        super().__init__(p=p)
        self.count, self.width = count, width

    def get_params(self) -> dict[str, Any]:
        hairs = []
        for _ in range(self.py_random.randint(*self.count)):
            start = (self.py_random.random(), self.py_random.random())
            angle = self.py_random.uniform(0, 2 * np.pi)
            bend = self.py_random.uniform(-0.3, 0.3)
            hairs.append((start, angle, bend, self.py_random.randint(*self.width), self.py_random.uniform(20, 60)))
        return {"hairs": hairs}

    def apply(self, img: np.ndarray, hairs: list | None = None, **params: Any) -> np.ndarray:
        drawn = img.copy()
        height, width = img.shape[:2]
        for (x, y), angle, bend, thickness, shade in hairs or []:
            steps = np.linspace(0, 1, 24)
            angles = angle + bend * steps * np.pi
            length = 0.6 * max(height, width)
            xs = x * width + np.cumsum(np.cos(angles)) * length / len(steps)
            ys = y * height + np.cumsum(np.sin(angles)) * length / len(steps)
            points = np.stack([xs, ys], axis=1).round().astype(np.int32)
            cv2.polylines(drawn, [points], False, (shade, shade * 0.8, shade * 0.6), thickness, cv2.LINE_AA)
        return drawn
