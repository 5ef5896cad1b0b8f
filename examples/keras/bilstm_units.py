"""The BiLSTM document's Example 3, "Insufficient Training Data or Parameters" (sources/003_c77cab49935204c8.txt).

50 sequences of 10 steps of 4 random features, a random binary label each, a Bidirectional(LSTM(16)) with a
sigmoid output, Adam, binary cross-entropy, 20 epochs of batches of 16, the last 20% held out (Keras's
`validation_split=0.2`, done here in `data`: 10 validation sequences, so val accuracy moves in steps of 0.1).
The document says 64 units instead of 16 improve it "dramatically": `units` is that fix. The labels are random,
so no capacity can predict them: expect no effect.

Measured on calibration seeds 1000-1009 (plain Keras, ~3 s a trial on one core, epochs as written):
val_accuracy 0.45 median [0.2..0.7] with 16 units, against chance (the training majority class) 0.5
[0.2..0.7], 0/10 above it; with 64 units 0.45 [0.2..0.9], 3/10 above chance and 4/10 below it, the
spread of 10 random validation labels.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

METRIC, MODE = "val_accuracy", "max"
COMPILE = {"optimizer": "adam", "learning_rate": 0.001, "loss": "binary_crossentropy", "metrics": ["accuracy"]}
FIT = {"epochs": 20, "batch_size": 16}
SMOKE = {"epochs": 3}
SAMPLES, STEPS, FEATURES = 50, 10, 4


@dataclass(frozen=True)
class Config:
    units: Literal[16, 64] = 16
    """LSTM units per direction: the document's "insufficient complexity" (16) or its fix (64)."""
    seed: int = 0
    """Seeds the data (the document's unseeded `np.random`) and the weights."""


def data(config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(config.seed)
    sequences = rng.random((SAMPLES, STEPS, FEATURES))
    labels = rng.integers(0, 2, size=SAMPLES)
    split = int(SAMPLES * 0.8)  # validation_split=0.2: the last 20%, unshuffled
    return sequences[:split], labels[:split], sequences[split:], labels[split:]


def model(config: Config):
    from tensorflow.keras.layers import LSTM, Bidirectional, Dense
    from tensorflow.keras.models import Sequential

    return Sequential(
        [
            Bidirectional(LSTM(config.units, return_sequences=False), input_shape=(STEPS, FEATURES)),
            Dense(1, activation="sigmoid"),
        ]
    )
