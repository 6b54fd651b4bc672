"""The audit by subgroup: figures per value, age bands, and the subgroups a threshold fails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skinclf.config.schema import BootstrapSettings
from skinclf.core.errors import SkinclfError
from skinclf.metrics.decisions import HIGHEST_PRECISION
from skinclf.metrics.subgroups import audit
from skinclf.reports.summary import summary_line
from skinclf.reports.tables import subgroup_rows

BOOTSTRAP = BootstrapSettings(resamples=300, confidence=0.95, seed=0)


def scored(labels: np.ndarray, separation: float, rng: np.random.Generator) -> np.ndarray:
    return rng.random(len(labels)) + separation * labels


def test_a_subgroup_the_threshold_misses_is_flagged_and_ages_are_banded() -> None:
    rng = np.random.default_rng(0)
    val_labels = np.r_[np.ones(200), np.zeros(400)].astype(int)
    validation = pd.DataFrame({"label": val_labels, "probability": scored(val_labels, 1.0, rng)})
    labels = np.r_[np.ones(120), np.zeros(240)].astype(int)
    test = pd.DataFrame({"label": labels, "sex": np.resize(["female", "male", "female"], 360)})
    test["probability"] = scored(labels, 1.0, rng)
    hidden = (test["sex"] == "male") & (test["label"] == 1)
    test.loc[hidden, "probability"] -= 0.6  # the model misses malignant lesions of men
    test["age"] = np.resize([25.0, 38.0, 52.0, 66.0, 80.0, np.nan], 360)

    subgroups = audit(validation, test, ["sex", "age"], [0.9], BOOTSTRAP, [30, 45, 60, 75], HIGHEST_PRECISION)

    by_sex = {entry["value"]: entry for entry in subgroups["sex"]}
    assert by_sex["male"]["malignant"] == 40 and by_sex["female"]["images"] == 240
    assert by_sex["male"]["operating_points"][0]["below_target"]
    assert not by_sex["female"]["operating_points"][0]["below_target"]
    low, high = by_sex["male"]["operating_points"][0]["recall_ci"]
    assert low <= by_sex["male"]["operating_points"][0]["recall"] <= high < 0.9
    assert [entry["value"] for entry in subgroups["age"]] == ["<30", "30-45", "45-60", "60-75", ">=75", "(missing)"]

    metrics = {"subgroups": subgroups, "operating_points": [], "test/auroc": 0.8, "test/auprc": 0.6}
    warnings = summary_line({**metrics, "test/accuracy": 0.7}).splitlines()[1:]
    assert any(w.startswith("warning: sex=male (40 malignant): recall") and "recall >= 0.9" in w for w in warnings)
    assert not any("sex=female" in w for w in warnings)
    rows = {row["subgroup"]: row for row in subgroup_rows(metrics)}
    assert "below target" in rows["sex = male"]["R≥0.9: recall"]


def test_subgroup_columns_the_test_set_lacks_or_mixed_numbers_are_named() -> None:
    ages = [*(str(40 + i) for i in range(19)), "sixty"]  # a numeric column with one word in it
    test = pd.DataFrame({"label": [0, 1] * 10, "probability": np.linspace(0, 1, 20), "age": ages})
    validation = test[["label", "probability"]]
    with pytest.raises(SkinclfError, match=r"names site, which the test images do not have: their columns are age"):
        audit(validation, test, ["site"], [0.9], BOOTSTRAP, [30], HIGHEST_PRECISION)
    with pytest.raises(SkinclfError, match=r"the column age holds numbers but also sixty"):
        audit(validation, test, ["age"], [0.9], BOOTSTRAP, [30], HIGHEST_PRECISION)


def test_a_labelled_skin_type_is_audited_type_by_type() -> None:
    """A table's own Fitzpatrick column (1-6) is a scale of types, each a subgroup, not banded as the age is."""
    rng = np.random.default_rng(1)
    labels = np.resize([1, 0, 0], 360)
    validation = pd.DataFrame({"label": labels, "probability": scored(labels, 1.0, rng)})
    test = pd.DataFrame({"label": labels, "probability": scored(labels, 1.0, rng)})
    test["fitzpatrick"] = np.resize(["1", "2", "3", "4", "5", "6", ""], 360)
    subgroups = audit(validation, test, ["fitzpatrick"], [0.9], BOOTSTRAP, [30, 45, 60, 75], HIGHEST_PRECISION)
    assert [entry["value"] for entry in subgroups["fitzpatrick"]] == ["1", "2", "3", "4", "5", "6", "(missing)"]
