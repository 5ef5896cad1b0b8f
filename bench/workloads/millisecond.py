"""A workload whose trials take about a millisecond, for measuring what a harness costs per trial
(bench/scale.py): three reports of a score that depends on the grid point and the seed."""

import random
from dataclasses import dataclass
from typing import Annotated

from sweeper.workload import Range


@dataclass(frozen=True)
class Config:
    point: Annotated[int, Range(0, 1_000_000)] = 0
    """Which grid point; the score rises a little with it."""
    steps: Annotated[int, Range(1, 100)] = 3
    """Reports, one per step."""
    seed: int = 0
    """Seed of the score's noise."""


METRIC = "score"
MODE = "max"
CHANCE = 0.0
SMOKE = {"steps": 2}


def train(config, report):
    noise = random.Random(config.seed * 1_000_003 + config.point)
    for step in range(1, config.steps + 1):
        score = 0.5 + 0.001 * config.point + 0.01 * step + 0.05 * noise.random()
        report({"step": step, "loss": 1.0 / step, "grad_norm": 1.0, "score": score})
