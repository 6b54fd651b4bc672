"""Decision thresholds chosen on validation predictions, one per target recall."""

from __future__ import annotations

import pandas as pd

from skinclf.metrics.curves import best_precision_at_recall, rank
from skinclf.metrics.figures import recall_key


def threshold_for_recall(validation: pd.DataFrame, target_recall: float) -> float:
    """The threshold with the highest validation precision among those reaching target_recall."""
    ranked = rank(validation["probability"].to_numpy(), validation["label"].to_numpy())
    return float(best_precision_at_recall(ranked, target_recall)[1][0])


def thresholds_for_recalls(validation: pd.DataFrame, target_recalls: list[float]) -> dict[str, float]:
    """{target recall as text: threshold} for each target."""
    return {recall_key(target): threshold_for_recall(validation, target) for target in target_recalls}
