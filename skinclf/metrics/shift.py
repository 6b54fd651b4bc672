"""Whether a whole set of images comes from what the model knows: a two-sample test of the set's novelty scores
against those of the model's own validation images (held out from training, as a set from the same clinic would be).

An image's novelty score (ood_score, skinclf.models.novelty) is the distance of its early statistics to the training
images'; a set from elsewhere moves the whole distribution of those distances. The statistic is the two-sample
Kolmogorov-Smirnov distance between the two samples' scores, and its p-value the share of random relabellings of the
pooled scores whose distance reaches the observed one (a permutation test: exact in level, ties and all). It was
chosen over the squared MMD of the early statistics themselves by studies/referral_rule.py: both fired on every
drawn set of another clinic's dermoscopy and of clinical photographs, the score's test less often on the model's
own test split (docs/evaluation.md), and it needs no feature vector carried beside each prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Relabellings of the permutation test: its smallest p-value is 1 / (PERMUTATIONS + 1).
PERMUTATIONS = 999
#: The p-value below which a set is called unlike the model's own images.
LEVEL = 0.01
#: Fewer images than this are not tested: the test could not tell.
FEWEST_IMAGES = 20


@dataclass(frozen=True)
class ShiftTest:
    """The KS distance of a set's scores from the reference's, its permutation p-value, and the sizes of both."""

    statistic: float
    p_value: float
    images: int
    reference_images: int

    @property
    def alarm(self) -> bool:
        return self.p_value < LEVEL

    def sentence(self, described: str = "images") -> str:
        """The finding in words, for the command's last lines, metrics.json and the report."""
        if self.alarm:
            return (
                f"these {self.images} {described} are not like the images the model was checked on "
                f"(p = {self.p_value:.3f}): its thresholds and referral do not hold here; evaluate it on a labelled "
                "sample of them (evaluation.threshold_source) before relying on its decisions"
            )
        return (
            f"these {self.images} {described} are like the images the model was checked on, as far as "
            f"{self.images} images can tell (p = {self.p_value:.2f})"
        )

    def record(self, described: str = "images") -> dict:
        """What metrics.json says of it."""
        return {
            "test": "two-sample Kolmogorov-Smirnov of the novelty scores against the model's own validation, "
            f"permutation p-value ({PERMUTATIONS} relabellings), alarm below {LEVEL}",
            "statistic": self.statistic,
            "p_value": self.p_value,
            "images": self.images,
            "reference_images": self.reference_images,
            "alarm": self.alarm,
            "sentence": self.sentence(described),
        }


def ks_test(reference: np.ndarray, drawn: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> ShiftTest:
    """The two-sample KS permutation test of the drawn scores against the reference's (NaN scores left out)."""
    reference, drawn = np.asarray(reference, float), np.asarray(drawn, float)
    reference, drawn = reference[~np.isnan(reference)], drawn[~np.isnan(drawn)]
    n, m = len(reference), len(drawn)
    pooled = np.r_[reference, drawn]
    order = np.argsort(pooled, kind="stable")
    last_of_value = np.r_[pooled[order][1:] != pooled[order][:-1], True]  # the empirical CDFs step at distinct values
    rng = np.random.default_rng(seed)
    labellings = np.stack([np.arange(n + m), *(rng.permutation(n + m) for _ in range(permutations))]) < n
    steps = np.where(labellings[:, order], m, -n)  # each image's step of the CDFs' difference, times n * m: exact
    distances = np.abs(np.cumsum(steps, axis=1)[:, last_of_value]).max(axis=1)
    observed = distances[0]
    p_value = (1 + int((distances[1:] >= observed).sum())) / (1 + permutations)
    return ShiftTest(float(observed / (n * m)), p_value, m, n)


def set_alarm(validation: pd.DataFrame, predictions: pd.DataFrame) -> ShiftTest | None:
    """Whether the predicted images as a set are unlike the model's own validation images (skinclf.metrics.shift);
    None where the model gives no novelty score or the set is too small to tell."""
    if "ood_score" not in predictions or "ood_score" not in validation:
        return None
    scores = predictions["ood_score"].dropna()
    return ks_test(validation["ood_score"], scores) if len(scores) >= FEWEST_IMAGES else None
