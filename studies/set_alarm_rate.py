"""How often the shipped set alarm fires: on sets drawn from a model's own test split (false alarms), from another
clinic's dermoscopy and from clinical photographs, with skinclf's own novelty score and test.

It reads the early statistics that studies/referral_rule.py keeps for each run (``<out>/<recipe>/<run>/*.npz``: the
training bank, validation, own test, the other clinic and the photographs), scores every image as a checkpoint does
(skinclf.models.novelty.Familiarity, fitted on the bank) and tests drawn sets of SET_SIZE images against the
validation images' scores as evaluate, predict and serve do (skinclf.metrics.shift.ks_test, 999 permutations,
level 0.01). referral_rule.py drew 50 sets a run; at a level of 0.01 that cannot show a rate below 1 %, so this
draws more.

    python studies/set_alarm_rate.py --study <referral_rule.py --out> --draws 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from skinclf.metrics.shift import LEVEL, ks_test
from skinclf.models.novelty import Familiarity

SET_SIZE = 100
FOREIGN = ("other", "photos")


def fire_rates(run: Path, draws: int, foreign_draws: int) -> dict[str, float]:
    """The share of drawn sets of each kind on which the alarm fires."""
    names = ("bank", "val", "test", *FOREIGN)
    early = {name: torch.from_numpy(np.load(run / f"{name}.npz")["early"]) for name in names}
    familiarity = Familiarity.fit(early["bank"], early["val"])
    scores = {name: familiarity.score(statistics).numpy() for name, statistics in early.items()}
    rng = np.random.default_rng(0)
    rates = {}
    for name, count in (("test", draws), *((name, foreign_draws) for name in FOREIGN)):
        fired = [
            ks_test(scores["val"], rng.choice(scores[name], SET_SIZE, replace=False), seed=draw).p_value < LEVEL
            for draw in range(count)
        ]
        rates[name] = float(np.mean(fired))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="studies/referral_rule.py's --out folder")
    parser.add_argument("--draws", type=int, default=1000, help="sets drawn from each own test split")
    parser.add_argument("--foreign-draws", type=int, default=100, help="sets drawn from each foreign set")
    arguments = parser.parse_args()
    by_recipe: dict[str, list[dict[str, float]]] = {}
    for run in sorted(arguments.study.glob("*/*-plain-*")):
        if not all((run / f"{name}.npz").is_file() for name in ("bank", "val", "test", *FOREIGN)):
            continue  # referral_rule.py has not finished this run
        rates = fire_rates(run, arguments.draws, arguments.foreign_draws)
        by_recipe.setdefault(run.parent.name, []).append(rates)
        print(f"{run.parent.name}/{run.name}: fires on " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    for recipe, runs in by_recipe.items():
        own = sum(r["test"] for r in runs) * arguments.draws
        print(
            f"{recipe} ({len(runs)} runs): own test {int(own)} of {len(runs) * arguments.draws} draws; "
            + ", ".join(f"{name} {np.mean([r[name] for r in runs]):.3f}" for name in FOREIGN)
        )


if __name__ == "__main__":
    main()
