"""An MLP with no activations, N(0, 1) weights, MSE on one-hot labels and SGD at 3.0: NaN from the first steps.

The shape of a real fault from a public fault benchmark (an MNIST MLP, kept out of the repository), on a
seeded synthetic task instead of MNIST (no download): 10 classes, 196 "pixels" in [0, 1], each class a
random on/off prototype (30% of the pixels on) at a random brightness in [0.5, 1], plus N(0, 1) noise,
clipped. Two hidden Dense layers of 64 with no activation (the network is one linear map) whose kernels are
drawn N(0, 1): variance 1 on 196 and 64 inputs, 64-196x what Glorot gives. Mean squared error against the
one-hot labels, plain SGD at 3.0, 10 epochs. The outputs start in the hundreds, the first step overshoots,
and the loss is NaN within the first epoch.

Several things are wrong at once, so no one change is enough. Measured on calibration seeds 1000-1002
(plain Keras, each remedy applied by hand, ~2 s a trial on one core), val_accuracy at the last epoch:
- as written, and with any one of: learning rate 0.3 or 0.03, Glorot initialization, ReLU hidden layers:
  0.086-0.106 (chance is 0.1; the weights are NaN);
- global-norm clipping at 1: 0.094-0.114;
- Glorot initialization with the learning rate at 0.03 (two changes): 0.76-0.81;
- Glorot with ReLU, Glorot with clipping, ReLU with the rate at 0.03: at chance;
- the benchmark's kind of fix (sigmoid hidden layers, softmax output, cross-entropy, Glorot, SGD at 3.0):
  0.92-0.95.
The data and structure findings name two of the causes before any trial (no hidden activation; weights far
above their fan-in's scale). Expected: `sweeper doctor --run` finds no single remedy, and its combination
round calls the pair `kernel_initializer` with the smaller learning rate `fixes`.
"""

import numpy as np

METRIC, MODE = "val_accuracy", "max"
COMPILE = {"optimizer": "sgd", "learning_rate": 3.0, "loss": "mean_squared_error", "metrics": ["accuracy"]}
FIT = {"epochs": 10, "batch_size": 32}
SMOKE = {"epochs": 3}


def data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prototypes = (rng.random((10, 196)) < 0.3).astype("float32")
    label = rng.integers(0, 10, size=3000)
    brightness = rng.uniform(0.5, 1.0, size=(3000, 1))
    x = np.clip(prototypes[label] * brightness + rng.normal(0.0, 1.0, size=(3000, 196)), 0.0, 1.0).astype("float32")
    y = np.eye(10, dtype="float32")[label]
    return x[:2500], y[:2500], x[2500:], y[2500:]


def model(seed: int):
    from tensorflow import keras

    def dense(units: int):
        return keras.layers.Dense(units, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))

    return keras.Sequential([keras.Input(shape=(196,)), dense(64), dense(64), dense(10)])
