"""A regression net with a sigmoid output: its predictions stay inside (0, 1), the target lies around 5 +- 2.

A seeded, learnable synthetic task (8 normal features, y = 5 + 2 sin(2 x0) + 1.5 x1 x2 + x3 + noise), two ReLU
layers, Adam at 0.01, MSE. The sigmoid caps every prediction below 1, so the loss stays above that of
predicting the training mean: worse than chance. Expected fix: `output_activation: linear`.

Measured on calibration seeds 1000-1009 (plain Keras, remedy applied by hand, ~2 s a trial on one core):
val_loss (MSE) 20.5 median [18.3..21.9] as written, 10/10 worse than chance (4.67 [4.18..5.77]); with a
linear output 0.36 [0.23..0.62], 10/10 far below chance.
"""

import numpy as np

METRIC, MODE = "val_loss", "min"
COMPILE = {"optimizer": "adam", "learning_rate": 0.01, "loss": "mean_squared_error", "metrics": ["mae"]}
FIT = {"epochs": 30, "batch_size": 32}
SMOKE = {"epochs": 5}


def data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1200, 8)).astype("float32")
    y = 5 + 2 * np.sin(2 * x[:, 0]) + 1.5 * x[:, 1] * x[:, 2] + x[:, 3] + 0.3 * rng.normal(size=1200)
    y = y[:, None].astype("float32")
    return x[:1000], y[:1000], x[1000:], y[1000:]


def model(seed: int):
    from tensorflow import keras

    return keras.Sequential(
        [
            keras.Input(shape=(8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
