"""A tiny Keras program for the tests: a learnable binary task, a ReLU MLP with a sigmoid output, a few epochs."""

from dataclasses import dataclass
from typing import Literal

METRIC, MODE = "val_accuracy", "max"
COMPILE = {"optimizer": "adam", "learning_rate": 0.01, "loss": "binary_crossentropy", "metrics": ["accuracy"]}
FIT = {"epochs": 3, "batch_size": 32, "shuffle": False}
SMOKE = {"epochs": 2}


@dataclass(frozen=True)
class Config:
    width: Literal[4, 8] = 8
    """Hidden units."""
    functional: bool = False
    """Build the same network with the Functional API."""
    seed: int = 0
    """Seed."""


def data(config):
    import numpy as np

    rng = np.random.default_rng(config.seed)
    x = rng.normal(size=(200, 3)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    return x[:150], y[:150], x[150:], y[150:]


def model(config):
    import tensorflow as tf

    if not config.functional:
        return tf.keras.Sequential(
            [
                tf.keras.layers.Dense(config.width, activation="relu", input_shape=(3,)),
                tf.keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
    inputs = tf.keras.Input((3,))
    hidden = tf.keras.layers.Dense(config.width)(inputs)
    hidden = tf.keras.layers.ReLU()(hidden)
    logits = tf.keras.layers.Dense(1)(hidden)
    return tf.keras.Model(inputs, tf.keras.layers.Activation("sigmoid")(logits))
