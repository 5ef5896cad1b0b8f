"""A workload whose trials fail at random: the case that fooled the old verdict rule (issue 13).

Every trial fails with probability 1/2, independently per seed and setting (its own random stream, seeded by
both), whatever `variant` says, except `variant = REMEDY`: a real remedy, which never fails and whose healthy
score is one standard deviation higher. A failed trial learns nothing: its score stays at chance (0), so the
diagnosis calls it `collapsed`. Variants 1..19 change nothing. numpy only; a trial takes milliseconds.
"""

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from sweeper.workload import Range

METRIC, MODE = "score", "max"
CHANCE = 0.0
SMOKE: dict = {}
REMEDY = 20
HEALTHY_MEAN, HEALTHY_SD = 0.6, 0.1


@dataclass(frozen=True)
class Config:
    variant: Annotated[int, Range(0, REMEDY)] = 0
    """0 is the failing setup; 1..19 change nothing; REMEDY (20) is the real remedy."""
    steps: Annotated[int, Range(1, 100)] = 3
    """Reports per trial."""
    seed: int = 0
    """Seeds the trial's random stream together with the variant."""


def train(config: Config, report) -> None:
    rng = np.random.default_rng([config.seed, config.variant])
    remedy = config.variant == REMEDY
    fails = not remedy and rng.random() < 0.5
    final = 0.0 if fails else HEALTHY_MEAN + HEALTHY_SD * (float(rng.standard_normal()) + (1.0 if remedy else 0.0))
    for step in range(1, config.steps + 1):
        report({"step": step, "loss": 1.0 / step, "grad_norm": 1.0, METRIC: final * step / config.steps})
