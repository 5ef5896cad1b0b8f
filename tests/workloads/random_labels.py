"""A Keras classifier that can learn nothing: its labels are drawn independently of its inputs (200
validation examples). A knob that changes nothing (`note`) gives a sweep two settings of the same program."""

from dataclasses import dataclass
from typing import Literal

METRIC, MODE = "val_accuracy", "max"
COMPILE = {"optimizer": "adam", "learning_rate": 0.01, "loss": "binary_crossentropy", "metrics": ["accuracy"]}
FIT = {"epochs": 20, "batch_size": 32}


@dataclass(frozen=True)
class Config:
    note: Literal["a", "b"] = "a"
    """Changes nothing: the same program under two names."""
    seed: int = 0
    """Seed."""


def data(config):
    import numpy as np

    rng = np.random.default_rng(config.seed)
    x = rng.normal(size=(1000, 10)).astype("float32")
    y = rng.integers(0, 2, size=1000).astype("float32")  # independent of x: nothing to learn
    return x[:800], y[:800], x[800:], y[800:]


def model(config):
    import tensorflow as tf

    return tf.keras.Sequential(
        [
            tf.keras.layers.Dense(32, activation="relu", input_shape=(10,)),
            tf.keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
