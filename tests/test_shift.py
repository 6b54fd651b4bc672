"""The set alarm: a set drawn like the reference rarely raises it, a shifted one does; its distance is the KS one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from skinclf.metrics.shift import LEVEL, ks_test


def test_the_alarm_fires_at_its_level_on_alike_sets_and_on_nearly_every_shifted_one() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=300)
    alike = [ks_test(reference, rng.normal(size=100), permutations=199, seed=i).alarm for i in range(200)]
    shifted = [ks_test(reference, rng.normal(0.6, size=100), permutations=199, seed=i).alarm for i in range(20)]
    assert np.mean(alike) <= 3 * LEVEL  # 0.01 expected: at most 6 of 200 alike sets
    assert np.mean(shifted) >= 0.95


def test_the_distance_is_the_kolmogorov_smirnov_one_and_the_p_value_its_share_of_relabellings() -> None:
    rng = np.random.default_rng(1)
    reference, drawn = rng.normal(size=80), rng.normal(1.5, size=40)
    test = ks_test(reference, np.r_[drawn, np.nan], permutations=199)
    assert test.statistic == pytest.approx(ks_2samp(reference, drawn).statistic)
    assert test.p_value == 0.005 and test.alarm  # no relabelling reaches it: 1 / (199 + 1)
    assert (test.images, test.reference_images) == (40, 80)  # the unreadable image's missing score left out
    assert "these 40 images are not like the images the model was checked on" in test.sentence()
    tied = ks_test(np.repeat([1.0, 2.0], 50), np.repeat([1.0, 2.0], 20), permutations=199)
    assert tied.statistic == 0 and tied.p_value == 1 and not tied.alarm
