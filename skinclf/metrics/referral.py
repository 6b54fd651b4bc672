"""What referral does to an evaluated set (metrics.json's ``referral``): how many images the policy refers to be
decided by hand, the AUROC, the error and the recall and specificity at each operating point on the images it keeps
against all of them, and the risk-coverage curve: the same figures as the highest-scored images are referred, a share
at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from skinclf.metrics.curves import auroc, rank, rates_at_threshold
from skinclf.metrics.decisions import DecisionPolicy

#: The shares of the evaluated images referred along the risk-coverage curve.
REFERRED_SHARES = np.round(np.linspace(0, 0.5, 11), 2)


def _rate(value: np.ndarray) -> float | None:
    return None if np.isnan(value[0]) else float(value[0])


def recall_and_specificity(images: pd.DataFrame, threshold: float) -> dict[str, float | None]:
    rates = rates_at_threshold(images["probability"].to_numpy(), images["label"].to_numpy(), threshold)
    return {"recall": _rate(rates["recall"]), "specificity": _rate(rates["specificity"])}


def risk_coverage(test: pd.DataFrame, policy: DecisionPolicy) -> list[dict]:
    """For each share of REFERRED_SHARES, the recall and specificity at each operating point, and the error at the
    first, on the images kept when that share, the highest referral scores, is referred."""
    scores = policy.referral.scores(test["probability"].to_numpy(), test["ood_score"].to_numpy(), policy.thresholds)
    by_novelty = test.iloc[np.argsort(-scores, kind="stable")]
    curve = []
    for share in REFERRED_SHARES:
        kept = by_novelty.iloc[round(float(share) * len(test)) :]
        points = {key: recall_and_specificity(kept, t) for key, t in policy.thresholds.items()}
        curve.append({"share_referred": float(share), "operating_points": points, "error": error_of(kept, policy)})
    return curve


def error_of(images: pd.DataFrame, policy: DecisionPolicy) -> float | None:
    """The share of the images decided wrongly at the first operating point (None without one, or without images)."""
    if not policy.thresholds or images.empty:
        return None
    decided = images["probability"].to_numpy() >= next(iter(policy.thresholds.values()))
    return float(np.mean(decided != (images["label"].to_numpy() == 1)))


def kept_auroc(images: pd.DataFrame) -> float | None:
    """The AUROC of the images (None without both classes)."""
    labels = images["label"].to_numpy()
    return float(auroc(rank(images["probability"].to_numpy(), labels))[0]) if 0 < labels.sum() < len(labels) else None


def referral_figures(test: pd.DataFrame, policy: DecisionPolicy) -> dict | None:
    """metrics.json's ``referral`` of the evaluated (test) images; None where the model refers nothing."""
    if policy.referral is None or "ood_score" not in test.columns:
        return None
    referred = policy.referred(test["probability"].to_numpy(), test["ood_score"].to_numpy())
    kept = test[~referred]
    return {
        "rate_on_validation": policy.referral.rate,
        "referred": int(referred.sum()),
        "share_referred": float(referred.mean()),
        "malignant_referred": int(test.loc[referred, "label"].sum()),
        "auroc": {"all": kept_auroc(test), "kept": kept_auroc(kept)},
        "error_at_first_point": {"all": error_of(test, policy), "kept": error_of(kept, policy)},
        "operating_points": [
            {
                "target_recall": float(key),
                "all": recall_and_specificity(test, threshold),
                "kept": recall_and_specificity(kept, threshold),
            }
            for key, threshold in policy.thresholds.items()
        ],
        "risk_coverage": risk_coverage(test, policy),
    }
