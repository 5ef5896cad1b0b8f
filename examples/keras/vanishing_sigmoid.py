"""A deep sigmoid classifier (8 hidden layers) trained with plain SGD: the gradient vanishes, it never learns.

A seeded, learnable synthetic task (4 normal features, label 1 inside a circle of radius 1.18 in (x0, x1):
~50% positives), eight sigmoid layers of 32, SGD at 0.05, binary cross-entropy, 30 epochs. Each sigmoid
layer multiplies the backpropagated gradient by at most 0.25, so the first layers barely move and the net
predicts the prior. Expected fixes: `hidden_activation: relu` or `normalization: batch`.

Measured on calibration seeds 1000-1009 (plain Keras, remedy applied by hand, ~2 s a trial on one core):
val_accuracy 0.49 median [0.42..0.595] as written, 10/10 at or below chance (0.51 [0.455..0.595]); with
ReLU hidden layers 0.945 [0.66..0.98], 10/10 above chance (seed 1004 at 0.66); with batch normalization
after each hidden layer 0.87 [0.76..0.935], 10/10.
At initialization the first layer's kernel gradient is 2.4e-6 (seed 1000) and 4.1e-6 (seed 1001) times the
output layer's (256 training inputs): it shrinks about 4-5x a layer. tanh hidden layers also fix it (0.925
[0.765..0.98], 10/10); Adam at 0.001, often said to rescue vanishing gradients, does not (0.51, at chance
on 10/10).
"""

import numpy as np

METRIC, MODE = "val_accuracy", "max"
COMPILE = {"optimizer": "sgd", "learning_rate": 0.05, "loss": "binary_crossentropy", "metrics": ["accuracy"]}
FIT = {"epochs": 30, "batch_size": 32}
SMOKE = {"epochs": 5}


def data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1200, 4)).astype("float32")
    y = (np.hypot(x[:, 0], x[:, 1]) < 1.18).astype("float32")[:, None]  # inside a circle: ~50% positives
    return x[:1000], y[:1000], x[1000:], y[1000:]


def model(seed: int):
    from tensorflow import keras

    hidden = [keras.layers.Dense(32, activation="sigmoid") for _ in range(8)]
    return keras.Sequential([keras.Input(shape=(4,)), *hidden, keras.layers.Dense(1, activation="sigmoid")])
