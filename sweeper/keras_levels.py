"""What a Keras program's validation metric means: the levels a verdict compares it with, computed by the
program's own loss and metrics on given predictions (`metric_on`).

- `reference_levels`: `chance` (the best constant prediction) and `oracle` (the targets themselves);
- `metric_on`: the metric of any predictions, which gives the no-skill level of `sweeper.no_skill` from the
  model's own final predictions shuffled against the targets.

TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def reference_levels(
    out_shape: tuple | None,
    loss: str,
    metrics: Callable[[], list],
    y_train: Any,
    y_val: Any,
    metric_key: str,
    mode: str,
) -> tuple[float | None, float | None]:
    """METRIC (a `val_` key) of the best constant prediction, and of the validation targets themselves, computed
    by the loss and a fresh copy of the metrics `net` is compiled with (`metrics()`) on those predictions.
    The constants tried are the targets' mean (the class priors, for labels) of the training split and of the
    validation split; chance is the better of the two in MODE's direction. The training mean alone would put
    chance below a constant that happens to tip to the validation split's majority (on balanced labels
    either class is 'learning nothing'), and a model stuck at that constant would pass for healthy.
    `out_shape` is the shape of one example's output (None for a model with several outputs); (None, None)
    where the targets do not match it."""
    import numpy as np
    import tensorflow as tf

    if out_shape is None:
        return None, None
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    units = out_shape[-1] if out_shape else 1
    sparse = units > 1 and np.issubdtype(y_train.dtype, np.integer) and y_train.size == len(y_train)
    if sparse:
        priors = [np.bincount(y.reshape(-1), minlength=units)[:units] / len(y) for y in (y_train, y_val)]
        ideal = np.eye(units)[y_val.reshape(-1)]
    else:
        if y_train[0].size != math.prod(out_shape):
            return None, None
        priors = [y.reshape(len(y), *out_shape).astype(np.float64).mean(axis=0) for y in (y_train, y_val)]
        ideal = y_val.reshape(len(y_val), *out_shape)
    candidates = [np.broadcast_to(prior, (len(y_val), *out_shape)) for prior in priors]
    loss_config = getattr(tf.keras.losses.get(loss), "get_config", None)  # a Loss object; a function has none
    if loss_config is not None and loss_config().get("from_logits"):
        candidates, ideal = [_as_logits(c, units) for c in candidates], _as_logits(ideal, units)
    level = metric_on(out_shape, loss, metrics, y_val, metric_key)
    constants = [value for value in map(level, candidates) if value is not None]
    chance = (max if mode == "max" else min)(constants) if constants else None
    return chance, level(ideal)


def metric_on(
    out_shape: tuple[int, ...],
    loss: str,
    metrics: Callable[[], list],
    y_val: Any,
    metric_key: str,
    *,
    one_batch: bool = False,
) -> Callable[[Any], float | None]:
    """A function of predictions for the validation split: METRIC (a `val_` key) of them, computed by the loss
    and a fresh copy of the metrics `net` is compiled with, as Keras's `evaluate` computes it (`one_batch`:
    on the whole split as one batch, the same numbers to float rounding and 4x faster, for the many calls of
    `no_skill_level`); None where it has no such key."""
    import numpy as np
    import tensorflow as tf

    identity = tf.keras.Sequential([tf.keras.layers.InputLayer(out_shape), tf.keras.layers.Activation("linear")])
    identity.compile(loss=loss, metrics=metrics())
    key = metric_key.removeprefix("val_")

    def level(predictions: Any) -> float | None:
        inputs = np.asarray(predictions, dtype=np.float32)
        if one_batch:
            values = identity.test_on_batch(inputs, y_val, return_dict=True)
        else:
            values = identity.evaluate(inputs, y_val, verbose=0, return_dict=True)
        return float(values[key]) if key in values else None

    return level


def _as_logits(probabilities: Any, units: int) -> Any:
    import numpy as np

    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p)) if units == 1 else np.log(p)
