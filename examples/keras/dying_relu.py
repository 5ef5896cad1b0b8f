"""A deep ReLU regression net trained with Adam at a learning rate too high (0.3): its units die, output goes flat.

A seeded, learnable synthetic task (8 normal features, y = sin(2 x0) + x1 x2 + 0.5 x3 + noise), four ReLU
layers of 64, MSE. The first large steps push the hidden pre-activations below zero for every input; a dead
unit gets no gradient and stays dead, and the net ends predicting a constant. Expected fix: a lower
`learning_rate` (0.01; the rate was chosen on the calibration seeds below).

Measured on calibration seeds 1000-1009 (plain Keras, remedy applied by hand, ~2 s a trial on one core):
val_loss (MSE) 1.54 median [1.39..700] as written against chance 1.50 [1.29..1.91]: 9/10 flat at chance,
seed 1006 at 700; 73-100% of the units of hidden layers 2-4 dead (zero on 200 validation inputs). At
learning_rate 0.01: 0.073 [0.049..0.159], 10/10. Two folklore fixes do not work at this rate:
`hidden_activation: leaky_relu` keeps the units alive but diverges (19.8..5.8e4, 10/10 worse than chance),
and `kernel_initializer: he_normal` dies the same way (1.53 [1.29..30.8], 10/10 at or above chance).
Batch normalization after each hidden layer mostly rescues it (0.58 [0.19..7.5], 8/10 learn).
"""

import numpy as np

METRIC, MODE = "val_loss", "min"
COMPILE = {"optimizer": "adam", "learning_rate": 0.3, "loss": "mean_squared_error", "metrics": ["mae"]}
FIT = {"epochs": 30, "batch_size": 32}
SMOKE = {"epochs": 5}


def data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1200, 8)).astype("float32")
    y = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] + 0.1 * rng.normal(size=1200)
    y = y[:, None].astype("float32")
    return x[:1000], y[:1000], x[1000:], y[1000:]


def model(seed: int):
    from tensorflow import keras

    hidden = [keras.layers.Dense(64, activation="relu") for _ in range(4)]
    return keras.Sequential([keras.Input(shape=(8,)), *hidden, keras.layers.Dense(1)])
