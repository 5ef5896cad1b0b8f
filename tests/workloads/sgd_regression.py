"""Plain SGD on badly scaled features: a one-file test workload whose baseline runs to infinity.

A linear regression of a target with mean 3 on four features whose scales are 1, 1000, 0.01 and 100, fitted
by plain minibatch SGD. On raw features the 1000-scale column makes every step multiply the weights by about
lr * 1000^2 = 1e4: within an epoch of eight steps the predictions reach ~1e290, the validation R^2 about
-1e297, and a few epochs later the loss is inf. Standardised features make the same SGD converge (R^2 ~0.9).
A learning rate too small to move the weights from zero ends where it started: predicting 0 for a target of
mean 3 gives an R^2 well below 0, worse than predicting the mean.

R^2 of a model that learned nothing (the constant mean) is 0, whatever the data: CHANCE = 0.0. numpy only.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from sweeper.workload import Range

METRIC, MODE = "val_r2", "max"
CHANCE = 0.0
SMOKE = {"epochs": 10}
SCALES = np.array([1.0, 1000.0, 0.01, 100.0])


@dataclass(frozen=True)
class Config:
    feature_scaling: Literal["raw", "standardized"] = "raw"
    """`raw` features (scales 1, 1000, 0.01, 100) or standardised with the training split's statistics."""
    learning_rate: Annotated[float, Range(0.0, 1.0, low_open=True)] = 0.01
    """Plain SGD step size."""
    epochs: Annotated[int, Range(1, 1000)] = 20
    """Passes over the training split; one report per epoch."""
    seed: int = 0
    """Data, initial order and batches."""


def train(config: Config, report) -> None:
    rng = np.random.default_rng(config.seed)
    x = rng.normal(size=(384, 4)) * SCALES
    y = 3.0 + (x / SCALES) @ np.array([1.0, -2.0, 0.5, 1.5]) + 0.3 * rng.normal(size=384)
    x_train, y_train, x_val, y_val = x[:256], y[:256], x[256:], y[256:]
    if config.feature_scaling == "standardized":
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    weights, bias = np.zeros(4), 0.0
    with np.errstate(all="ignore"):  # overflow is the failure being reproduced, not a bug
        for epoch in range(1, config.epochs + 1):
            grad_norm = 0.0
            for batch in np.array_split(rng.permutation(256), 8):
                error = x_train[batch] @ weights + bias - y_train[batch]
                grad_w, grad_b = 2 * x_train[batch].T @ error / len(batch), 2 * error.mean()
                grad_norm = float(np.sqrt(grad_w @ grad_w + grad_b**2))
                weights, bias = weights - config.learning_rate * grad_w, bias - config.learning_rate * grad_b
            loss = float(np.mean((x_train @ weights + bias - y_train) ** 2))
            residual = float(np.sum((x_val @ weights + bias - y_val) ** 2))
            r2 = 1.0 - residual / float(np.sum((y_val - y_val.mean()) ** 2))
            report({"step": epoch, "loss": loss, "grad_norm": grad_norm, METRIC: r2})
