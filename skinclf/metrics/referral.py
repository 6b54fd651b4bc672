"""What referral does to an evaluated set (metrics.json's ``referral``): how many images the policy refers as unlike
those the model knows, the recall and specificity at each operating point on the images it keeps against all of
them, and the risk-coverage curve: the same figures as the most novel images are referred, a share at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from skinclf.metrics.curves import rates_at_threshold
from skinclf.metrics.decisions import DecisionPolicy

#: The shares of the evaluated images referred along the risk-coverage curve.
REFERRED_SHARES = np.round(np.linspace(0, 0.5, 11), 2)


def _rate(value: np.ndarray) -> float | None:
    return None if np.isnan(value[0]) else float(value[0])


def recall_and_specificity(images: pd.DataFrame, threshold: float) -> dict[str, float | None]:
    rates = rates_at_threshold(images["probability"].to_numpy(), images["label"].to_numpy(), threshold)
    return {"recall": _rate(rates["recall"]), "specificity": _rate(rates["specificity"])}


def risk_coverage(test: pd.DataFrame, policy: DecisionPolicy) -> list[dict]:
    """For each share of REFERRED_SHARES, the recall and specificity at each operating point on the images kept when
    that share, the highest ood_scores, is referred."""
    by_novelty = test.iloc[np.argsort(-test["ood_score"].to_numpy(), kind="stable")]
    curve = []
    for share in REFERRED_SHARES:
        kept = by_novelty.iloc[round(float(share) * len(test)) :]
        points = {key: recall_and_specificity(kept, t) for key, t in policy.thresholds.items()}
        curve.append({"share_referred": float(share), "operating_points": points})
    return curve


def referral_figures(test: pd.DataFrame, policy: DecisionPolicy) -> dict | None:
    """metrics.json's ``referral`` of the evaluated (test) images; None where the model refers nothing."""
    if policy.referral is None or "ood_score" not in test.columns:
        return None
    referred = policy.referred(test["ood_score"].to_numpy())
    kept = test[~referred]
    return {
        "rate_on_validation": policy.referral.rate,
        "threshold": policy.referral.threshold,
        "referred": int(referred.sum()),
        "share_referred": float(referred.mean()),
        "malignant_referred": int(test.loc[referred, "label"].sum()),
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
