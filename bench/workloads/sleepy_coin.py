"""A workload whose trials sleep for a set time and fail at random, for measuring how busy the slots stay
while sweeps with trials of different lengths run their rounds (bench/uneven_rounds.py).

Every trial fails with probability 1/2 (its own random stream, seeded by the seed and the variant), except
`variant = REMEDY`, which never fails and scores one standard deviation higher: so an adaptive design drops
some points at each look and runs several rounds. A trial sleeps `seconds` in `steps` equal parts and uses
no CPU to speak of, so the slots' busy share measures the harness, not the machine's load.
"""

import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from sweeper.workload import Range

METRIC, MODE = "score", "max"
CHANCE = 0.0
SMOKE: dict = {}
REMEDY = 5


@dataclass(frozen=True)
class Config:
    variant: Annotated[int, Range(0, REMEDY)] = 0
    """0 is the failing setup; 1..4 change nothing; REMEDY (5) is the real remedy."""
    seconds: Annotated[float, Range(0.01, 600.0)] = 1.0
    """How long a trial takes."""
    steps: Annotated[int, Range(1, 100)] = 3
    """Reports per trial."""
    seed: int = 0
    """Seeds the trial's random stream together with the variant."""


def train(config: Config, report) -> None:
    rng = np.random.default_rng([config.seed, config.variant])
    remedy = config.variant == REMEDY
    fails = not remedy and rng.random() < 0.5
    final = 0.0 if fails else 0.6 + 0.1 * (float(rng.standard_normal()) + (1.0 if remedy else 0.0))
    for step in range(1, config.steps + 1):
        time.sleep(config.seconds / config.steps)
        report({"step": step, "loss": 1.0 / step, "grad_norm": 1.0, METRIC: final * step / config.steps})
