"""PL-Rank-2 of experiments/plrank.py against the exact gradient of the expected DCG@k.

For a small list every top-k ranking y can be enumerated with its Plackett-Luce
probability P(y), so both sides are exact, with no sampling noise:
  exact gradient   dE[DCG@k]/dm = sum_y P(y) DCG(y) sum_i (1[y_i = d] - pi_i(d | y_<i))
  estimator mean   E[w]         = sum_y P(y) plrank2_weights(scores, labels, k, [y])
Unbiasedness means the two agree to float64 rounding, at any score scale with
the masked log-sum-exp numerics; the epsilon-floored "total minus placed"
normaliser is visibly wrong once the scores spread by ~20.
"""

import itertools

import numpy as np
import pytest

from experiments.plrank import gains_of, plrank2_weights, rank_discounts, sample_rankings


def log_prob_and_score(scores, ranking):
    """log P(ranking prefix) under PL and its score function d log P / d scores, computed stably."""
    available = np.ones(len(scores), dtype=bool)
    log_p, score_function = 0.0, np.zeros(len(scores))
    for d in ranking:
        top = scores[available].max()
        log_norm = top + np.log(np.exp(scores[available] - top).sum())
        log_p += scores[d] - log_norm
        score_function -= np.where(available, np.exp(scores - log_norm), 0.0)
        score_function[d] += 1.0
        available[d] = False
    return log_p, score_function


def exact_gradient_and_expected_weights(scores, labels, k, numerics="logsumexp"):
    theta, rho = rank_discounts(k), gains_of(labels)
    gradient, expected = np.zeros(len(scores)), np.zeros(len(scores))
    for ranking in itertools.permutations(range(len(scores)), k):
        ranking = np.array(ranking)
        log_p, score_function = log_prob_and_score(scores, ranking)
        p = np.exp(log_p)
        gradient += p * (theta * rho[ranking]).sum() * score_function
        expected += p * plrank2_weights(scores, labels, k, ranking[None], numerics=numerics)
    return gradient, expected


CASES = [(n, k, seed) for n, k in [(3, 1), (3, 3), (4, 2), (5, 3), (5, 5), (6, 3)] for seed in range(2)]


@pytest.mark.parametrize("n,k,seed", CASES)
def test_unbiased_against_exact_enumeration(n, k, seed):
    rng = np.random.default_rng(seed)
    scores = 2.0 * rng.standard_normal(n)
    labels = rng.integers(0, 5, n)
    labels[0] = 3  # at least one relevant document, so the gradient is not trivially zero
    gradient, expected = exact_gradient_and_expected_weights(scores, labels, k)
    assert np.abs(gradient).max() > 0.01
    np.testing.assert_allclose(expected, gradient, rtol=0, atol=1e-9)
    # PL ignores a shift of all scores, so the exact gradient sums to zero.
    assert abs(gradient.sum()) < 1e-9


@pytest.mark.parametrize("gap", [20.0, 30.0, 50.0])
def test_stable_numerics_exact_at_large_gaps_and_epsilon_floor_wrong(gap):
    # One irrelevant document far above the others; the lower ones still need re-ordering.
    scores = np.array([gap, 0.3, -0.2, 0.1, 0.0])
    labels = np.array([0, 3, 2, 1, 4])
    gradient, stable = exact_gradient_and_expected_weights(scores, labels, 3)
    _, floored = exact_gradient_and_expected_weights(scores, labels, 3, numerics="epsilon")
    assert np.abs(gradient).max() > 0.5
    np.testing.assert_allclose(stable, gradient, rtol=0, atol=1e-9)
    assert np.abs(floored - gradient).max() > 0.3
    # The error is a positive bias (the exact gradient sums to 0): the question's growing weight sum.
    assert floored.sum() > 0.3


def test_epsilon_floor_is_harmless_while_scores_are_close():
    scores = np.array([1.0, 0.3, -0.2, 0.1, 0.0])
    labels = np.array([0, 3, 2, 1, 4])
    gradient, floored = exact_gradient_and_expected_weights(scores, labels, 3, numerics="epsilon")
    np.testing.assert_allclose(floored, gradient, rtol=0, atol=1e-9)


def test_sample_rankings_follow_plackett_luce():
    rng = np.random.default_rng(0)
    scores = np.array([1.0, 0.0, -0.5, 0.5])
    n = 40000
    rankings = sample_rankings(scores, 2, n, rng)
    assert rankings.shape == (n, 2) and all(len(set(r)) == 2 for r in rankings[:100])
    counts = {}
    for ranking in map(tuple, rankings):
        counts[ranking] = counts.get(ranking, 0) + 1
    for ranking in itertools.permutations(range(4), 2):
        p = np.exp(log_prob_and_score(scores, np.array(ranking))[0])
        assert abs(counts.get(ranking, 0) / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3


def test_sampled_average_converges_to_exact_gradient():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal(5)
    labels = np.array([0, 1, 4, 2, 0])
    gradient, _ = exact_gradient_and_expected_weights(scores, labels, 3)
    weights = plrank2_weights(scores, labels, 3, sample_rankings(scores, 3, 20000, rng))
    assert np.abs(weights - gradient).max() < 0.05


@pytest.mark.parametrize("numerics", ["logsumexp", "epsilon"])
def test_tensorflow_version_matches_numpy(numerics):
    tf = pytest.importorskip("tensorflow")
    from experiments.plrank import tf_plrank2_weights

    rng = np.random.default_rng(2)
    queries, padded, k = [], 16, 5
    for n, gap in [(12, 0.0), (10, 25.0), (16, 40.0)]:
        scores = 3.0 * rng.standard_normal(n)
        scores[:2] += gap
        labels = rng.integers(0, 5, n)
        queries.append((scores, labels, sample_rankings(scores, k, 30, rng)))

    def pad(values, fill):
        return np.stack([np.concatenate([v, np.full(padded - len(v), fill)]) for v in values])

    weights = tf_plrank2_weights(
        tf.constant(pad([q[0] for q in queries], 0.0)),
        tf.constant(pad([gains_of(q[1]) for q in queries], 0.0)),
        tf.constant(pad([np.ones(len(q[0]), bool) for q in queries], False)),
        tf.constant(np.stack([q[2] for q in queries])),
        numerics,
    ).numpy()
    for row, (scores, labels, rankings) in zip(weights, queries, strict=True):
        expected = plrank2_weights(scores, labels, k, rankings, numerics=numerics)
        np.testing.assert_allclose(row[: len(scores)], expected, rtol=0, atol=1e-10)
        assert not row[len(scores) :].any()
