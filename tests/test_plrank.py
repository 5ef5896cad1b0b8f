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


def _padded_batch(rng, k=5, n_samples=30, padded=16):
    """Three queries (one with a large score gap), padded; their rankings sampled from the NumPy reference."""
    queries = []
    for n, gap in [(12, 0.0), (10, 25.0), (16, 40.0)]:
        scores = 3.0 * rng.standard_normal(n)
        scores[:2] += gap
        labels = rng.integers(0, 5, n)
        labels[0] = 3
        queries.append((scores, labels, sample_rankings(scores, k, n_samples, rng)))

    def pad(values, fill):
        return np.stack([np.concatenate([v, np.full(padded - len(v), fill)]) for v in values])

    scores = pad([q[0] for q in queries], 0.0)
    gains = pad([gains_of(q[1]) for q in queries], 0.0)
    mask = pad([np.ones(len(q[0]), bool) for q in queries], False)
    rankings = np.stack([q[2] for q in queries])
    return queries, scores, gains, mask, rankings


# "Total minus placed" divides the two libraries' different roundings (~1e-16) of their log-sum-exps by the
# remaining mass (down to ~1e-10 and ~1e-15 in the gapped queries below): with floors of 1e-12 and up they agree to
# ~1e-5 relative; with 1e-16 or 1e-30 only to ~1e-2, the very ill-conditioning the floor is about.
@pytest.mark.parametrize("epsilon", [1e-12, 1e-4])
def test_tensorflow_epsilon_matches_numpy(epsilon):
    tf = pytest.importorskip("tensorflow")
    from experiments.plrank import tf_plrank2_weights

    queries, scores, gains, mask, rankings = _padded_batch(np.random.default_rng(3))
    weights = tf_plrank2_weights(*map(tf.constant, (scores, gains, mask, rankings)), "epsilon", epsilon).numpy()
    for row, (s, labels, r) in zip(weights, queries, strict=True):
        expected = plrank2_weights(s, labels, 5, r, numerics="epsilon", epsilon=epsilon)
        np.testing.assert_allclose(row[: len(s)], expected, rtol=1e-4, atol=1e-9)


def test_no_epsilon_goes_nan_once_the_remaining_mass_rounds_away():
    scores = np.array([50.0, 0.3, -0.2, 0.1, 0.0])
    rankings = np.array([[0, 1, 2]])
    with np.errstate(invalid="ignore"):
        weights = plrank2_weights(scores, np.array([0, 3, 2, 1, 4]), 3, rankings, numerics="epsilon", epsilon=0.0)
    assert np.isnan(weights).any()


def test_return_norm_scales_by_the_return_spread_and_its_baseline_sums_to_zero():
    tf = pytest.importorskip("tensorflow")
    from experiments.plrank import tf_plrank2_weights

    queries, scores, gains, mask, rankings = _padded_batch(np.random.default_rng(4))
    args = [tf.constant(a) for a in (scores, gains, mask, rankings)]
    plain, scaled, standardised = (
        tf_plrank2_weights(*args, "logsumexp", returns=name).numpy() for name in ("none", "scaled", "standardised")
    )
    dcg = np.stack([(rank_discounts(5) * gains_of(q[1])[q[2]]).sum(axis=1) for q in queries])  # (queries, N)
    np.testing.assert_allclose(scaled, plain / dcg.std(), rtol=1e-9, atol=1e-12)
    # The baseline term sum_i (1[y_i = d] - pi_i(d)) b_i sums to 0 over a query's documents (exact pi),
    # and it changes the weights.
    np.testing.assert_allclose(standardised.sum(axis=1), scaled.sum(axis=1), atol=1e-9)
    assert np.abs(standardised - scaled).max() > 1e-3
    assert not standardised[~mask].any()


@pytest.mark.parametrize("bound", ["sum_shift", "sum_scale", "l1_scale"])
def test_weight_bound_keeps_each_query_sum_at_most_one(bound):
    tf = pytest.importorskip("tensorflow")
    from experiments.plrank import bound_weights

    rng = np.random.default_rng(5)
    mask = np.arange(8)[None, :] < np.array([[8], [5], [6]])
    weights = np.where(mask, rng.standard_normal((3, 8)) + np.array([[2.0], [-1.0], [0.0]]), 0.0)
    bounded = bound_weights(tf.constant(weights), tf.constant(mask), bound).numpy()
    totals = np.abs(bounded).sum(axis=1) if bound == "l1_scale" else bounded.sum(axis=1)
    assert (totals <= 1.0 + 1e-9).all()
    assert not bounded[~mask].any()
    untouched = (np.abs(weights) if bound == "l1_scale" else weights).sum(axis=1) <= 1.0
    np.testing.assert_allclose(bounded[untouched], weights[untouched])
    np.testing.assert_array_equal(bound_weights(tf.constant(weights), tf.constant(mask), "none").numpy(), weights)


def test_feature_scaling_changes_what_the_network_sees_not_the_labels():
    from experiments.plrank import Config, make_data

    scaled = make_data(Config(n_train_queries=20, n_test_queries=5))
    raw = make_data(Config(n_train_queries=20, n_test_queries=5, feature_scaling="none"))
    for (x_s, grades_s, rel_s, mask_s), (x_r, grades_r, rel_r, mask_r) in zip(scaled, raw, strict=True):
        np.testing.assert_array_equal(grades_s, grades_r)
        np.testing.assert_array_equal(rel_s, rel_r)
        np.testing.assert_array_equal(mask_s, mask_r)
        assert x_s[mask_s].min() == 0.0 and x_s[mask_s].max() == 1.0
        assert x_r[mask_r].min() < -1.0 and x_r[mask_r].max() > 2.0
