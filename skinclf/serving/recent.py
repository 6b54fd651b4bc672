"""The recent requests as a set: each worker keeps the novelty scores of the last images it answered, the server tests
them together against the model's own validation (skinclf.metrics.shift) when /health or /model is asked."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

import numpy as np

from skinclf.core.atomic import write_json
from skinclf.metrics.shift import FEWEST_IMAGES, ks_test


class RecentScores:
    """A worker's novelty scores of the last ``most`` images it answered, written (with when) into the folder the
    server reads."""

    def __init__(self, folder: Path, most: int) -> None:
        self.path = folder / f"worker-{os.getpid()}.json"
        self.scores: deque[tuple[float, float]] = deque(maxlen=most)

    def add(self, scores: np.ndarray) -> None:
        now = time.time()
        self.scores.extend((now, float(score)) for score in scores if not np.isnan(score))
        write_json(self.path, {"scores": list(self.scores)})


def recent_drift(folder: Path, validation_scores: np.ndarray | None, most: int) -> dict:
    """The set alarm of the last ``most`` images every worker answered, in words and numbers (metrics.json's
    ``shift``); where there are too few yet, or the model gives no novelty score, what it waits for."""
    if validation_scores is None or most == 0:
        return {"alarm": False, "sentence": "no set alarm: the model gives no novelty score (or serve.recent_images=0)"}
    answered = [tuple(pair) for path in folder.glob("worker-*.json") for pair in json.loads(path.read_text())["scores"]]
    latest = np.array([score for _, score in sorted(answered)[-most:]])
    if len(latest) < FEWEST_IMAGES:
        return {
            "alarm": False,
            "images": len(latest),
            "sentence": f"{len(latest)} image(s) answered so far: the set alarm waits for {FEWEST_IMAGES}",
        }
    return ks_test(validation_scores, latest).record("recent images")
