"""ListMLE "returns zero" workload.

Reproduces the widely read question "`tfr.keras.losses.ListMLELoss()` returns
zero during training, validation and testing". The folk answer blames
homogeneous scores, invariant labels and input shapes. Measured on TF 2.15.1 /
tensorflow-ranking 0.5.5, only the shape produces an exact zero: ListMLE is a
listwise loss over the last axis, so when scores and labels arrive as
`(batch*list_size, 1)` every "list" holds one document, whose Plackett-Luce
probability is 1 and whose loss is log(1) = 0. Zero loss means zero gradient,
so the model never leaves its random initialisation.

The defaults of `Config` are that failing setup; every folk remedy is a knob,
so a sweep can show which one actually restores ranking quality (NDCG@5 on
grouped test lists, next to a random-ranking floor and a noise-free ceiling).

Only the standard library and numpy are imported at module level so that the
module (its `Config`, `METRIC`, `MODE`, `SMOKE`) can be imported for spec
validation without paying for TensorFlow.
"""

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from sweeper.instruments import Instruments
from sweeper.no_skill import no_skill_level, shuffle_draws
from sweeper.workload import Range


@dataclass(frozen=True)
class Config:
    # --- the folk remedies (defaults reproduce the question) ---
    list_shape: Literal["flattened", "grouped", "vector", "one_list"] = "flattened"
    """Shape of what reaches the loss: `flattened` (batch*list_size, 1) as in the question, `grouped` (batch,
    list_size), `vector` (batch*list_size,) as in the answer's Example 3, `one_list` (1, batch*list_size): the
    answer's "one big list", every document of the batch in a single list across queries."""
    labels: Literal["graded", "constant"] = "graded"
    """Training labels: `graded` (0..4 from the hidden scoring function) or `constant` (every training label set to the
    same grade, the answer's "invariant labels"); test labels stay graded."""
    hidden_activation: Literal["relu", "tanh", "elu", "swish", "sigmoid"] = "relu"
    """Activation of the two hidden Dense layers of the scoring network."""
    kernel_initializer: Literal[
        "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "zeros"
    ] = "glorot_uniform"
    """Kernel initializer of every Dense layer; `zeros` gives every document the same score (the answer's "homogeneous
    scores")."""
    feature_norm: Literal["none", "batch", "layer"] = "none"
    """Normalisation of the per-document features before the hidden layers: none, BatchNormalization or
    LayerNormalization."""

    # --- optimisation ---
    learning_rate: Annotated[float, Range(0.0, 10.0, low_open=True)] = 1e-3
    """Adam learning rate."""
    hidden_units: Annotated[int, Range(1, 4096)] = 64
    """Width of each of the two hidden Dense layers."""
    epochs: Annotated[int, Range(1, 10_000)] = 20
    """Passes over the training queries; one report per epoch."""
    batch_size: Annotated[int, Range(1, 4096)] = 32
    """Queries (lists) per training step."""

    # --- data ---
    n_train_queries: Annotated[int, Range(1, 100_000)] = 1000
    """Number of synthetic training queries."""
    n_test_queries: Annotated[int, Range(1, 10_000)] = 200
    """Number of held-out synthetic test queries (for val_loss and NDCG@5)."""
    list_size: Annotated[int, Range(2, 1000)] = 10
    """Documents per query."""
    n_features: Annotated[int, Range(1, 1000)] = 20
    """Features per document, drawn from N(0, 1)."""
    label_noise: Annotated[float, Range(0.0, 10.0)] = 0.5
    """Std of the Gaussian noise added to the standardised hidden relevance score before it is cut into grades 0..4."""
    seed: int = 0
    """Seeds the data, the weight initialisation, the tie-breaking inside ListMLE and the batch order."""


METRIC = "ndcg5"
MODE = "max"
# Every report carries its own `chance`: the NDCG@5 of random scores on this trial's test lists
# (CHANCE_DRAWS of them), which depends on the data.
CHANCE = "reported"

# Settings whose outcome no other knob can change, by construction (see `to_loss_shape`): a claim compared only
# on twins inside them is `not testable here` (sweeper.workload).
FIXED_OUTCOMES = [
    ({"list_shape": "flattened"}, "one-item lists: ListMLE is exactly 0 whatever the scores, so nothing is learned"),
    ({"list_shape": "vector"}, "a rank-1 input: ListMLE raises while tracing"),
]

# Small enough that one trial finishes in a few seconds on one CPU core once
# TensorFlow is imported; it keeps the data shape (list_size, n_features) of the
# defaults so every failure mode looks the same, only shorter.
SMOKE = {"epochs": 3, "n_train_queries": 200, "n_test_queries": 50}

# Grades 0..4 are cut at these quantiles of the noisy relevance score: about
# half of the documents are irrelevant and few are perfect, as in web-search
# datasets (MSLR-WEB, Yahoo LTR).
GRADE_QUANTILES = (0.50, 0.75, 0.90, 0.97)
# The grade every training label gets when `labels == "constant"`; ListMLE only
# uses the order of labels, so which grade it is does not matter.
CONSTANT_GRADE = 1.0
# Random score draws averaged for the `chance` NDCG@5.
CHANCE_DRAWS = 20
# Training queries (the first ones) on which sweeper.instruments reads the model at each report: one default
# batch, so a reading costs about one training step (bench/instruments_cost.py).
PROBE_QUERIES = 32


# --- data ---
def make_data(config: Config):
    """Synthetic queries: features, graded labels and noise-free relevance.

    The hidden relevance is a fixed random smooth function of the features
    (a linear part plus a random one-layer tanh network), standardised to unit
    variance; grades come from that plus Gaussian noise, so the oracle (ranking
    by the noise-free relevance) is the ceiling a learned ranker can approach.
    Train and test queries come from the same function.
    """
    rng = np.random.default_rng(config.seed)
    n_queries = config.n_train_queries + config.n_test_queries
    d = config.n_features
    x = rng.standard_normal((n_queries, config.list_size, d)).astype(np.float32)

    w_linear = rng.standard_normal(d) / math.sqrt(d)
    # A random one-layer tanh network; the factor 2 gives its part at least
    # as much variance as the linear part, so the ranker must be nonlinear.
    n_bumps = 16
    w_in = rng.standard_normal((d, n_bumps)) / math.sqrt(d)
    w_out = rng.standard_normal(n_bumps) / math.sqrt(n_bumps)
    relevance = x @ w_linear + 2.0 * np.tanh(x @ w_in) @ w_out
    relevance = (relevance - relevance.mean()) / relevance.std()

    noisy = relevance + config.label_noise * rng.standard_normal(relevance.shape)
    cuts = np.quantile(noisy, GRADE_QUANTILES)
    grades = np.digitize(noisy, cuts).astype(np.float32)

    n = config.n_train_queries
    return (x[:n], grades[:n]), (x[n:], grades[n:], relevance[n:].astype(np.float32))


# --- model ---
def make_model(config: Config):
    """Scores every document of every list independently: (batch, list_size, n_features) -> (batch, list_size)."""
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(config.list_size, config.n_features))
    h = inputs
    if config.feature_norm == "batch":
        h = tf.keras.layers.BatchNormalization()(h)
    elif config.feature_norm == "layer":
        h = tf.keras.layers.LayerNormalization()(h)
    # The initializer applies to the output layer too: with `zeros` every
    # hidden unit outputs the same value for every document, so all scores tie
    # and the per-list gradient is symmetric; nothing can break the tie.
    for _ in range(2):
        h = tf.keras.layers.Dense(
            config.hidden_units,
            activation=config.hidden_activation,
            kernel_initializer=config.kernel_initializer,
        )(h)
    scores = tf.keras.layers.Dense(1, kernel_initializer=config.kernel_initializer)(h)
    scores = tf.keras.layers.Reshape((config.list_size,))(scores)
    return tf.keras.Model(inputs, scores)


# --- training step ---
def to_loss_shape(tensor, list_shape: str):
    """Reshape (batch, list_size) labels or scores into what the loss is given."""
    import tensorflow as tf

    if list_shape == "flattened":
        # The question's shape: one document per row, so each "list" has length 1.
        return tf.reshape(tensor, (-1, 1))
    if list_shape == "vector":
        # Rank 1: ListMLE reduces over axis 1, which does not exist, so it raises
        # a ValueError while tracing; it is left to propagate.
        return tf.reshape(tensor, (-1,))
    if list_shape == "one_list":
        # One list of every document in the batch: the loss is not zero, but it ranks documents of
        # different queries against each other, which a query's ranking never asks for.
        return tf.reshape(tensor, (1, -1))
    return tensor


def make_train_step(model, optimizer, loss_fn, config: Config):
    import tensorflow as tf

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, config.list_size, config.n_features), tf.float32),
            tf.TensorSpec((None, config.list_size), tf.float32),
        ]
    )
    def train_step(x, y):
        with tf.GradientTape() as tape:
            scores = model(x, training=True)
            loss = loss_fn(to_loss_shape(y, config.list_shape), to_loss_shape(scores, config.list_shape))
        grads = tape.gradient(loss, model.trainable_variables)
        # A zero loss with a zero gradient is the signature of one-item lists;
        # the norm is taken before the update, on the gradient the loss produced.
        grad_norm = tf.linalg.global_norm(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, grad_norm

    return train_step


# --- evaluation ---
@functools.cache
def _ndcg5_per_list():
    """Per-list NDCG@5 and list weights: the computation inside `tfr.keras.metrics.NDCGMetric(topn=5)`.

    Built as that metric builds it; `metrics_impl` is an internal module of tensorflow-ranking, whose
    version constraints.txt pins. It holds no state, so one per process serves every trial.
    """
    import tensorflow_ranking as tfr
    from tensorflow_ranking.python import metrics_impl

    return metrics_impl.NDCGMetric(
        name="ndcg5",
        topn=5,
        gain_fn=tfr.keras.utils.pow_minus_1,
        rank_discount_fn=tfr.keras.utils.log2_inverse,
    )


def ndcg5(labels, scores) -> float:
    """NDCG@5 over grouped (queries, list_size) lists, whatever shape training used.

    The same number, bit for bit, as a fresh `tfr.keras.metrics.NDCGMetric(topn=5)` given these lists:
    its per-list NDCG averaged with its per-list weights in float32, as its Mean does. Not through the
    Keras metric object because, made anew for every call, that costs ~30 ms in eager mode (new
    variables, an autograph-converted update_state) on top of ~10 ms of computing, and a trial calls
    this CHANCE_DRAWS + 1 times before training and once per epoch. Ties in `scores` are broken by the
    same random shuffle as in the metric, drawing the same eager op seeds.
    """
    import tensorflow as tf

    per_list, weights = _ndcg5_per_list().compute(tf.cast(labels, tf.float32), tf.cast(scores, tf.float32), None)
    return float(tf.math.divide_no_nan(tf.reduce_sum(per_list * weights), tf.reduce_sum(weights)).numpy())


def reference_ndcg5(test_y, test_relevance, seed: int):
    """`chance`: mean NDCG@5 of seeded random scores; `oracle`: NDCG@5 of the noise-free relevance."""
    # seed + 1: a stream of its own, so the draws never reuse the data's numbers.
    rng = np.random.default_rng(seed + 1)
    # One ndcg5 call per draw, not one on all draws stacked, although that would be faster: every call
    # takes TF's next eager op seeds for its tie-breaking shuffle, and the val_loss and NDCG@5 of every
    # epoch take theirs after these, so fewer calls here would change how they break ties.
    chance = float(
        np.mean([ndcg5(test_y, rng.standard_normal(test_y.shape).astype(np.float32)) for _ in range(CHANCE_DRAWS)])
    )
    oracle = ndcg5(test_y, test_relevance)
    return chance, oracle


# --- training loop ---
def train(config: Config, report: Callable[[dict], None]) -> None:
    import tensorflow as tf
    import tensorflow_ranking as tfr

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(config.seed)

    (train_x, train_y), (test_x, test_y, test_relevance) = make_data(config)
    if config.labels == "constant":
        train_y = np.full_like(train_y, CONSTANT_GRADE)
    chance, oracle = reference_ndcg5(test_y, test_relevance, config.seed)

    model = make_model(config)
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    loss_fn = tfr.keras.losses.ListMLELoss()
    # Adam's slots are made here, not in the first call of the compiled step, which would then be
    # traced twice (once to create them, once without creating): ~0.5 s less per trial, same numbers.
    optimizer.build(model.trainable_variables)
    train_step = make_train_step(model, optimizer, loss_fn, config)
    probe_y = tf.constant(train_y[:PROBE_QUERIES])
    instruments = Instruments(
        model,
        train_x[:PROBE_QUERIES],
        lambda scores: loss_fn(to_loss_shape(probe_y, config.list_shape), to_loss_shape(scores, config.list_shape)),
    )

    # Batch order gets its own seeded stream (seed + 2), apart from data and chance; the no-skill draws too
    # (seed + 3): the model's final scores shuffled within each test list, a random ranking of the same lists.
    order_rng = np.random.default_rng(config.seed + 2)
    shuffle_rng = np.random.default_rng(config.seed + 3)
    test_x_t = tf.constant(test_x)
    test_y_t = tf.constant(test_y)
    # The model's scores before its first step, for `untrained` at the last report: what its initial weights
    # already rank is no sign that it learned.
    initial_scores = model(test_x_t, training=False)
    for epoch in range(1, config.epochs + 1):
        order = order_rng.permutation(config.n_train_queries)
        losses, norms = [], []
        for start in range(0, config.n_train_queries, config.batch_size):
            idx = order[start : start + config.batch_size]
            loss, grad_norm = train_step(tf.constant(train_x[idx]), tf.constant(train_y[idx]))
            losses.append(float(loss))
            norms.append(float(grad_norm))

        # Test labels stay graded even when training labels are constant: the
        # held-out queries measure what the user wants, not what was trained on.
        test_scores = model(test_x_t, training=False)
        val_loss = loss_fn(
            to_loss_shape(test_y_t, config.list_shape),
            to_loss_shape(test_scores, config.list_shape),
        )
        # The instruments' readings first, so the workload's own keys (its training grad_norm) win a clash; and
        # before NDCG@5, whose ties take TF's next eager op seeds, as they always have.
        readings = instruments.measure()
        levels = {"chance": chance, "oracle": oracle}
        metric = ndcg5(test_y_t, test_scores)
        if epoch == config.epochs:  # the last report, the one a verdict reads (and no later ndcg5 call's ties move)
            draws = shuffle_draws(functools.partial(ndcg5, test_y_t), test_scores.numpy(), shuffle_rng, axis=1)
            levels["no_skill"] = no_skill_level(draws, MODE)
            levels["untrained"] = ndcg5(test_y_t, initial_scores)
        report(
            {
                **readings,
                "step": epoch,
                "loss": float(np.mean(losses)),
                "val_loss": float(val_loss),
                "grad_norm": float(np.mean(norms)),
                "ndcg5": metric,
                **levels,
            }
        )


if __name__ == "__main__":
    config = dataclasses.replace(Config(), **SMOKE)
    start = time.perf_counter()
    train(config, print)
    print(f"wall {time.perf_counter() - start:.1f}s")
