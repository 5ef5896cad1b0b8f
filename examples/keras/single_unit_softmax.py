"""A binary classifier with a softmax over its one output unit: the softmax of one number is always 1.

A seeded, learnable synthetic task (10 normal features, label 1 when x0 + x1 x2 - 0.5 x3 > 0.5: ~36%
positives), one ReLU layer, Adam at 0.01, binary cross-entropy. Every prediction is 1.0 ("positive")
whatever the weights, so the accuracy is the share of positives, below the majority-class chance.
Expected fix: `output_activation: sigmoid`.

Not what the folklore says: the gradient does not vanish. Keras 2.15 keeps the softmax's input on its output
tensor (`_keras_logits`) and `binary_crossentropy` computes the loss from that logit as if it were a
sigmoid's, so the loss falls (to ~0.05) and gradients flow (norm ~0.1 at every report, `sweeper run`
on seeds 0-4) while the predictions never move: the verdict is `collapsed`, not `no_signal`.

Measured on calibration seeds 1000-1009 (plain Keras, remedy applied by hand, ~1.4 s a trial on one core):
val_accuracy 0.36 median [0.33..0.41] as written, 10/10 below chance (0.64 [0.59..0.68]); with a sigmoid
output 0.945 [0.915..0.975], 10/10. A linear output also learns (0.94 [0.905..0.975]: binary cross-entropy
clips it into (0, 1)); a lower learning rate (0.001) changes nothing (0.36, the same on every seed).
"""

import numpy as np

METRIC, MODE = "val_accuracy", "max"
COMPILE = {"optimizer": "adam", "learning_rate": 0.01, "loss": "binary_crossentropy", "metrics": ["accuracy"]}
FIT = {"epochs": 20, "batch_size": 32}
SMOKE = {"epochs": 5}


def data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1200, 10)).astype("float32")
    y = (x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] > 0.5).astype("float32")[:, None]
    return x[:1000], y[:1000], x[1000:], y[1000:]


def model(seed: int):
    from tensorflow import keras

    return keras.Sequential(
        [
            keras.Input(shape=(10,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="softmax"),
        ]
    )
