"""The no-skill level (`sweeper.no_skill`): the best of the draws a trial must pass, and its stated rate."""

import numpy as np
import pytest
from scipy import stats

from sweeper.no_skill import FALSE_HEALTHY_RATE, NO_SKILL_DRAWS, no_skill_level, shuffle_draws


def accuracy_against(targets):
    return lambda predictions: float(np.mean((predictions > 0.5) == targets))


def test_the_no_skill_level_is_the_best_draw_a_trial_must_pass():
    targets = np.array([0, 1] * 50)
    accuracy = accuracy_against(targets)
    perfect = targets.astype(float)
    rng = np.random.default_rng(3)
    level = no_skill_level(shuffle_draws(accuracy, perfect, rng), "max")
    assert 0.5 < level < 1.0  # the best of 99 shuffles: above a typical one, below the truth
    # with R + 1 = 100 and alpha 0.01 a trial must pass all 99 draws: the level is their best
    draws = np.random.default_rng(3)
    assert level == max(accuracy(perfect[draws.permutation(100)]) for _ in range(NO_SKILL_DRAWS))
    losses = iter(range(NO_SKILL_DRAWS))
    assert no_skill_level(lambda: float(next(losses)), "min") == 0.0  # for a loss, the lowest draw
    assert no_skill_level(lambda: None, "max") is None  # a metric it cannot compute
    assert no_skill_level(lambda: float("nan"), "max") is None


def test_draws_shuffle_against_the_targets_or_within_each_list():
    scores = np.arange(12.0).reshape(3, 4)
    seen = []
    shuffle_draws(seen.append, scores, np.random.default_rng(0), axis=1)()
    assert np.array_equal(np.sort(seen[0], axis=1), scores)  # each row, permuted within itself
    assert not np.array_equal(seen[0], scores)
    shuffle_draws(seen.append, scores, np.random.default_rng(0))()
    assert np.array_equal(np.sort(seen[1], axis=0), scores) and not np.array_equal(seen[1], scores)  # whole rows


@pytest.mark.parametrize("axis", [0, 1])
def test_a_model_that_learned_nothing_passes_its_no_skill_level_at_most_one_time_in_a_hundred(axis):
    """1000 simulated trials whose predictions are independent of their balanced validation labels
    (random-number seeds below 1000), shuffled against the targets (axis 0) or within lists of 10 (axis 1):
    the count whose accuracy passes the level is consistent with the stated 1% (one-sided binomial test at
    0.001, so this test fails by chance once in a thousand; a real rate of 3% fails it 95 times in 100). The
    rule is exact by construction (the trial is one more draw); this checks the code does what it says."""
    rng = np.random.default_rng(11 + axis)
    passed = 0
    for _ in range(1000):
        targets = rng.permutation(np.repeat([0, 1], 100)).reshape(-1, 10)
        predictions = rng.random((20, 10))
        accuracy = accuracy_against(targets)
        passed += accuracy(predictions) > no_skill_level(shuffle_draws(accuracy, predictions, rng, axis), "max")
    assert stats.binomtest(passed, 1000, FALSE_HEALTHY_RATE, alternative="greater").pvalue > 0.001, passed
