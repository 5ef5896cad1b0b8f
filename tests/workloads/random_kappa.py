"""A built-in-style workload that learns nothing: its "model" predicts balanced labels at random, independent
of 200 validation labels, and reports Cohen's kappa with the no-skill level the contract asks for
(`sweeper.no_skill`: its predictions shuffled against the targets). For the no-skill acceptance test."""

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from sweeper.no_skill import no_skill_level, shuffle_draws
from sweeper.workload import Range


@dataclass(frozen=True)
class Config:
    note: Literal["a", "b"] = "a"
    """A label that changes nothing."""
    epochs: Annotated[int, Range(1, 100)] = 5
    """Reports, one an epoch."""
    n_val: Annotated[int, Range(10, 100_000)] = 200
    """Validation examples."""
    seed: int = 0
    """Seeds the labels and the predictions."""


METRIC = "val_kappa"
MODE = "max"
CHANCE = 0.0
SMOKE = {"epochs": 2}


def kappa(targets: np.ndarray, predictions: np.ndarray) -> float:
    observed = np.mean(predictions == targets)
    expected = predictions.mean() * targets.mean() + (1 - predictions.mean()) * (1 - targets.mean())
    return 0.0 if expected == 1.0 else float((observed - expected) / (1.0 - expected))


def train(config: Config, report) -> None:
    rng = np.random.default_rng(config.seed)
    targets = rng.integers(0, 2, config.n_val)
    shuffles = np.random.default_rng(config.seed + 1)

    def score(shown: np.ndarray) -> float:
        return kappa(targets, shown)

    for epoch in range(1, config.epochs + 1):
        predictions = rng.integers(0, 2, config.n_val)  # nothing learned: independent of the targets
        report(
            {
                "step": epoch,
                "loss": 0.69,
                "grad_norm": 1.0,
                METRIC: score(predictions),
                "oracle": 1.0,
                "no_skill": no_skill_level(shuffle_draws(score, predictions, shuffles), MODE),
            }
        )
