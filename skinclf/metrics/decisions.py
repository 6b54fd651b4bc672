"""The decision policy: what a trained model decides with, for an evaluation setting.

For each target recall a threshold (malignant when the probability is at least it), chosen by a rule on labelled
predictions: the model's validation, or a clinic's own sample (``evaluation.threshold_source``); and, with
``evaluation.calibration=temperature``, the temperature fitted on the same predictions, the thresholds being chosen
on the calibrated ones. The end of training, evaluate, predict, export and ensemble all take their decisions from
:func:`choose_policy`, which refuses a sample it cannot decide on; the bootstrap re-chooses each threshold by the same
rule in every resample (:meth:`ThresholdRule.thresholds`, in :mod:`skinclf.metrics.figures`).

The rules (``evaluation.threshold_rule``):

- ``highest_precision``: the highest precision among thresholds whose recall on the sample reaches the target. Its
  recall elsewhere reaches the target about half the time: the sample's recall is an estimate.
- ``guaranteed``: the highest threshold whose recall is at least the target with probability at least
  ``evaluation.threshold_confidence`` (1 - delta) over draws of the sample, by Learn-then-Test (Angelopoulos et al.
  2021) with the exact binomial test of the miss rate and fixed-sequence testing from the lowest threshold up. The
  misses of a threshold only grow as it rises, so the tests stop at the first that fails, which gives a closed form:
  with n malignant images, k the largest count with P(Binomial(n, 1 - r) <= k) <= delta, the threshold is the
  (k + 1)-th lowest malignant score (P(recall < r) <= P(Binomial(n, 1 - r) <= k) <= delta). It needs at least
  log(delta) / log(r) malignant images (59 for r = 0.95, 299 for r = 0.99 at delta = 0.05). MAPIE's
  BinaryClassificationController implements the same test on a grid of thresholds; the tests check this against it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binom

from skinclf.config.schema import EvaluationSettings
from skinclf.core.errors import SkinclfError
from skinclf.metrics.calibration import fit_temperature, logits_of, scaled
from skinclf.metrics.curves import RankedCounts, best_precision_at_recall, rank
from skinclf.metrics.diagnosis import PROBABILITY_PREFIX

#: What a model's own validation predictions are called where a policy says what it was chosen on.
VALIDATION = "the model's validation split"
#: What the referral weighs, for the record.
NOVELTY_SCORE = (
    "the larger of: how near the decision and how unusual an image is, averaged; how unusual it is alone. Unusual: "
    "the kNN distance of its early statistics (the channels' mean and spread at 1/4 of its side) to the training "
    "images'"
)
#: The fewest malignant images the highest-precision rule decides on: with fewer, the sample's recall moves in steps
#: of more than 0.1 and every target of 0.9 or above falls on its lowest-scored malignant image.
MIN_MALIGNANT = 10


def recall_key(target_recall: float) -> str:
    """'0.999' for 0.999: the suffix of metric names that belong to a target recall."""
    return f"{target_recall:g}"


def allowed_misses(malignant: np.ndarray, target_recall: float, confidence: float) -> np.ndarray:
    """For each count of malignant images, the most of them a guaranteed threshold may miss (-1: none can be set)."""
    counts = np.atleast_1d(np.asarray(malignant, dtype=np.int64))
    misses = np.arange(int(counts.max(initial=0)) + 1)
    tail = binom.cdf(misses[None, :], counts[:, None], 1 - target_recall)  # P(Binomial(n, 1 - r) <= k)
    return ((tail <= 1 - confidence) & (misses[None, :] <= counts[:, None])).sum(axis=1) - 1


@dataclass(frozen=True)
class ThresholdRule:
    """How a threshold for a target recall is chosen on labelled predictions; ``confidence`` for ``guaranteed``."""

    name: str
    confidence: float | None = None

    @property
    def how(self) -> str:
        """The rule in words, for metrics.json and the reports."""
        if self.name == "guaranteed":
            return (
                f"the highest threshold whose recall is at least the target with {self.confidence:.0%} confidence "
                "(Learn-then-Test, exact binomial test of the misses, fixed-sequence testing)"
            )
        if self.name == "given":
            return "given on the command line"
        return "the highest precision among thresholds whose recall on the sample reaches the target"

    def thresholds(self, ranked: RankedCounts, target_recall: float) -> np.ndarray:
        """The threshold of each row of ranked predictions (NaN where the rule can set none)."""
        if self.name != "guaranteed":
            return best_precision_at_recall(ranked, target_recall)[1]
        positives = ranked.positives.astype(np.int64)
        misses = allowed_misses(positives, target_recall, self.confidence)
        # the (misses + 1)-th lowest malignant score is the (positives - misses)-th highest
        wanted = positives - misses
        is_malignant = np.diff(ranked.tp, axis=-1, prepend=0) == 1
        position = np.argmax(is_malignant & (ranked.tp == wanted[:, None]), axis=-1)
        chosen = np.take_along_axis(ranked.scores, position[:, None], axis=-1)[:, 0]
        return np.where(misses >= 0, chosen, np.nan)

    def fewest_malignant(self, target_recall: float) -> int:
        """The fewest malignant images the rule sets a threshold for the target on."""
        if self.name == "guaranteed":
            return math.ceil(math.log(1 - self.confidence) / math.log(target_recall) - 1e-9)
        return MIN_MALIGNANT


#: The rule unless the evaluation settings ask for another.
HIGHEST_PRECISION = ThresholdRule("highest_precision")


def threshold_rule(evaluation: EvaluationSettings) -> ThresholdRule:
    """The rule the evaluation settings ask for."""
    guaranteed = evaluation.threshold_rule == "guaranteed"
    return ThresholdRule(evaluation.threshold_rule, evaluation.threshold_confidence if guaranteed else None)


def highest_guaranteed_target(confidence: float, malignant: int) -> float | None:
    """The highest target recall (two decimals, down) the guaranteed rule can set a threshold for on this many
    malignant images (its need, log(1 - confidence) / log(r), falls with the target); None where none."""
    if malignant < 1:
        return None
    highest = math.floor(100 * (1 - confidence) ** (1 / malignant)) / 100
    return highest if highest > 0 else None


@dataclass(frozen=True)
class Undecided:
    """Why no threshold was set for a target: the malignant images the sample held and the rule's need."""

    target_recall: float
    malignant: int
    benign: int
    needed: int

    @property
    def reason(self) -> str:
        if self.benign == 0:
            return f"not decided: no benign image to measure the precision against ({self.malignant} malignant)"
        return f"not decided: {self.malignant} malignant images, {self.needed} needed"


def undecided_targets(labels: np.ndarray, rule: ThresholdRule, target_recalls: Sequence[float]) -> dict[str, Undecided]:
    """The targets the labelled sample cannot decide, by recall_key: without both classes, none; otherwise those whose
    rule needs more malignant images than it holds."""
    malignant = int(np.sum(labels))
    benign = len(labels) - malignant
    return {
        recall_key(r): Undecided(r, malignant, benign, rule.fewest_malignant(r))
        for r in target_recalls
        if malignant == 0 or benign == 0 or malignant < rule.fewest_malignant(r)
    }


def what_decides(rule: ThresholdRule, undecided: dict[str, Undecided], chosen_on: str, cap: str | None = None) -> str:
    """What would decide the undecided targets, naming settings that work for these counts: a labelled sample with
    enough malignant images; a lower target where the rule's need falls with it (the guaranteed rule's); more
    validation where the split can give it (``cap``: why it cannot, when training)."""
    if not undecided:
        return ""
    first = next(iter(undecided.values()))
    needed = max(u.needed for u in undecided.values())
    ways = [
        f"choose the thresholds on a labelled sample with both classes and at least {needed} malignant images "
        "(evaluation.threshold_source=<folder or CSV>)"
    ]
    lower = highest_guaranteed_target(rule.confidence, first.malignant) if rule.name == "guaranteed" else None
    if lower is not None and first.benign:
        ways.append(
            f"lower the target to what {first.malignant} malignant images can guarantee "
            f"(evaluation.target_recalls=[{lower:g}])"
        )
    elif rule.name != "guaranteed":
        ways.append(
            f"the rule '{rule.name}' needs {MIN_MALIGNANT} malignant images for every target, so a lower "
            "target does not help"
        )
    if cap is not None:
        ways.append(cap)
    return f"{chosen_on} cannot decide them: " + "; ".join(ways)


def refuse_undecided(undecided: dict[str, Undecided], chosen_on: str, rule: ThresholdRule) -> None:
    """Stop a command asked to decide on a sample (evaluation.threshold_source) that cannot, with its counts."""
    if undecided:
        reasons = ", ".join(f"recall >= {key}: {u.reason}" for key, u in undecided.items())
        raise SkinclfError(
            f"no decision can be made on {chosen_on} by the rule '{rule.name}' ({reasons}): "
            + what_decides(rule, undecided, chosen_on).split(": ", 1)[1]
        )


#: The share of the referral rate given to the images unlike any the model knows (their novelty alone); the rest goes
#: to the images both near a decision and unusual (studies/referral_rule.py, docs/evaluation.md).
UNLIKE_SHARE = 0.2
#: The quantiles of the model's own validation scores a referral keeps, to place any score among them.
QUANTILES = np.linspace(0, 1, 101)


def percentile_among(quantiles: Sequence[float], scores: np.ndarray) -> np.ndarray:
    """Where each score lies among scores whose QUANTILES are given: the share of them below it (0 to 1)."""
    return np.interp(np.asarray(scores, dtype=float), np.asarray(quantiles), QUANTILES)


def margin_of(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """How near the decision each probability lies: minus the distance of its logit from the threshold's."""
    return -np.abs(logits_of(probabilities) - logits_of(np.array(threshold)))


@dataclass(frozen=True)
class Referral:
    """Which images are referred, to be decided by hand: ``rate`` of the model's own validation images.

    Two kinds, each placed among the validation images' (a percentile): an image unlike every image the model knows,
    whose novelty score is above all but UNLIKE_SHARE of the rate of them (a photograph that is not dermoscopy); and
    an image both near the decision at the operating point ``at`` and unusual, whose two percentiles averaged lie above
    ``threshold``, which fills the rest of the rate on validation. Without an operating point to be near, the novelty
    alone at the whole rate. ``novelty``, ``margin`` and ``near``: the validation scores' QUANTILES.
    """

    rate: float
    threshold: float
    chosen_on: str
    novelty: list[float]
    at: str | None = None
    margin: list[float] | None = None
    near: list[float] | None = None
    score: str = NOVELTY_SCORE

    @property
    def unlike_share(self) -> float:
        return UNLIKE_SHARE * self.rate if self.at is not None else self.rate

    def unusual(self, ood_scores: np.ndarray) -> np.ndarray:
        """The share of the model's own validation images less unusual than each image (NaN where it has no score)."""
        scores = np.asarray(ood_scores, dtype=float)
        return np.where(np.isnan(scores), np.nan, percentile_among(self.novelty, scores))

    def nearness(self, probabilities: np.ndarray, ood_scores: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
        """How near the decision and how unusual each image is, averaged and placed among the validation images'."""
        margin = percentile_among(self.margin, margin_of(probabilities, thresholds[self.at]))
        return percentile_among(self.near, (margin + self.unusual(ood_scores)) / 2)

    def scores(self, probabilities: np.ndarray, ood_scores: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
        """Each image's referral score: positive where it is referred, higher the sooner (-inf: no novelty score)."""
        parts = [self.unusual(ood_scores) - (1 - self.unlike_share)]
        if self.at is not None:
            parts.append(self.nearness(probabilities, ood_scores, thresholds) - self.threshold)
        return np.nan_to_num(np.max(parts, axis=0), nan=-np.inf)


def referral_of(validation: pd.DataFrame, rate: float, chosen_on: str, thresholds: dict[str, float]) -> Referral | None:
    """The referral that refers ``rate`` of the model's own validation images (at the policy's temperature), near the
    first decided operating point; None where the model has no novelty score or refers none."""
    if "ood_score" not in validation.columns or rate == 0:
        return None
    quantiles = lambda values: [float(v) for v in np.quantile(values, QUANTILES)]  # noqa: E731
    ood, probabilities = validation["ood_score"].to_numpy(), validation["probability"].to_numpy()
    novelty = quantiles(ood)
    at = next(iter(thresholds), None)
    if at is None:
        return Referral(rate, 1.0, chosen_on, novelty)
    margins = margin_of(probabilities, thresholds[at])
    margin = quantiles(margins)
    unusual = percentile_among(novelty, ood)
    near_and_unusual = (percentile_among(margin, margins) + unusual) / 2
    referral = Referral(rate, 1.0, chosen_on, novelty, at, margin, quantiles(near_and_unusual))
    nearness = percentile_among(referral.near, near_and_unusual)
    unlike = unusual > 1 - referral.unlike_share
    rest = max(0, round(rate * len(validation)) - int(unlike.sum()))  # the near images that fill the rate
    ranked = np.sort(nearness[~unlike])[::-1]
    threshold = float(ranked[rest]) if rest < len(ranked) else -np.inf
    return dataclasses.replace(referral, threshold=threshold)


@dataclass(frozen=True)
class DecisionPolicy:
    """A threshold per target recall (by recall_key), the rule that chose them, the temperature the probabilities are
    taken at (None: as the model gives them), and the labelled images they were chosen on; the targets those images
    could not decide have no threshold (``undecided``): the model then gives probabilities, not decisions, there."""

    thresholds: dict[str, float]
    rule: ThresholdRule
    temperature: float | None
    malignant_diagnoses: tuple[str, ...] | None
    chosen_on: str
    images: int
    malignant: int
    referral: Referral | None = None
    #: the targets the sample could not decide (by recall_key), and why: they have no threshold
    undecided: dict[str, Undecided] = dataclasses.field(default_factory=dict)

    def calibrated(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """The predictions at the policy's temperature (a diagnosis head's diagnoses too)."""
        if self.temperature is None:
            return predictions
        return scaled(predictions, self.temperature, list(self.malignant_diagnoses or []))

    @property
    def operating_points(self) -> dict[str, float]:
        """Each threshold by its operating point's name: at_recall_<target>, or at_<threshold> for one given."""
        prefix = "at_" if self.rule.name == "given" else "at_recall_"
        return {prefix + key: threshold for key, threshold in self.thresholds.items()}

    def decisions(self, probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """Malignant (True) or benign at each operating point, by its name."""
        return {name: probabilities >= threshold for name, threshold in self.operating_points.items()}

    def referred(self, probabilities: np.ndarray, ood_scores: np.ndarray) -> np.ndarray:
        """Which images it refers rather than decides: scored above its referral threshold (none without one)."""
        if self.referral is None:
            return np.zeros(len(ood_scores), dtype=bool)
        return self.referral.scores(probabilities, ood_scores, self.thresholds) > 0

    @classmethod
    def of_record(cls, record: dict, temperature_inside: bool = False) -> DecisionPolicy:
        """The policy its :meth:`record` describes (an export's JSON); ``temperature_inside``: the probabilities are
        calibrated already (an exported model applies its temperature itself)."""
        referral = record["referral"]
        undecided = {key: Undecided(**value) for key, value in record.get("undecided", {}).items()}
        return cls(
            {key: float(threshold) for key, threshold in record["thresholds"].items()},
            ThresholdRule(record["rule"], record.get("confidence")),
            None if temperature_inside else record["temperature"],
            None,
            record["chosen_on"],
            record["images"],
            record["malignant"],
            Referral(**referral) if referral is not None else None,
            undecided,
        )

    def record(self) -> dict:
        """What metrics.json, the reports and an export's description say of it."""
        return {
            "referral": dataclasses.asdict(self.referral) if self.referral is not None else None,
            "rule": self.rule.name,
            "how": self.rule.how,
            **({"confidence": self.rule.confidence} if self.rule.confidence is not None else {}),
            "thresholds": self.thresholds,
            **({"undecided": {k: dataclasses.asdict(u) for k, u in self.undecided.items()}} if self.undecided else {}),
            "temperature": self.temperature,
            "chosen_on": self.chosen_on,
            "images": self.images,
            "malignant": self.malignant,
        }


def choose_thresholds(sample: pd.DataFrame, target_recalls: Sequence[float], rule: ThresholdRule) -> dict[str, float]:
    """The threshold for each target recall, chosen by the rule on labelled (calibrated) predictions."""
    ranked = rank(sample["probability"].to_numpy(), sample["label"].to_numpy())
    return {recall_key(r): float(rule.thresholds(ranked, r)[0]) for r in target_recalls}


def choose_policy(
    sample: pd.DataFrame,
    chosen_on: str,
    evaluation: EvaluationSettings,
    malignant_diagnoses: Sequence[str] | None,
    referral: Referral | None = None,
    must_decide: bool = False,
) -> DecisionPolicy:
    """The policy chosen on a labelled sample of the model's predictions (its thresholds on the sample at its
    temperature), with its referral. The targets the sample cannot decide are left undecided; with ``must_decide``
    (a sample the user named to decide on) the command is refused instead."""
    rule = threshold_rule(evaluation)
    labels = sample["label"].to_numpy()
    undecided = undecided_targets(labels, rule, evaluation.target_recalls)
    if must_decide:
        refuse_undecided(undecided, chosen_on, rule)
    both_classes = 0 < int(labels.sum()) < len(labels)
    temperature = fit_temperature(sample) if evaluation.calibration == "temperature" and both_classes else None
    malignant = tuple(malignant_diagnoses) if malignant_diagnoses else None
    uncalibrated = DecisionPolicy({}, rule, temperature, malignant, chosen_on, 0, 0)
    decidable = [r for r in evaluation.target_recalls if recall_key(r) not in undecided]
    thresholds = choose_thresholds(uncalibrated.calibrated(sample), decidable, rule)
    counts = len(sample), int(labels.sum())
    return DecisionPolicy(thresholds, rule, temperature, malignant, chosen_on, *counts, referral, undecided)


def policy_at(threshold: float, chosen_on: str) -> DecisionPolicy:
    """One threshold given by the user (predict's threshold=), at the model's own probabilities."""
    return DecisionPolicy({f"{threshold:g}": threshold}, ThresholdRule("given"), None, None, chosen_on, 0, 0)


def with_decisions(predictions: pd.DataFrame, policy: DecisionPolicy) -> pd.DataFrame:
    """The predictions (at the policy's temperature) with a decision column per operating point (``decision_<name>``:
    malignant or benign); unreadable images get no probability and no decision."""
    predictions = policy.calibrated(predictions)
    readable = predictions["error"] == ""
    predictions.loc[~readable, "probability"] = np.nan
    decided = policy.decisions(predictions["probability"].to_numpy())
    for name, malignant in decided.items():
        predictions[f"decision_{name}"] = np.where(readable, np.where(malignant, "malignant", "benign"), "")
    referral = []
    if "ood_score" in predictions:
        predictions.loc[~readable, "ood_score"] = np.nan
        referral.append("ood_score")
    if policy.referral is not None:  # referred: near a decision and unusual, or unlike every image it knows
        ood = predictions["ood_score"].to_numpy()
        predictions["unusual"] = policy.referral.unusual(ood)
        referred = policy.referred(predictions["probability"].to_numpy(), ood)
        predictions["refer"] = np.where(readable, np.where(referred, "true", "false"), "")
        referral += ["unusual", "refer"]
    per_diagnosis = [c for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)]
    columns = [
        "path",
        *(["label"] if "label" in predictions else []),
        "probability",
        *per_diagnosis,
        *referral,
        *(f"decision_{name}" for name in decided),
        "error",
    ]
    return predictions[columns]
