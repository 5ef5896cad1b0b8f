"""A classifier fed raw features on scales of 1e3..1e5 (an area, an income, a population), trained with SGD.

A seeded, learnable synthetic task: 4 standard normal factors z, label 1 when z0 - z1 + z2 z3 > 0, and the
inputs are the raw quantities scale * (3 + z) with scales 1e3, 1e4, 1e5, 3e4. Two ReLU layers, SGD at 0.01,
binary cross-entropy. Inputs of ~1e5 make the first gradient steps huge: the ReLU units are knocked dead
and the net predicts one class. Expected fix: `input_scaling: standardize` (training-split statistics).

Measured on calibration seeds 1000-1009 (plain Keras, remedy applied by hand, ~1 s a trial on one core):
val_accuracy 0.50 median [0.42..0.54] as written, 10/10 at chance (0.50 [0.42..0.535]); in 9/10 seeds a
hidden layer ends with every unit dead (zero on 200 validation inputs). Standardized: 0.90 [0.87..0.955],
10/10.
Partial remedies: `input_scaling: minmax` learns but less (0.79 [0.62..0.88]: the features keep their
skew in [0, 1]), Adam at 0.001 on raw inputs too (0.78 [0.54..0.875]), and batch normalization after the
hidden layers barely helps (0.56 [0.515..0.695]): the first layer still sees the raw scales.
"""

import numpy as np

METRIC, MODE = "val_accuracy", "max"
COMPILE = {"optimizer": "sgd", "learning_rate": 0.01, "loss": "binary_crossentropy", "metrics": ["accuracy"]}
FIT = {"epochs": 20, "batch_size": 32}
SMOKE = {"epochs": 5}
SCALES = np.array([1e3, 1e4, 1e5, 3e4])


def data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(1200, 4))
    y = (z[:, 0] - z[:, 1] + z[:, 2] * z[:, 3] > 0).astype("float32")[:, None]
    x = (SCALES * (3 + z)).astype("float32")  # positive raw quantities: mean 3 scales, sd 1 scale
    return x[:1000], y[:1000], x[1000:], y[1000:]


def model(seed: int):
    from tensorflow import keras

    return keras.Sequential(
        [
            keras.Input(shape=(4,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
