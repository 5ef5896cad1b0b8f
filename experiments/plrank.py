"""PL-Rank learning-to-rank workload that diverges.

Not the question's off-policy setting: documents are scored with full-information labels, with no clicks or
propensities; and Adam is the project's choice, not the question's (docs/findings.md lists such
reconstructions).

Reproduces the question "a 2-layer ReLU MLP trained with PL-Rank-2 gradients
(Oosterhuis, SIGIR 2021): the loss quickly shoots over 1e6; it is stable as long
as the sum of the weights is <= 1; tanh/sigmoid stabilise but underfit;
different initialisations all fail". An MLP maps each document's features
(scaled per query to [0,1]) to a Plackett-Luce score; PL-Rank-2 returns one
weight w_d per document, an unbiased Monte-Carlo estimate of dE[DCG@k]/dm(d),
and the update follows sum_d w_d * dm(d)/dtheta through the linear surrogate
loss -sum_d w_d m(d).

Two facts frame the remedies. PL ignores a constant shift of a query's scores,
so the exact gradient sums to zero over a query's documents; the weight sum of
PL-Rank-2 is sampling noise, and subtracting the per-query mean weight keeps
the estimate unbiased. And the per-rank normaliser "total mass minus placed
mass" with an epsilon floor (the authors' 2022 PL-Rank-2) silently returns
wrong weights once the scores spread by about 20, while a masked log-sum-exp
per rank (the authors' 2021 code) is exact at any scale. Both are knobs, next
to the folk remedies (clipping and its threshold, activations, initialisers, a
unit-norm or max-norm constraint, reward and return normalisation, a bound on
the weights w_d, batch normalisation, the epsilon's size, the feature scaling),
and the optimizer: Adam makes the remedies that only rescale the gradient
near-inert, so the configs sweep them under SGD as well.

Why the defaults diverge (measured): with the floored normaliser, once a ReLU
net separates a query's top documents from the rest by ~18 (1e-8 of the mass
left), the floor makes every later rank's placement probabilities too small;
the subtracted reward-to-go shrinks, so documents already placed on top keep
an uncancelled positive weight (the weight sum jumps from ~0 to +3..+5). They
are pushed further up, the spread grows, more ranks hit the floor: a runaway
that drives the surrogate past 1e6 within a few hundred Adam steps. With the
masked log-sum-exp the same net, data and optimizer train healthily.

The estimator also exists as pure NumPy (`plrank2_weights`, `sample_rankings`)
so tests can check it against an exact enumeration of rankings. Only the
standard library and numpy are imported at module level.
"""

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from sweeper.instruments import Instruments
from sweeper.no_skill import no_skill_level
from sweeper.workload import Range

# The floor of the "total minus placed" normaliser in the authors' 2022 PL-Rank-2 (the default of Config.epsilon).
EPSILON = 1e-8
# The smallest standard deviation of the returns that return_norm divides by (RL code's usual 1e-8).
RETURN_STD_FLOOR = 1e-8


@dataclass(frozen=True)
class Config:
    # --- the folk remedies (defaults reproduce the question) ---
    clip: Literal["none", "value", "norm", "global_norm"] = "none"
    """Gradient clipping before the update: none, each element to +-clip_value, each variable's gradient to norm
    clip_value, or all gradients together to global norm clip_value."""
    clip_value: Annotated[float, Range(0.0, 1e6, low_open=True)] = 1.0
    """Threshold of `clip`: the answer's "A typical clipping value is 1"; other values test whether the threshold,
    not clipping as such, is what matters."""
    hidden_activation: Literal["relu", "relu6", "swish", "gelu", "tanh", "sigmoid"] = "relu"
    """Activation of the two hidden Dense layers."""
    kernel_initializer: Literal[
        "glorot_uniform",
        "glorot_normal",
        "he_normal",
        "he_uniform",
        "lecun_normal",
        "lecun_uniform",
        "orthogonal",
        "random_normal",
    ] = "glorot_uniform"
    """Kernel initializer of every Dense layer (Keras' default is glorot_uniform). The question "Tried different
    network initialization methods, but all fail" names none, so the Glorot, He and LeCun families, orthogonal and
    Keras' small random_normal (std 0.05) are all here; the answer pairs He with the ReLU family."""
    weight_constraint: Literal["none", "unit_norm", "max_norm"] = "none"
    """Kernel constraint of every Dense layer: none, UnitNorm (each unit's incoming weight vector rescaled to norm 1
    after every update), or MaxNorm(1) (rescaled only where its norm exceeds 1): the answer's "A unit-norm contraint
    (or similar) on the weights"."""
    reward_norm: Literal["none", "centred", "ndcg", "ndcg_centred"] = "none"
    """What the estimator's weights are made of: `none` the PL-Rank-2 weights of DCG@k as-is; `centred` minus their
    per-query mean (still unbiased, sums to 0); `ndcg` the weights of NDCG@k (gains divided by the query's ideal
    DCG); `ndcg_centred` both."""
    return_norm: Literal["none", "scaled", "standardised"] = "none"
    """What the answer's "or even better the returns" does to PL-Rank-2's returns (the reward-to-go G_i of every
    sampled ranking, whose G_1 is the ranking's DCG@k): `none` as they are; `scaled` divided by the standard deviation
    of the batch's sampled G_1 (floored at RETURN_STD_FLOOR), so they have unit scale, as RL code normalises returns;
    `standardised` also minus the batch mean of G_i at each rank i, a baseline (unbiased up to using the batch's own
    mean), added to PL-Rank-2's weights as -sum_i (1[y_i = d] - pi_i(d)) b_i / s. Applied before `reward_norm`'s
    centring, on whatever gains `reward_norm` chose."""
    weight_bound: Literal["none", "sum_shift", "sum_scale", "l1_scale"] = "none"
    """A bound on each query's PL-Rank weights w_d themselves, the question's "The training is stable as long as the
    sum of the weight ... <= 1": `none`; `sum_shift` subtracts the excess of sum_d w_d over 1 evenly from the query's
    documents (sum <= 1, the smallest change that keeps it); `sum_scale` divides the weights by sum_d w_d where that
    exceeds 1; `l1_scale` divides them by sum_d |w_d| where that exceeds 1. Applied last, after `reward_norm`."""
    batch_norm: bool = False
    """BatchNormalization (over the documents of the batch) after each hidden Dense layer, before its activation."""
    estimator_numerics: Literal["logsumexp", "epsilon"] = "epsilon"
    """How the PL normaliser of each rank is computed: a masked log-sum-exp over the unplaced documents (exact at any
    score scale), or "total mass minus placed mass" floored at EPSILON (the authors' 2022 PL-Rank-2; silently wrong
    once scores spread by ~20)."""
    epsilon: Annotated[float, Range(0.0, 1.0)] = EPSILON
    """The floor of the "total minus placed" normaliser (only with estimator_numerics=epsilon): the answer's "or add
    some small epsilon" and its size. 1e-8 is the authors' 2022 code; 0 is no floor (the remaining mass rounds to 0,
    or below, and the weights go NaN)."""

    # --- optimisation (nuisance knobs) ---
    optimizer: Literal["adam", "sgd"] = "adam"
    """Keras optimizer of the update. Adam divides each step by a running scale of its gradients, so remedies that
    only rescale the gradient (clipping, reward or return normalisation, a bound on the weights) can barely act under
    it; the sweeps run them under plain SGD too."""
    learning_rate: Annotated[float, Range(0.0, 10.0, low_open=True)] = 1e-2
    """Learning rate of the optimizer."""
    n_samples: Annotated[int, Range(1, 1000)] = 10
    """Sampled top-k rankings N per query and step of PL-Rank-2."""
    batch_size: Annotated[int, Range(1, 256)] = 8
    """Queries per update; the surrogate loss is the mean over them."""
    steps: Annotated[int, Range(1, 100_000)] = 1500
    """Updates in the whole run."""
    eval_every: Annotated[int, Range(1, 100_000)] = 50
    """Updates between two reports (each report evaluates on the test queries)."""
    hidden_units: Annotated[int, Range(1, 4096)] = 32
    """Width of each of the two hidden Dense layers."""
    cutoff: Annotated[int, Range(1, 100)] = 5
    """k of DCG@k / NDCG@k (the reference's --cutoff 5); at most `min_docs`, or a short query's top k takes in
    padding."""

    # --- data ---
    n_train_queries: Annotated[int, Range(1, 100_000)] = 400
    """Synthetic training queries."""
    n_test_queries: Annotated[int, Range(1, 10_000)] = 100
    """Held-out synthetic test queries (NDCG@k, expected NDCG@k)."""
    min_docs: Annotated[int, Range(1, 1000)] = 10
    """Fewest documents of a query (at most `max_docs`)."""
    max_docs: Annotated[int, Range(1, 1000)] = 50
    """Most documents of a query."""
    n_features: Annotated[int, Range(1, 1000)] = 32
    """Features per document."""
    feature_scaling: Literal["minmax", "none"] = "minmax"
    """What the network sees of the features: `minmax` each feature scaled per query to [0,1] over the query's
    documents (the question's "I have scaled each feature column in the input to [0,1] range"), or `none` the raw
    features (per-query offset and scale, roughly -5..5). The labels are the same function of the documents
    either way."""
    label_noise: Annotated[float, Range(0.0, 10.0)] = 0.5
    """Std of the Gaussian noise added to the standardised hidden relevance before it is cut into grades 0..4."""
    seed: int = 0
    """Seeds the data, the weight initialisation, the ranking samples and the query order."""


METRIC = "ndcg"
MODE = "max"
# Every report carries its own `chance`: the expected NDCG@k of a uniformly random ranking of this
# trial's test queries, which depends on the data.
CHANCE = "reported"

# A few seconds on one core after TensorFlow is imported: fewer updates and
# denser reports on the same data. The baseline's runaway starts within a few
# hundred updates, so it still fails (and is stopped early) at this size.
SMOKE = {"steps": 400, "eval_every": 25}
LIMITS = [
    ("cutoff <= min_docs", lambda config: config.cutoff <= config.min_docs),
    ("min_docs <= max_docs", lambda config: config.min_docs <= config.max_docs),
]
"""Limits across knobs, checked for every grid point before any trial runs (`sweeper.workload`)."""

# Grades 0..4 cut at these quantiles of the noisy relevance: about half the
# documents irrelevant, few perfect, as in the web-search datasets the paper uses.
GRADE_QUANTILES = (0.50, 0.75, 0.90, 0.97)
# Sampled rankings per test query for the expected NDCG of the stochastic policy.
EVAL_SAMPLES = 20
# Training queries (the first ones) on which sweeper.instruments reads the model at each report: one default
# batch, so a reading costs about one update (bench/instruments_cost.py).
PROBE_QUERIES = 8


# --- estimator (NumPy reference) ---
def rank_discounts(k: int) -> np.ndarray:
    """theta_i = 1/log2(i+1) for ranks i = 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def gains_of(labels) -> np.ndarray:
    """DCG gains rho(d) = 2^label - 1."""
    return np.exp2(np.asarray(labels, dtype=np.float64)) - 1.0


def sample_rankings(scores, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n top-k rankings (n, k) from the Plackett-Luce policy softmax(scores), by Gumbel top-k.

    The k largest of scores + Gumbel noise, in order, are an exact PL sample of
    the top-k prefix.
    """
    scores = np.asarray(scores, dtype=np.float64)
    perturbed = scores[None, :] + rng.gumbel(size=(n, scores.shape[0]))
    top = np.argpartition(-perturbed, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(perturbed, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def placement_probabilities(scores, rankings, numerics: str = "logsumexp", epsilon: float = EPSILON) -> np.ndarray:
    """pi_i(d | y_<i) for every sample, rank and document: (N, k, n); 0 for documents already placed."""
    scores = np.asarray(scores, dtype=np.float64)
    n_samples, k = rankings.shape
    placed = np.zeros((n_samples, k, scores.shape[0]), dtype=bool)
    for i in range(1, k):
        placed[:, i] = placed[:, i - 1]
        placed[np.arange(n_samples), i, rankings[:, i - 1]] = True
    masked = np.where(placed, -np.inf, scores)
    if numerics == "logsumexp":
        # Per rank, the log-sum-exp over the unplaced documents only.
        top = masked.max(axis=2, keepdims=True)
        log_norm = top + np.log(np.exp(masked - top).sum(axis=2, keepdims=True))
    elif numerics == "epsilon":
        # Normaliser = total mass minus the mass placed above rank i. The
        # difference cancels catastrophically once the placed documents hold
        # all but ~1e-16 of the mass; the floor hides the NaN, not the error.
        top = scores.max()
        log_total = top + np.log(np.exp(scores - top).sum())
        placed_log_mass = np.full((n_samples, k), -np.inf)
        for i in range(1, k):
            placed_log_mass[:, i] = np.logaddexp(placed_log_mass[:, i - 1], scores[rankings[:, i - 1]])
        with np.errstate(divide="ignore"):  # epsilon 0: log(0) = -inf, the weights go NaN as in TensorFlow
            remaining = np.maximum(1.0 - np.exp(placed_log_mass - log_total), epsilon)
            log_norm = (np.log(remaining) + log_total)[:, :, None]
    else:
        raise ValueError(f"unknown estimator numerics {numerics!r}; valid: logsumexp, epsilon")
    return np.exp(masked - log_norm)


def plrank2_weights(
    scores, labels, k: int, rankings, numerics: str = "logsumexp", epsilon: float = EPSILON
) -> np.ndarray:
    """PL-Rank-2 estimate of dE[DCG@k]/dscores, averaged over the N sampled rankings (N, k).

    w_d = mean_N [ 1[d placed at rank r] G_{r+1} + sum_i pi_i(d) (theta_i rho(d) - G_i) ]
    with reward-to-go G_i = sum_{j>=i} theta_j rho(y_j) (Oosterhuis 2021, eq. for PL-Rank-2).
    """
    rankings = np.asarray(rankings)
    n_samples = rankings.shape[0]
    theta = rank_discounts(k)
    rho = gains_of(labels)
    rewards = theta * rho[rankings]
    to_go = np.cumsum(rewards[:, ::-1], axis=1)[:, ::-1]
    after = np.concatenate([to_go[:, 1:], np.zeros((n_samples, 1))], axis=1)

    weights = np.zeros(rho.shape[0])
    np.add.at(weights, rankings, after)
    pi = placement_probabilities(scores, rankings, numerics, epsilon)
    weights += np.einsum("nkd,nkd->d", pi, theta[None, :, None] * rho[None, None, :] - to_go[:, :, None])
    return weights / n_samples


# --- data ---
def make_data(config: Config):
    """Synthetic queries, padded to max_docs: features, graded labels, noise-free relevance, mask.

    Raw features get a per-query offset and scale (as real queries do), then are
    min-max scaled per query to [0,1], as in the reference's data loader (the
    network sees the raw ones with feature_scaling=none). The
    hidden relevance is a fixed random smooth function of the scaled features (a
    linear part plus a random one-layer tanh network), standardised; grades
    0..4 are that plus Gaussian noise, cut at GRADE_QUANTILES. Ranking by the
    noise-free relevance is the oracle.
    """
    rng = np.random.default_rng(config.seed)
    n_queries = config.n_train_queries + config.n_test_queries
    d, f = config.max_docs, config.n_features
    n_docs = rng.integers(config.min_docs, config.max_docs + 1, size=n_queries)
    mask = np.arange(d)[None, :] < n_docs[:, None]

    raw = rng.standard_normal((n_queries, d, f))
    raw = raw * rng.uniform(0.5, 2.0, (n_queries, 1, f)) + rng.standard_normal((n_queries, 1, f))
    low = np.where(mask[:, :, None], raw, np.inf).min(axis=1, keepdims=True)
    high = np.where(mask[:, :, None], raw, -np.inf).max(axis=1, keepdims=True)
    x = np.where(mask[:, :, None], (raw - low) / (high - low), 0.0)
    # What the network sees; the labels below are the same function of the documents either way.
    seen = x if config.feature_scaling == "minmax" else np.where(mask[:, :, None], raw, 0.0)

    w_linear = rng.standard_normal(f) / math.sqrt(f)
    n_bumps = 16
    w_in = rng.standard_normal((f, n_bumps)) * 4.0 / math.sqrt(f)
    w_out = rng.standard_normal(n_bumps) / math.sqrt(n_bumps)
    centred = x - 0.5
    relevance = centred @ w_linear + np.tanh(centred @ w_in) @ w_out
    valid = relevance[mask]
    relevance = (relevance - valid.mean()) / valid.std()

    noisy = relevance + config.label_noise * rng.standard_normal(relevance.shape)
    cuts = np.quantile(noisy[mask], GRADE_QUANTILES)
    grades = np.where(mask, np.digitize(noisy, cuts), 0)

    # A query without any relevant document has ideal DCG 0 and no gradient;
    # the reference skips such queries, and so do training and evaluation here.
    keep = (grades > 0).any(axis=1)
    split = np.arange(n_queries) < config.n_train_queries
    parts = []
    for part in (split & keep, ~split & keep):
        parts.append((seen[part].astype(np.float32), grades[part], relevance[part], mask[part]))
    return parts


def ideal_dcg(gains: np.ndarray, k: int) -> np.ndarray:
    """Per-query ideal DCG@k of padded (queries, docs) gains (padding has gain 0)."""
    return (-np.sort(-gains, axis=1)[:, :k] * rank_discounts(k)).sum(axis=1)


def ndcg_of_rankings(gains: np.ndarray, rankings: np.ndarray, k: int) -> float:
    """Mean NDCG@k of (queries, ..., k) rankings over queries and samples."""
    picked = np.take_along_axis(gains, rankings.reshape(len(gains), -1), axis=1).reshape(rankings.shape)
    dcg = (picked * rank_discounts(k)).sum(axis=-1)
    return float(np.mean(dcg / ideal_dcg(gains, k).reshape((-1,) + (1,) * (dcg.ndim - 1))))


def reference_ndcg(gains: np.ndarray, relevance: np.ndarray, mask: np.ndarray, k: int):
    """`chance`: exact expected NDCG@k of a uniformly random ranking; `oracle`: NDCG@k of the noise-free relevance."""
    # A uniform top-k places every document at each rank with probability 1/n,
    # so E[DCG@k] = mean gain of the query * sum_i theta_i.
    mean_gain = gains.sum(axis=1) / mask.sum(axis=1)
    chance = float(np.mean(mean_gain * rank_discounts(k).sum() / ideal_dcg(gains, k)))
    oracle_rankings = np.argsort(-np.where(mask, relevance, -np.inf), axis=1)[:, :k]
    return chance, ndcg_of_rankings(gains, oracle_rankings, k)


# --- model ---
def make_model(config: Config):
    """Scores documents one by one: (n_docs, n_features) -> (n_docs,)."""
    import tensorflow as tf

    constraint = {
        "none": None,
        "unit_norm": tf.keras.constraints.UnitNorm(),
        "max_norm": tf.keras.constraints.MaxNorm(1.0),
    }[config.weight_constraint]
    inputs = tf.keras.Input(shape=(config.n_features,))
    h = inputs
    for _ in range(2):
        h = tf.keras.layers.Dense(
            config.hidden_units,
            kernel_initializer=config.kernel_initializer,
            kernel_constraint=constraint,
        )(h)
        if config.batch_norm:
            h = tf.keras.layers.BatchNormalization()(h)
        h = tf.keras.layers.Activation(config.hidden_activation)(h)
    scores = tf.keras.layers.Dense(
        1,
        kernel_initializer=config.kernel_initializer,
        kernel_constraint=constraint,
    )(h)
    return tf.keras.Model(inputs, tf.keras.layers.Reshape(())(scores))


# --- training step ---
def tf_sample_rankings(generator, scores, mask, k: int, n: int):
    """(queries, n, k) Gumbel top-k samples of padded (queries, docs) scores; padding is never drawn."""
    import tensorflow as tf

    uniform = generator.uniform(
        tf.concat([tf.shape(scores)[:1], [n], tf.shape(scores)[1:]], 0), minval=1e-12, maxval=1.0, dtype=scores.dtype
    )
    return perturbed_top_k(scores, mask, uniform, k)


def perturbed_top_k(scores, mask, uniform, k: int):
    """(queries, n, k) top-k of padded (queries, docs) scores under the Gumbel noise of (queries, n, docs) uniform
    draws: Plackett-Luce samples of the scores; padding is never drawn."""
    import tensorflow as tf

    gumbel = -tf.math.log(-tf.math.log(uniform))
    perturbed = tf.where(mask[:, None, :], scores[:, None, :] + gumbel, tf.constant(-np.inf, scores.dtype))
    return tf.math.top_k(perturbed, k).indices


def tf_plrank2_weights(scores, gains, mask, rankings, numerics: str, epsilon: float = EPSILON, returns: str = "none"):
    """TensorFlow PL-Rank-2, the same computation as `plrank2_weights`, for padded batches.

    scores, gains: (queries, docs) with gains already including any
    normalisation; mask: (queries, docs) real documents; rankings:
    (queries, N, k). Returns (queries, docs) weights, 0 on padding.
    `returns` (Config.return_norm) normalises the returns over the whole batch
    (`none` is exactly `plrank2_weights`).
    """
    import tensorflow as tf

    dtype = scores.dtype
    n_docs = tf.shape(scores)[1]
    k = rankings.shape[-1]
    theta = tf.constant(rank_discounts(k), dtype)
    neg_inf = tf.constant(-np.inf, dtype)

    rewards = theta * tf.gather(gains, rankings, batch_dims=1)
    if returns != "none":
        # Every return G_i is linear in the gains, so dividing the gains (those of the sampled rankings and
        # those of PL-Rank-2's expected term alike) by the batch's standard deviation of G_1 (a ranking's
        # DCG) gives the returns unit scale.
        spread = tf.maximum(tf.math.reduce_std(tf.reduce_sum(rewards, axis=-1)), tf.constant(RETURN_STD_FLOOR, dtype))
        gains = gains / spread
        rewards = rewards / spread
    to_go = tf.math.cumsum(rewards, axis=-1, reverse=True)
    after = tf.math.cumsum(rewards, axis=-1, reverse=True, exclusive=True)

    one_hot = tf.one_hot(rankings, n_docs, dtype=dtype)
    placed_before = tf.math.cumsum(one_hot, axis=2, exclusive=True) > 0
    available = tf.logical_and(mask[:, None, None, :], tf.logical_not(placed_before))
    masked = tf.where(available, scores[:, None, None, :], neg_inf)
    if numerics == "logsumexp":
        log_norm = tf.reduce_logsumexp(masked, axis=-1, keepdims=True)
    else:
        # "Total minus placed" with an EPSILON floor, as in the authors' 2022 PL-Rank-2.
        log_total = tf.reduce_logsumexp(tf.where(mask, scores, neg_inf), axis=-1)[:, None, None]
        ranked_scores = tf.gather(scores, rankings, batch_dims=1)
        placed_log_mass = tf.math.cumulative_logsumexp(
            tf.concat([tf.fill(tf.shape(ranked_scores[..., :1]), neg_inf), ranked_scores[..., :-1]], -1),
            axis=-1,
        )
        remaining = tf.maximum(1.0 - tf.exp(placed_log_mass - log_total), tf.constant(epsilon, dtype))
        log_norm = (tf.math.log(remaining) + log_total)[..., None]
    pi = tf.exp(masked - log_norm)

    placed_term = tf.einsum("qnkd,qnk->qd", one_hot, after)
    possible_term = tf.einsum(
        "qnkd,qnkd->qd",
        pi,
        theta[None, None, :, None] * gains[:, None, None, :] - to_go[..., None],
    )
    if returns == "standardised":
        # A baseline b_i per rank (the batch mean of the scaled G_i) subtracted from every return:
        # REINFORCE's -sum_i (1[y_i = d] - pi_i(d)) b_i, added to PL-Rank-2's weights.
        baseline = tf.reduce_mean(to_go, axis=[0, 1])
        placed_term -= tf.einsum("qnkd,k->qd", one_hot, baseline)
        possible_term += tf.einsum("qnkd,k->qd", pi, baseline)
    n_samples = tf.cast(tf.shape(rankings)[1], dtype)
    return (placed_term + possible_term) / n_samples


def clip_gradients(grads, config: Config):
    import tensorflow as tf

    if config.clip == "value":
        return [tf.clip_by_value(g, -config.clip_value, config.clip_value) for g in grads]
    if config.clip == "norm":
        return [tf.clip_by_norm(g, config.clip_value) for g in grads]
    if config.clip == "global_norm":
        return tf.clip_by_global_norm(grads, config.clip_value)[0]
    return grads


def bound_weights(weights, mask, bound: str):
    """Config.weight_bound on padded (queries, docs) weights: each query's sum_d w_d (or sum_d |w_d|) kept <= 1."""
    import tensorflow as tf

    if bound == "none":
        return weights
    one = tf.constant(1.0, weights.dtype)
    total = tf.reduce_sum(weights, axis=1, keepdims=True)
    if bound == "sum_shift":
        n_docs = tf.reduce_sum(tf.cast(mask, weights.dtype), axis=1, keepdims=True)
        return tf.where(mask, weights - tf.maximum(total - one, 0.0) / n_docs, tf.zeros_like(weights))
    if bound == "sum_scale":
        return weights / tf.maximum(total, one)
    if bound == "l1_scale":
        return weights / tf.maximum(tf.reduce_sum(tf.abs(weights), axis=1, keepdims=True), one)
    raise ValueError(f"unknown weight bound {bound!r}; valid: none, sum_shift, sum_scale, l1_scale")


def surrogate_loss(scores, gains, mask, rankings, config: Config):
    """The question's surrogate loss of padded (queries, docs) scores given sampled rankings, and the weights w_d
    it is made of."""
    import tensorflow as tf

    # The estimator works in float64 like the authors' code; its weights
    # are constants of the step, only the scores carry gradient.
    fixed = tf.cast(tf.stop_gradient(scores), tf.float64)
    weights = tf_plrank2_weights(
        fixed, gains, mask, rankings, config.estimator_numerics, config.epsilon, config.return_norm
    )
    if config.reward_norm in ("centred", "ndcg_centred"):
        n_docs = tf.reduce_sum(tf.cast(mask, tf.float64), axis=1, keepdims=True)
        mean = tf.reduce_sum(weights, axis=1, keepdims=True) / n_docs
        weights = tf.where(mask, weights - mean, tf.zeros_like(weights))
    weights = bound_weights(weights, mask, config.weight_bound)
    weights = tf.cast(weights, tf.float32)
    # The question's surrogate: its gradient is minus the estimated
    # metric gradient; its value follows the score offset, not quality.
    return -tf.reduce_mean(tf.reduce_sum(weights * scores, axis=1)), weights


def make_instruments(model, config: Config, x, gains, mask):
    """sweeper.instruments on the first PROBE_QUERIES training queries under the training loss. The rankings it
    samples come from Gumbel noise drawn once (its own stream, seed + 3), so a reading draws from no stream the
    training uses and two readings differ only by the model."""
    import tensorflow as tf

    x, gains, mask = x[:PROBE_QUERIES], tf.constant(gains[:PROBE_QUERIES]), tf.constant(mask[:PROBE_QUERIES])
    rng = np.random.default_rng(config.seed + 3)
    uniform = tf.constant(rng.uniform(1e-12, 1.0, (len(x), config.n_samples, config.max_docs)))
    where = tf.where(mask)

    def loss_of_outputs(doc_scores):
        scores = tf.scatter_nd(where, doc_scores, tf.shape(mask, out_type=tf.int64))
        rankings = perturbed_top_k(tf.cast(tf.stop_gradient(scores), tf.float64), mask, uniform, config.cutoff)
        return surrogate_loss(scores, gains, mask, rankings, config)[0]

    return Instruments(model, tf.gather_nd(x, where), loss_of_outputs)


def make_train_step(model, optimizer, generator, config: Config):
    import tensorflow as tf

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, config.max_docs, config.n_features), tf.float32),
            tf.TensorSpec((None, config.max_docs), tf.float64),
            tf.TensorSpec((None, config.max_docs), tf.bool),
        ]
    )
    def train_step(x, gains, mask):
        # Only real documents go through the network, so batch normalisation
        # never sees padding; the scores are scattered back to (queries, docs).
        where = tf.where(mask)
        with tf.GradientTape() as tape:
            doc_scores = model(tf.gather_nd(x, where), training=True)
            scores = tf.scatter_nd(where, doc_scores, tf.shape(mask, out_type=tf.int64))
            fixed = tf.cast(tf.stop_gradient(scores), tf.float64)
            rankings = tf_sample_rankings(generator, fixed, mask, config.cutoff, config.n_samples)
            loss, weights = surrogate_loss(scores, gains, mask, rankings, config)
        grads = tape.gradient(loss, model.trainable_variables)
        grad_norm = tf.linalg.global_norm(grads)
        optimizer.apply_gradients(zip(clip_gradients(grads, config), model.trainable_variables, strict=True))
        return loss, tf.reduce_mean(tf.reduce_sum(weights, axis=1)), grad_norm

    return train_step


# --- evaluation ---
def shuffled_within_queries(padded: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(queries, docs) scores with each query's valid scores permuted among its valid documents (padding stays
    -inf): a random ranking of the same lists, from the model's own scores."""
    random_places = np.argsort(np.where(mask, rng.random(mask.shape), np.inf), axis=1)
    valid_first = np.argsort(~mask, axis=1, kind="stable")
    out = np.full_like(padded, -np.inf)
    np.put_along_axis(out, random_places, np.take_along_axis(padded, valid_first, axis=1), axis=1)
    return out


def make_evaluate(model, config: Config, test):
    """Deterministic and expected NDCG@k, score scale and spread on the test queries; with `no_skill`, also
    the no-skill level of the deterministic NDCG@k (the model's scores shuffled within each query) and its
    `untrained` NDCG@k (the scores before the first step)."""
    import tensorflow as tf

    x, grades, _, mask = test
    gains = gains_of(grades)
    where = tf.where(mask)
    flat_x = tf.gather_nd(tf.constant(x), where)
    shape = tf.shape(mask, out_type=tf.int64)
    # Its own seeded stream, so evaluation draws never shift the training samples.
    generator = tf.random.Generator.from_seed(config.seed + 1)

    # The no-skill draws get a stream of their own too (seed + 3).
    shuffle_rng = np.random.default_rng(config.seed + 3)

    def ndcg_of_scores(padded: np.ndarray) -> float:
        return ndcg_of_rankings(gains, np.argsort(-padded, axis=1, kind="stable")[:, : config.cutoff], config.cutoff)

    def scored():
        """The model's (queries, docs) scores now, as a tensor and as an array padded with -inf."""
        scores = tf.cast(tf.scatter_nd(where, model(flat_x, training=False), shape), tf.float64)
        return scores, np.where(mask, scores.numpy(), -np.inf)

    # Before the first step (this is made then): what the initial weights already rank is no sign of learning.
    untrained = ndcg_of_scores(scored()[1])

    def evaluate(no_skill: bool = False):
        scores, padded = scored()
        samples = tf_sample_rankings(generator, scores, tf.constant(mask), config.cutoff, EVAL_SAMPLES).numpy()
        valid = padded[mask]
        per_query = [row[m] for row, m in zip(padded, mask, strict=True)]
        levels = {}
        if no_skill:
            draw = lambda: ndcg_of_scores(shuffled_within_queries(padded, mask, shuffle_rng))  # noqa: E731
            levels["no_skill"] = no_skill_level(draw, MODE)
            levels["untrained"] = untrained
        return {
            "ndcg": ndcg_of_scores(padded),
            "expected_ndcg": ndcg_of_rankings(gains, samples, config.cutoff),
            # Where the scores can blow up, their mean magnitude is what the
            # `exploding` verdict watches; the within-query spread is what
            # breaks the "total minus placed" normaliser.
            "output_scale": float(np.mean(np.abs(valid))),
            "score_spread": float(np.mean([row.max() - row.min() for row in per_query])),
            **levels,
        }

    return evaluate


# --- training loop ---
def train(config: Config, report: Callable[[dict], None]) -> None:
    import tensorflow as tf

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(config.seed)

    (train_x, train_grades, _, train_mask), test = make_data(config)
    train_gains = gains_of(train_grades)
    if config.reward_norm in ("ndcg", "ndcg_centred"):
        train_gains = train_gains / ideal_dcg(train_gains, config.cutoff)[:, None]
    test_gains = gains_of(test[1])
    chance, oracle = reference_ndcg(test_gains, test[2], test[3], config.cutoff)

    model = make_model(config)
    optimizer = {"adam": tf.keras.optimizers.Adam, "sgd": tf.keras.optimizers.SGD}[config.optimizer](
        config.learning_rate
    )
    # The optimizer's slots are made here, not in the first call of the compiled step, which would then
    # be traced twice (once to create them, once without creating): ~0.2-0.5 s less per trial, same numbers.
    optimizer.build(model.trainable_variables)
    generator = tf.random.Generator.from_seed(config.seed)
    train_step = make_train_step(model, optimizer, generator, config)
    evaluate = make_evaluate(model, config, test)
    instruments = make_instruments(model, config, train_x, train_gains, train_mask)

    # The query order gets its own seeded stream (seed + 2), apart from data and samples.
    order_rng = np.random.default_rng(config.seed + 2)
    n_queries = len(train_x)
    order = order_rng.permutation(n_queries)
    position = 0
    losses, sums, norms = [], [], []
    for step in range(1, config.steps + 1):
        if position + config.batch_size > n_queries:
            order, position = order_rng.permutation(n_queries), 0
        idx = order[position : position + config.batch_size]
        position += config.batch_size
        loss, weight_sum, grad_norm = train_step(train_x[idx], train_gains[idx], train_mask[idx])
        losses.append(float(loss))
        sums.append(float(weight_sum))
        norms.append(float(grad_norm))

        if step % config.eval_every == 0 or step == config.steps:
            # Means over the steps since the last report (a non-finite step
            # stays non-finite), but the largest gradient norm, so that one
            # huge step is not averaged away.
            # The instruments' readings first, so the workload's own keys (its training grad_norm) win a clash.
            report(
                {
                    **instruments.measure(),
                    "step": step,
                    "loss": float(np.mean(losses)),
                    "weight_sum": float(np.mean(sums)),
                    "abs_weight_sum": float(np.mean(np.abs(sums))),
                    "grad_norm": float(np.max(norms)),
                    **evaluate(no_skill=step == config.steps),  # the last report, which a verdict reads
                    "chance": chance,
                    "oracle": oracle,
                }
            )
            losses, sums, norms = [], [], []


if __name__ == "__main__":
    config = dataclasses.replace(Config(), **SMOKE)
    start = time.perf_counter()
    train(config, print)
    print(f"wall {time.perf_counter() - start:.1f}s")
