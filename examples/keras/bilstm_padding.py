"""The BiLSTM document's Example 1, "Improper Sequence Padding" (sources/003_c77cab49935204c8.txt), as written.

100 sequences of 5..19 random steps of 10 random features, a random binary label each, zero-padded at the end
to the longest one, a Bidirectional(LSTM(64)) with a sigmoid output, Adam, binary cross-entropy, 10 epochs of
batches of 32, the last 20% held out (Keras's `validation_split=0.2`, done here in `data`). The document says
the val accuracy is low and that padding with `pad_sequences` instead of `np.pad(..., 'constant')` fixes it:
`padding_impl` is that fix. Both build the same array (`pad_sequences` in float32, which Keras casts to
anyway), and the labels are random, so nothing can fix it: the expected verdict is no effect.

Measured on calibration seeds 1000-1009 (plain Keras, ~2.3 s a trial on one core, epochs as written):
val_accuracy 0.60 median [0.35..0.75] against chance (the training majority class) 0.60 [0.45..0.75]; 8/10
seeds at or below chance, 2 above it by the noise of 20 validation labels (0.75 vs 0.65, 0.50 vs 0.45).
With `padding_impl: pad_sequences` every seed's val accuracy is identical to np.pad's.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

METRIC, MODE = "val_accuracy", "max"
COMPILE = {"optimizer": "adam", "learning_rate": 0.001, "loss": "binary_crossentropy", "metrics": ["accuracy"]}
FIT = {"epochs": 10, "batch_size": 32}
SMOKE = {"epochs": 2}
FEATURES = 10


@dataclass(frozen=True)
class Config:
    padding_impl: Literal["np_pad", "pad_sequences"] = "np_pad"
    """How the sequences are zero-padded at the end: the question's `np.pad(..., 'constant')` per sequence, or the
    document's fix, `pad_sequences(..., padding='post', dtype='float32')`."""
    seed: int = 0
    """Seeds the data (the document's unseeded `np.random`) and the weights."""


def _sequences(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    sequences = [rng.random((rng.integers(5, 20), FEATURES)) for _ in range(100)]
    return sequences, rng.integers(0, 2, size=100)


def data(config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sequences, labels = _sequences(config.seed)
    max_len = max(len(seq) for seq in sequences)
    if config.padding_impl == "np_pad":
        padded = np.array([np.pad(seq, ((0, max_len - len(seq)), (0, 0)), "constant") for seq in sequences])
    else:
        from tensorflow.keras.preprocessing.sequence import pad_sequences

        padded = pad_sequences(sequences, maxlen=max_len, padding="post", dtype="float32")
    split = int(len(padded) * 0.8)  # validation_split=0.2: the last 20%, unshuffled
    return padded[:split], labels[:split], padded[split:], labels[split:]


def model(config: Config):
    from tensorflow.keras.layers import LSTM, Bidirectional, Dense
    from tensorflow.keras.models import Sequential

    max_len = max(len(seq) for seq in _sequences(config.seed)[0])
    return Sequential(
        [
            Bidirectional(LSTM(64, return_sequences=False), input_shape=(max_len, FEATURES)),
            Dense(1, activation="sigmoid"),
        ]
    )
