"""Ranking metrics and operating points against hand-computed cases and torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_at_fixed_recall,
)

from skinclf.metrics.curves import (
    auroc,
    average_precision,
    best_precision_at_recall,
    rank,
    rates_at_threshold,
    reference_precision_at_recall,
)
from skinclf.metrics.figures import evaluate
from skinclf.reports.summary import summary_line

# three positives (0.9, 0.7, 0.6) and three negatives (0.8, 0.5, 0.4)
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
LABELS = np.array([1, 0, 1, 1, 0, 0])


def test_hand_computed_case() -> None:
    ranked = rank(SCORES, LABELS)
    assert auroc(ranked)[0] == pytest.approx(7 / 9)  # 7 of 9 positive-negative pairs in order
    assert average_precision(ranked)[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # all positives are caught from t=0.6 down; 0.6 is the most precise of those thresholds (3/4)
    precision, threshold = best_precision_at_recall(ranked, 1.0)
    assert (precision[0], threshold[0]) == (pytest.approx(0.75), 0.6)
    # recall 2/3 also counts for a target of 0.6: t=0.7 gives 2/3 precision, t=0.6 still 3/4
    assert best_precision_at_recall(ranked, 0.6)[0][0] == pytest.approx(0.75)
    # only t=0.9 has precision 1, but its recall 1/3 misses the target
    assert best_precision_at_recall(ranked, 0.34)[0][0] == pytest.approx(0.75)
    assert best_precision_at_recall(ranked, 0.33)[0][0] == pytest.approx(1.0)


def test_recall_target_is_met_not_approached_from_above() -> None:
    # The reference read precision where recall first drops to <= target. Here 999 of 1000
    # positives at recall 0.999 must count as meeting a 0.999 target.
    labels = np.r_[np.ones(1000), np.zeros(1000)]
    scores = np.r_[np.linspace(0.5, 1.0, 999), 0.0, np.linspace(0.1, 0.4, 1000)]
    precision, threshold = best_precision_at_recall(rank(scores, labels), 0.999)
    assert precision[0] == pytest.approx(1.0) and threshold[0] == pytest.approx(0.5)


def test_ties_form_one_threshold() -> None:
    ranked = rank(np.array([0.5, 0.5, 0.5, 0.5]), np.array([1, 0, 1, 0]))
    assert auroc(ranked)[0] == pytest.approx(0.5)
    assert average_precision(ranked)[0] == pytest.approx(0.5)
    assert best_precision_at_recall(ranked, 0.999)[0][0] == pytest.approx(0.5)


def test_single_positive() -> None:
    ranked = rank(np.array([0.9, 0.3, 0.2, 0.1]), np.array([0, 1, 0, 0]))
    precision, threshold = best_precision_at_recall(ranked, 0.999)
    assert (precision[0], threshold[0]) == (pytest.approx(0.5), 0.3)
    assert auroc(ranked)[0] == pytest.approx(2 / 3)


def test_no_positive_gives_nan() -> None:
    ranked = rank(np.array([0.2, 0.1]), np.array([0, 0]))
    assert np.isnan(best_precision_at_recall(ranked, 0.9)[0][0])
    assert np.isnan(auroc(ranked)[0])


def test_rates_at_threshold() -> None:
    rates = rates_at_threshold(SCORES, LABELS, 0.6)
    assert {k: float(v[0]) for k, v in rates.items()} == pytest.approx(
        {"precision": 0.75, "recall": 1.0, "specificity": 2 / 3, "npv": 1.0, "accuracy": 5 / 6}
    )


def test_agrees_with_torchmetrics_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(2, 80))
        labels = rng.integers(0, 2, n)
        if labels.min() == labels.max():
            continue
        scores = np.round(rng.random(n), int(rng.integers(1, 3)))
        ranked = rank(scores, labels)
        s, y = torch.tensor(scores), torch.tensor(labels)
        assert auroc(ranked)[0] == pytest.approx(binary_auroc(s, y).item())
        assert average_precision(ranked)[0] == pytest.approx(binary_average_precision(s, y).item())
        for target in (0.5, 0.95, 1.0):
            precision, threshold = binary_precision_at_fixed_recall(s, y, min_recall=target)
            ours = best_precision_at_recall(ranked, target)
            assert (ours[0][0], ours[1][0]) == (pytest.approx(precision.item()), pytest.approx(threshold.item()))


def test_rows_are_independent_resamples() -> None:
    rng = np.random.default_rng(1)
    scores, labels = rng.random((5, 40)), rng.integers(0, 2, (5, 40))
    batched = rank(scores, labels)
    for row in range(5):
        single = rank(scores[row], labels[row])
        assert auroc(batched)[row] == pytest.approx(auroc(single)[0])
        assert average_precision(batched)[row] == pytest.approx(average_precision(single)[0])
        assert best_precision_at_recall(batched, 0.9)[0][row] == pytest.approx(
            best_precision_at_recall(single, 0.9)[0][0]
        )


def test_threshold_is_chosen_on_validation_and_reported_on_test() -> None:
    val_scores, val_labels = np.array([0.9, 0.8, 0.4, 0.3, 0.2]), np.array([1, 1, 0, 1, 0])
    test_scores, test_labels = SCORES, LABELS
    metrics = evaluate(val_scores, val_labels, test_scores, test_labels, [0.6, 0.999])

    low, high = metrics["operating_points"]
    # val recall >= 0.6: t=0.8 (recall 2/3, precision 1) beats t=0.3 (recall 1, precision 3/4)
    assert low["threshold"] == 0.8 and low["val/precision"] == 1.0
    # on test, t=0.8 flags 0.9 and 0.8: one of three positives, one false alarm
    assert (low["test/recall"], low["test/precision"]) == (pytest.approx(1 / 3), 0.5)
    assert high["threshold"] == 0.3 and high["val/recall"] == 1.0
    # on test, t=0.3 flags all six images
    assert (high["test/recall"], high["test/precision"], high["test/specificity"]) == (1.0, 0.5, 0.0)
    # the test-oracle figure looks at test labels and is reported apart
    assert metrics["test/precision_at_recall_0.999"] == pytest.approx(0.75)
    assert metrics["test/accuracy"] == pytest.approx(4 / 6)
    assert metrics["test/auroc"] == pytest.approx(7 / 9)


def test_reference_reading_lands_on_the_cut_just_below_the_target() -> None:
    # recall at the cuts of SCORES: 1/3, 1/3, 2/3, 1, 1, 1 (thresholds 0.9 ... 0.4)
    ranked = rank(SCORES, LABELS)
    # lowest threshold with recall <= 0.9 is t=0.7 (recall 2/3, precision 2/3)
    assert reference_precision_at_recall(ranked, 0.9)[0] == pytest.approx(2 / 3)
    # at a target of 1 every threshold qualifies; the lowest, 0.4, flags everything
    assert reference_precision_at_recall(ranked, 1.0)[0] == pytest.approx(0.5)
    # below the first cut's recall there is none
    assert np.isnan(reference_precision_at_recall(ranked, 0.2)[0])


def test_reference_reading_with_ties_a_single_positive_and_equal_scores() -> None:
    # ties: the two 0.8s form one cut (recall 1/2 -> 1 at once)
    tied = rank(np.array([0.9, 0.8, 0.8, 0.1]), np.array([1, 1, 0, 0]))
    assert reference_precision_at_recall(tied, 0.999)[0] == pytest.approx(1.0)  # t=0.9: recall 1/2
    assert best_precision_at_recall(tied, 0.999)[0][0] == pytest.approx(2 / 3)  # t=0.8: recall 1
    # a single positive decides the reading on its own
    single = rank(np.array([0.9, 0.3, 0.2]), np.array([0, 1, 0]))
    # only the cut at 0.9 (recall 0) lies below 0.999: the reading reports precision 0
    assert reference_precision_at_recall(single, 0.999)[0] == 0.0
    assert reference_precision_at_recall(single, 1.0)[0] == pytest.approx(1 / 3)
    # all scores equal: one cut, everything flagged
    equal = rank(np.full(5, 0.5), np.array([1, 0, 0, 1, 0]))
    assert reference_precision_at_recall(equal, 1.0)[0] == pytest.approx(0.4)
    assert best_precision_at_recall(equal, 0.999)[0][0] == pytest.approx(0.4)


def test_thresholds_resting_on_one_or_two_malignant_images_are_flagged() -> None:
    rng = np.random.default_rng(0)

    def scores_of(labels: np.ndarray) -> np.ndarray:
        return rng.random(len(labels)) + 0.6 * labels

    few = np.r_[np.ones(20), np.zeros(80)].astype(int)  # the 5 % validation of ISIC 2017: 20 malignant
    metrics = evaluate(scores_of(few), few, scores_of(few), few, [0.9, 0.95, 0.999])
    flagged = {p["target_recall"]: p["set_by_few_images"] for p in metrics["operating_points"]}
    # 0.9 of 20 may leave 2 malignant images below the threshold; 0.95 only one, 0.999 none
    assert flagged == {0.9: False, 0.95: True, 0.999: True}
    for point in metrics["operating_points"]:  # the malignant images missed at the threshold, as the target allows
        missed = point["val/malignant_below_threshold"]
        assert missed == round((1 - point["val/recall"]) * 20)  # as many as the validation recall leaves out
        assert missed <= np.floor((1 - point["target_recall"]) * 20 + 1e-9)
    assert "the thresholds for recall >= 0.95, 0.999 are each set by the one or two lowest-scored of 20" in (
        summary_line(metrics)
    )

    enough = np.r_[np.ones(400), np.zeros(600)].astype(int)
    metrics = evaluate(scores_of(enough), enough, scores_of(few), few, [0.95, 0.99])
    assert not any(p["set_by_few_images"] for p in metrics["operating_points"])
    assert "\n" not in summary_line(metrics) and "warning" not in summary_line(metrics)
