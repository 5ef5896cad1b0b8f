"""Bidirectional LSTM "val_score of 0.0" workload.

Reproduces the widely read question "Why is my bidirectional LSTM achieving a
val_score of 0.0?". The folk answer lists: variable-length sequences padded
without care (padded zeros read as data, no masking), features on very
different scales, a sigmoid output on a regression target, a loss that does
not match the output, labels encoded inconsistently or with a narrow range,
too few units, layers or data, dropout, a learning rate too high or too low,
too few iterations or too small batches, and improper masking.
It also recommends `pad_sequences(..., padding='post')` over
`np.pad(..., 'constant')` at the end, which builds the very same array.

Two seeded synthetic tasks over sequences of 5..50 steps with three features
on very different scales (a unit sensor, an amount around 1000, a rate around
0.01); padded steps carry no signal:
- `classification`: the label is 1 when the sign of the sensor at the FIRST
  step differs from the sign of the amount's deviation at the LAST valid step
  (an XOR of the two ends), so a model that reads only one end scores exactly
  chance and both directions of the BiLSTM are needed;
- `regression`: the target is ~100 + 30 x (sensor at the first step + scaled
  amount at the last valid step), spanning roughly 0..200, far outside what a
  sigmoid output can reach.

The validation score is 0.0 for no predictive ability and 1.0 for a perfect
model on both tasks: Cohen's kappa for classification (exactly 0 for a
constant or random predictor, whatever the class balance) and R^2 for
regression (negative when worse than predicting the mean).

Measured on TF 2.15.1 (CPU, 3 seeds, default budget): the baseline (raw
features, post-padding, no masking) scores kappa ~0.0 because of two causes
at once. Raw features saturate the LSTM: an amount of ~1000 drives every gate
to 0 or 1, so the sensor's sign never reaches the state (masking alone still
scores 0.0). And unmasked padding makes one direction end on a run of zeros
(the forward one after post-padding, the backward one after pre-padding), so
the end it read is mostly forgotten (standardising alone reaches ~0.4).
Standardising AND masking reach ~0.95. `padding_impl` cannot matter: see `pad`.

The defaults of `Config` are the question's setup; every folk remedy is a
knob, and so is every other cause the answer names, each off by default: the
loss against the output activation (`loss`), masking done wrong (`masking=
wrong_side`), steps not properly sequenced (`sequencing`), labels with a narrow
range (`positive_rate`) or encoded inconsistently (`inconsistent_share`), the
number of layers, dropout, and the unidirectional LSTM the answer sets beside
the bidirectional one (`direction`). Only the standard library and numpy are imported
at module level so the module can be imported for spec validation without
paying for TensorFlow.
"""

import dataclasses
import functools
import statistics
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
    # --- the task ---
    task: Literal["classification", "regression"] = "classification"
    """`classification`: XOR of the signs at the two ends of each sequence; `regression`: a target of ~0..200 from the
    two ends."""

    # --- the folk remedies (defaults reproduce the question) ---
    padding: Literal["post", "pre"] = "post"
    """Where the zeros go: `post` after the valid steps (as `np.pad(..., 'constant')` at the end in the question), `pre`
    before them."""
    padding_impl: Literal["np_pad", "pad_sequences"] = "np_pad"
    """How the batch is padded: `np.pad` per sequence or `tf.keras.utils.pad_sequences`; both build the
    identical array."""
    masking: Literal["none", "masking_layer", "wrong_side"] = "none"
    """`none`: padded zeros are read as data; `masking_layer`: a `Masking(mask_value=0.0)` layer makes both LSTM
    directions skip them; `wrong_side`: masking done wrong, the answer's "Improper masking": a mask of the valid steps
    built for the other padding side (as `tf.sequence_mask(lengths)` on pre-padded data), so the LSTM skips valid steps
    and reads pads."""
    feature_scaling: Literal["raw", "standardized"] = "raw"
    """`raw` (scales ~1, ~1000, ~0.01) or `standardized` per feature with training statistics over valid steps, before
    padding so pads stay 0."""
    output_activation: Literal["sigmoid", "linear"] = "sigmoid"
    """Activation of the output unit. Under the default `loss=matched`, classification trains with binary cross-entropy
    on probabilities (sigmoid) or on logits (linear); regression with MSE on the output as is."""
    loss: Literal["matched", "mse", "bce_probabilities", "bce_logits"] = "matched"
    """The answer's "the chosen loss function must align with the selected activation and output range" and "selected
    appropriately for the nature of the target": `matched` is MSE for regression and, for classification, binary
    cross-entropy reading the output as the activation makes it (probabilities after sigmoid, logits after linear);
    the others are used whatever the task and output: `mse`, `bce_probabilities` (on a linear output Keras clips it to
    (0, 1)), `bce_logits` (on a sigmoid output the sigmoid is applied twice). Classification predicts the positive class
    where the loss reads a probability above 1/2 (output > 0 for logits, > 0.5 otherwise)."""
    target_scaling: Literal["raw", "standardized"] = "raw"
    """Regression only: fit the raw target or its standardised version (training mean/std); R^2 is computed on the raw
    scale either way."""

    # --- capacity and optimisation ---
    direction: Literal["bidirectional", "forward"] = "bidirectional"
    """`bidirectional`: every layer is `Bidirectional(LSTM)`, the question's model; `forward`: a plain unidirectional
    `LSTM` with the same `units` (so half the recurrent state, and half the weights), reading the steps in order. The
    answer: "Bidirectional LSTMs, being more complex than their unidirectional counterparts, are more susceptible to
    these hyperparameter-related problems". A forward LSTM meets the last valid step at its end (masked) but must
    carry the first step's sensor across the whole sequence."""
    units: Annotated[int, Range(1, 2048)] = 16
    """LSTM units per direction (the answer's "hidden unit size"; its Example 3 goes from 16 to 64)."""
    layers: Annotated[int, Range(1, 8)] = 1
    """Stacked Bidirectional(LSTM) layers, the lower ones returning sequences (the answer's "The number of LSTM
    layers")."""
    dropout: Annotated[float, Range(0.0, 1.0, high_open=True)] = 0.0
    """Dropout rate on the inputs of every LSTM layer (`LSTM(dropout=...)`; the answer's "the use of dropout")."""
    learning_rate: Annotated[float, Range(0.0, 10.0, low_open=True)] = 1e-3
    """Adam learning rate (the answer: "too high" oscillates, "too low" learns exceedingly slowly)."""
    epochs: Annotated[int, Range(1, 10_000)] = 25
    """Passes over the training set; one report per epoch (the answer's "insufficient training iterations")."""
    batch_size: Annotated[int, Range(1, 4096)] = 64
    """Sequences per training step (the answer's "an excessively small batch size")."""

    # --- data ---
    dataset_size: Annotated[int, Range(1, 1_000_000)] = 2000
    """Number of training sequences (the answer's Example 3: "the need for sufficient data")."""
    n_val: Annotated[int, Range(2, 100_000)] = 500
    """Number of validation sequences (val_loss and val_score)."""
    min_len: Annotated[int, Range(1, 1000)] = 5
    """Shortest sequence (valid steps; at most `max_len`)."""
    max_len: Annotated[int, Range(1, 1000)] = 50
    """Longest sequence; every sequence is padded to this length."""
    sequencing: Literal["ordered", "reshaped"] = "ordered"
    """The answer's "If your data isn't properly sequenced, segmented into timesteps": `ordered` feeds (steps,
    features); `reshaped` stores each padded sequence as (features, steps) and reshapes it (not transposes it) to
    (steps, features), so every "step" mixes values of different steps."""

    # --- labels (classification only) ---
    positive_rate: Annotated[float, Range(0.0, 0.5, low_open=True)] = 0.5
    """Share of positive labels, for the answer's labels that "have a limited range of variation": still an XOR of the
    two ends, each end compared with one threshold (0 at 0.5, ~1.95 at 0.05) chosen so that the XOR holds this often
    (see `label_threshold`). Regression ignores it."""
    inconsistent_share: Annotated[float, Range(0.0, 1.0)] = 0.0
    """Share of the training sequences whose labels are encoded the other way round (a second source with 1 for the
    negative class), for the answer's "target labels are inconsistently encoded"; the validation labels stay
    consistent. At 0.5 the labels carry no information. Regression ignores it."""
    seed: int = 0
    """Seeds the data, the weight initialisation and the batch order."""


METRIC = "val_score"
MODE = "max"
# A model that learned nothing scores 0.0 on both tasks, whatever the data: Cohen's kappa of a constant
# or random predictor, R^2 of predicting the mean. (The reports carry it too.) On a finite validation split
# it scores around 0.0: every report also carries `no_skill`, what the model's own predictions reach
# shuffled against the targets (99 shuffles, sweeper.no_skill), which a trial must pass to be healthy.
CHANCE = 0.0

# Few epochs on a quarter of the data: seconds on one CPU core once TensorFlow
# is imported, with the defaults' sequence lengths and feature scales so the
# failure looks the same, only shorter.
SMOKE = {"epochs": 3, "dataset_size": 500, "n_val": 200}
LIMITS = [("min_len <= max_len", lambda config: config.min_len <= config.max_len)]
"""Limits across knobs, checked for every grid point before any trial runs (`sweeper.workload`)."""

# Feature scales of the three channels: a unit sensor, an amount around 1000
# (std 300) and a rate around 0.01 (std 0.01), as raw tabular sensors come.
FEATURE_MEAN = np.array([0.0, 1000.0, 0.01])
FEATURE_STD = np.array([1.0, 300.0, 0.01])
# Regression target: TARGET_OFFSET + TARGET_GAIN * (two unit-variance terms),
# i.e. mean 100 and std ~42, so most targets lie in 0..200.
TARGET_OFFSET = 100.0
TARGET_GAIN = 30.0
# Training sequences (the first ones) on which sweeper.instruments reads the model at each report: one default
# batch, so a reading costs about one training step (bench/instruments_cost.py).
PROBE_SEQUENCES = 64
# Width of the hidden layer of the Dense head: an XOR of the two ends is not
# linearly separable in the two directions' final states, so the head needs one.
HEAD_UNITS = 16


# --- data ---
def label_threshold(positive_rate: float) -> float:
    """The threshold t on both unit-normal ends for which (a > t) != (b > t) holds with probability positive_rate.

    With p = P(a > t), the XOR holds with probability 2 p (1 - p); solved for p and inverted through the normal CDF.
    """
    if positive_rate == 0.5:
        return 0.0  # exactly the sign test of the question's task
    p = (1.0 - np.sqrt(1.0 - 2.0 * positive_rate)) / 2.0
    return statistics.NormalDist().inv_cdf(1.0 - p)


def pad(sequences: list, config: Config) -> np.ndarray:
    """(n, max_len, n_features) float32, zeros before or after the valid steps.

    Both implementations build the same array for float input; checked with
    `np.array_equal` on every padding/scaling/task combination of seeds 0..2
    (they are bit-identical), so `padding_impl` can only show "no effect".
    `pad_sequences` needs dtype="float32": its default dtype "int32" would
    truncate the float features, a different bug from the one the answer means.
    """
    if config.padding_impl == "pad_sequences":
        import tensorflow as tf

        return tf.keras.utils.pad_sequences(
            sequences, maxlen=config.max_len, dtype="float32", padding=config.padding, value=0.0
        )
    padded = []
    for seq in sequences:
        missing = config.max_len - len(seq)
        before, after = (0, missing) if config.padding == "post" else (missing, 0)
        padded.append(np.pad(seq, ((before, after), (0, 0)), mode="constant"))
    return np.stack(padded).astype(np.float32)


def make_data(config: Config):
    """Padded train and validation sequences with targets that depend on valid steps only.

    Every sequence's target is a function of its first and last valid steps;
    the steps in between are distractors from the same distribution.
    """
    rng = np.random.default_rng(config.seed)
    n = config.dataset_size + config.n_val
    lengths = rng.integers(config.min_len, config.max_len + 1, size=n)
    unit = [rng.standard_normal((length, len(FEATURE_MEAN))) for length in lengths]
    first = np.array([z[0, 0] for z in unit])  # the sensor at the first step
    last = np.array([z[-1, 1] for z in unit])  # the amount's deviation at the last valid step
    if config.task == "classification":
        threshold = label_threshold(config.positive_rate)
        y = ((first > threshold) != (last > threshold)).astype(np.float32)
    else:
        y = (TARGET_OFFSET + TARGET_GAIN * (first + last)).astype(np.float32)
    sequences = [FEATURE_MEAN + FEATURE_STD * z for z in unit]

    if config.feature_scaling == "standardized":
        # Statistics over the valid training steps only; applied before padding
        # so that padded steps stay exactly zero and `Masking` still sees them.
        steps = np.concatenate(sequences[: config.dataset_size])
        mean, std = steps.mean(axis=0), steps.std(axis=0)
        sequences = [(s - mean) / std for s in sequences]

    x = pad([s.astype(np.float32) for s in sequences], config)
    if config.sequencing == "reshaped":
        # The padded (steps, features) block stored as (features, steps), then reshaped instead of transposed.
        x = np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(x.shape)
    m = config.dataset_size
    if config.task == "classification" and config.inconsistent_share > 0:
        # Drawn after everything else, so the sequences and the other labels are those of share 0.
        flipped = rng.random(m) < config.inconsistent_share
        y[:m][flipped] = 1.0 - y[:m][flipped]
    return (x[:m], y[:m]), (x[m:], y[m:])


# --- model ---
def make_model(config: Config):
    """(batch, max_len, 3) -> (batch,): `layers` stacked Bidirectional(LSTM) (or LSTM, `direction`) and a small
    Dense head."""
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(config.max_len, len(FEATURE_MEAN)))
    h = inputs
    mask = None
    if config.masking == "masking_layer":
        # A step is masked when all its features equal 0: only padded steps,
        # since a valid step of continuous features is never all-zero. This is
        # what `Embedding(mask_zero=True)` does for token ids.
        h = tf.keras.layers.Masking(mask_value=0.0)(h)
    elif config.masking == "wrong_side":
        # The right mask (a step is valid unless all its features are 0) mirrored in time: the mask of the other
        # padding side, as `tf.sequence_mask(lengths, max_len)` (valid steps first) gives on pre-padded data.
        mask = tf.keras.layers.Lambda(lambda x: tf.reverse(tf.reduce_any(tf.not_equal(x, 0.0), axis=-1), axis=[1]))(
            inputs
        )
    for layer in range(config.layers):
        lstm = tf.keras.layers.LSTM(config.units, dropout=config.dropout, return_sequences=layer < config.layers - 1)
        recurrent = tf.keras.layers.Bidirectional(lstm) if config.direction == "bidirectional" else lstm
        # Only the first layer takes the explicit mask; Keras passes it on to the layers above.
        h = recurrent(h, mask=mask) if layer == 0 and mask is not None else recurrent(h)
    h = tf.keras.layers.Dense(HEAD_UNITS, activation="relu")(h)
    out = tf.keras.layers.Dense(1, activation=config.output_activation)(h)
    out = tf.keras.layers.Reshape(())(out)
    return tf.keras.Model(inputs, out)


def reads_logits(config: Config) -> bool:
    """Whether the loss reads the output as a logit (cross-entropy from logits) rather than as the prediction."""
    if config.loss == "matched":
        # A linear output unit is a logit; the matched cross-entropy then takes it as such.
        return config.task == "classification" and config.output_activation == "linear"
    return config.loss == "bce_logits"


def make_loss(config: Config):
    import tensorflow as tf

    if config.loss == "mse" or (config.loss == "matched" and config.task == "regression"):
        return tf.keras.losses.MeanSquaredError()
    return tf.keras.losses.BinaryCrossentropy(from_logits=reads_logits(config))


# --- training step ---
def make_train_step(model, optimizer, loss_fn, config: Config):
    import tensorflow as tf

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, config.max_len, len(FEATURE_MEAN)), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        ]
    )
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        # Saturated gates show up as a vanishing norm; taken before the update.
        grad_norm = tf.linalg.global_norm(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, grad_norm

    return train_step


# --- evaluation ---
def make_validation_pass(model, val_x: np.ndarray):
    """The model's outputs on the validation sequences, as a function compiled once per trial.

    Called eagerly, Keras runs the LSTM's loop over the time steps op by op: ~250 ms per epoch for 500
    sequences, against ~30 ms compiled, for ~1 s of tracing once. The outputs are the same up to float
    rounding (the compiled graph fuses some ops).
    """
    import tensorflow as tf

    val_x = tf.constant(val_x)

    @tf.function
    def validation_outputs():
        return model(val_x, training=False)

    return validation_outputs


def val_score(y_true: np.ndarray, pred: np.ndarray, config: Config) -> float:
    """Cohen's kappa (classification) or R^2 (regression) on the raw target scale: 0 = no skill, 1 = perfect."""
    if config.task == "regression":
        residual = np.sum((y_true - pred) ** 2)
        total = np.sum((y_true - y_true.mean()) ** 2)
        return float(1.0 - residual / total)
    # The positive class where the loss reads a probability above 1/2.
    threshold = 0.0 if reads_logits(config) else 0.5
    y_pred = pred > threshold
    y_true = y_true > 0.5
    observed = np.mean(y_pred == y_true)
    # Agreement expected from a predictor with the same positive rate but no skill.
    expected = y_pred.mean() * y_true.mean() + (1 - y_pred.mean()) * (1 - y_true.mean())
    if expected == 1.0:  # both constant and equal: no skill to measure
        return 0.0
    return float((observed - expected) / (1.0 - expected))


# --- training loop ---
def train(config: Config, report: Callable[[dict], None]) -> None:
    import tensorflow as tf

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(config.seed)

    (train_x, train_y), (val_x, val_y) = make_data(config)
    # The fitted target: standardised on request (regression only); predictions
    # are mapped back before scoring so R^2 is always on the raw scale.
    shift, scale = 0.0, 1.0
    if config.task == "regression" and config.target_scaling == "standardized":
        shift, scale = float(train_y.mean()), float(train_y.std())
    fit_train_y = ((train_y - shift) / scale).astype(np.float32)
    fit_val_y = ((val_y - shift) / scale).astype(np.float32)

    model = make_model(config)
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    loss_fn = make_loss(config)
    # Adam's slots are made here, not in the first call of the compiled step, which would then be
    # traced twice (once to create them, once without creating): ~1.5 s less per trial, same numbers.
    optimizer.build(model.trainable_variables)
    train_step = make_train_step(model, optimizer, loss_fn, config)

    # Batch order gets its own seeded stream (seed + 1), apart from the data.
    order_rng = np.random.default_rng(config.seed + 1)
    # The no-skill draws get theirs (seed + 2): the predictions shuffled against the targets.
    shuffle_rng = np.random.default_rng(config.seed + 2)
    val_outputs = make_validation_pass(model, val_x)
    score_of = functools.partial(val_score, val_y.astype(np.float64), config=config)
    # The model before its first step: a score its initial weights already reach is no sign that it learned.
    untrained = score_of(val_outputs().numpy().astype(np.float64) * scale + shift)
    probe_y = tf.constant(fit_train_y[:PROBE_SEQUENCES])
    instruments = Instruments(model, train_x[:PROBE_SEQUENCES], lambda outputs: loss_fn(probe_y, outputs))
    for epoch in range(1, config.epochs + 1):
        order = order_rng.permutation(config.dataset_size)
        losses, norms = [], []
        for start in range(0, config.dataset_size, config.batch_size):
            idx = order[start : start + config.batch_size]
            loss, grad_norm = train_step(tf.constant(train_x[idx]), tf.constant(fit_train_y[idx]))
            losses.append(float(loss))
            norms.append(float(grad_norm))

        val_out = val_outputs()
        val_loss = loss_fn(tf.constant(fit_val_y), val_out)
        pred = val_out.numpy().astype(np.float64) * scale + shift
        # The instruments' readings first, so the workload's own keys (its training grad_norm) win a clash.
        report(
            {
                **instruments.measure(),
                "step": epoch,
                "loss": float(np.mean(losses)),
                "val_loss": float(val_loss),
                "grad_norm": float(np.mean(norms)),
                "val_score": score_of(pred),
                "chance": 0.0,
                "no_skill": no_skill_level(shuffle_draws(score_of, pred, shuffle_rng), MODE),
                "untrained": untrained,
                "oracle": 1.0,
                "output_scale": float(np.mean(np.abs(pred))),
            }
        )


if __name__ == "__main__":
    config = dataclasses.replace(Config(), **SMOKE)
    start = time.perf_counter()
    train(config, print)
    print(f"wall {time.perf_counter() - start:.1f}s")
