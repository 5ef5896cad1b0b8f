"""The no-skill level: what a trial's metric must pass to be told apart from a model that learned nothing.

A workload draws its metric as a model that learned nothing would score on the trial's own evaluation: the
model's final predictions shuffled against the targets (a Keras program, the BiLSTM), its scores shuffled
within each list (the rankers), a uniformly random policy on the same evaluation episodes (DQN).
`no_skill_level` turns NO_SKILL_DRAWS such draws into the level, reported as `no_skill`, that a model that
learned nothing passes with probability at most FALSE_HEALTHY_RATE (`sweeper.health` reads it).

Pure: numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

FALSE_HEALTHY_RATE = 0.01
"""The share of trials of a model that learned nothing that may pass its no-skill level: stated, not tuned."""
NO_SKILL_DRAWS = 99
"""Draws behind the no-skill level: (99 + 1) x 0.01 = 1, so a trial must beat all of them. Chosen for its cost
(about a second a trial), not by looking at any result."""


def no_skill_level(draw: Callable[[], float | None], mode: str, draws: int = NO_SKILL_DRAWS) -> float | None:
    """The value a trial's metric must pass (in MODE's direction) to be told apart from a model that learned
    nothing at FALSE_HEALTHY_RATE, from `draws` calls of `draw()`, each the metric of such a model on this
    trial's evaluation. With R draws and alpha that rate, the Monte Carlo p-value
    (1 + #draws at least as good) / (R + 1) is at most alpha exactly when the metric passes the
    floor(alpha (R + 1))-th best draw. Where the trial's model is itself one more such draw (exchangeable
    with them: shuffled predictions of a model whose predictions carry nothing, a policy no better than
    random), it passes with probability at most alpha. None where a draw cannot be computed."""
    values = []
    for _ in range(draws):
        value = draw()
        if value is None or not math.isfinite(value):
            return None
        values.append(value)
    best_first = sorted(values, reverse=mode == "max")
    return best_first[math.floor(FALSE_HEALTHY_RATE * (draws + 1)) - 1]


def shuffle_draws(
    metric: Callable[[Any], float | None], predictions: Any, rng: Any, axis: int = 0
) -> Callable[[], float | None]:
    """Draws for `no_skill_level`: METRIC of PREDICTIONS (a numpy array) permuted along AXIS by RNG, a
    `numpy.random.Generator`; along 0, against the targets; along 1, within each row (the documents of one
    list) independently: a random ranking of the same lists."""

    def draw() -> float | None:
        if axis == 0:
            return metric(predictions[rng.permutation(len(predictions))])
        return metric(rng.permuted(predictions, axis=axis))

    return draw
