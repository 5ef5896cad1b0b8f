"""A tiny workload for the tests (no numpy): the score grows with lr * step; shape b reports its own
chance level, which a declared CHANCE must not overwrite."""

from dataclasses import dataclass
from typing import Annotated, Literal

from sweeper.workload import Range


@dataclass(frozen=True)
class Config:
    shape: Literal["a", "b"] = "a"
    """Which shape."""
    lr: Annotated[float, Range(0.0, 1.0, low_open=True)] = 0.1
    """Learning rate."""
    steps: Annotated[int, Range(1, 100)] = 3
    """Steps, one report each."""
    seed: int = 0
    """Seed."""


METRIC = "score"
MODE = "max"
CHANCE = 0.0
SMOKE = {"steps": 2}


def train(config, report):
    for step in range(1, config.steps + 1):
        metrics = {"step": step, "loss": 1.0 / step, "grad_norm": 1.0, "score": config.lr * step}
        report({**metrics, "chance": -1.0} if config.shape == "b" else metrics)
