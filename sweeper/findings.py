"""What a program's data and structure show before it trains: pure functions over arrays and a plain
description of the model's layers, so each rule is tested on inputs one can check by hand.

The checks follow the data and structure checks of the research tools: UMLAUT's input checks (Schoop et al.,
CHI 2021), DeepDiagnosis's output-range check (ICSE 2022) and SageMaker Debugger's `class_imbalance` and
`nlp_sequence_ratio` rules. Each finding names what it saw and the remedy family it points to: a knob of the
generic Keras remedies (`sweeper.keras_model.Remedies`), or none where no knob reaches it. The doctor prints
them before the symptoms and proposes their knobs first. NaN or infinity in the data is not a finding: no
trial can train on it, so the contract check refuses the file (`keras_model._Program.check_program`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SCALE_RATIO = 100.0
"""Features whose spreads differ by more than this factor."""
IMBALANCE = 0.9
"""A majority class above this share of the training labels."""
PADDING_SHARE = 0.5
"""Sequences whose all-zero steps are above this share of all steps."""
INIT_VARIANCE_FAN_IN = 10.0
"""A kernel whose variance times its fan-in is above this: Glorot's and He's initializers give 2 at most."""
OUTPUT_RANGES = {
    "sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, np.inf),
    "softplus": (0.0, np.inf),
    "exponential": (0.0, np.inf),
}
"""What an output activation can reach; a linear output reaches everything."""


@dataclass(frozen=True)
class Finding:
    what: str
    """What was seen, in numbers ("targets span 3-103; a sigmoid output reaches 0-1")."""
    knob: str | None
    """The knob whose family addresses it; None where no knob reaches it."""
    why: str
    """What the family changes, or what the user can do where no knob reaches it."""
    value: str | None = None
    """The knob's value it points to, where one does (a softmax for logits read as probabilities); None: the
    family's usual values."""


@dataclass(frozen=True)
class Reading:
    """A program read before it trains: its findings, and its own values of the generic knobs that the
    structure shows (so the doctor never proposes the program as written)."""

    findings: tuple[Finding, ...]
    as_written: dict[str, str]
    """knob -> the program's own value: `output_activation` and, where every hidden layer shares one,
    `hidden_activation`."""


def as_written(layers: Sequence[Layer]) -> dict[str, str]:
    """The activations the layers show, as values of the generic knobs."""
    written = {"output_activation": layers[-1].activation} if layers else {}
    hidden = {layer.activation for layer in layers if not layer.is_output}
    if len(hidden) == 1:
        written["hidden_activation"] = hidden.pop()
    return written


@dataclass(frozen=True)
class Layer:
    """A trainable layer as the structure checks read it."""

    name: str
    activation: str
    """Its activation's name ("linear" for none)."""
    fan_in: int
    kernel_variance: float
    is_output: bool


def data_findings(
    x_train: npt.NDArray[np.generic],
    y_train: npt.NDArray[np.generic],
    output_activation: str,
    output_units: int,
    loss: str,
    from_logits: bool = False,
) -> list[Finding]:
    """The data checks, on the training split (finite numbers: the contract check has seen to that).
    `from_logits`: the loss object reads the outputs as logits (`BinaryCrossentropy(from_logits=True)`)."""
    found = []
    x, y = np.asarray(x_train, dtype=float), np.asarray(y_train, dtype=float)
    features = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(-1, 1)
    if x.ndim == 3:  # sequences: (samples, steps, features)
        padded = float(np.mean(np.all(x == 0, axis=-1)))
        if padded > PADDING_SHARE:
            found.append(
                Finding(
                    f"{padded:.0%} of the sequences' steps are all zeros (padding)",
                    None,
                    "mask the padded steps (a Masking layer, or mask_zero on the Embedding) in model()",
                )
            )
        features = features[np.any(x.reshape(-1, x.shape[-1]) != 0, axis=-1)]  # the padding's zeros say nothing
    spreads = features.std(axis=0) if len(features) else np.zeros(0)
    spreads = spreads[spreads > 0]
    if spreads.size >= 2 and spreads.max() / spreads.min() > SCALE_RATIO:
        found.append(
            Finding(
                f"the features' spreads differ {spreads.max() / spreads.min():.0f}x (std {spreads.min():.3g} to "
                f"{spreads.max():.3g})",
                "input_scaling",
                "inputs on one scale",
            )
        )
    reach = OUTPUT_RANGES.get(output_activation)
    low, high = float(y.min()), float(y.max())
    if reach is not None and (low < reach[0] or high > reach[1]) and "categorical" not in loss:
        found.append(
            Finding(
                f"targets span {low:.3g} to {high:.3g}; a {output_activation} output reaches {reach[0]:g} to "
                f"{reach[1]:g}",
                "output_activation",
                "an output that can reach the target",
            )
        )
    classes = y.ndim == 1 or y.shape[-1] == 1
    if "crossentropy" in loss and output_units == 1 and output_activation == "softmax":
        found.append(
            Finding(
                "a softmax over one output unit: it outputs 1 whatever its input",
                "output_activation",
                "a sigmoid for one unit",
            )
        )
    if loss == "sparse_categorical_crossentropy" and not classes:
        found.append(
            Finding(
                f"one-hot targets ({y.shape[-1]} columns) under a sparse loss", "loss", "a loss that fits the targets"
            )
        )
    if loss == "categorical_crossentropy" and classes and output_units > 1:
        found.append(
            Finding(
                "integer labels under a one-hot loss (categorical_crossentropy)", "loss", "a loss that fits the targets"
            )
        )
    if loss == "binary_crossentropy" and (low < 0 or high > 1):
        found.append(
            Finding(f"binary cross-entropy on targets {low:.3g} to {high:.3g}", "loss", "a loss that fits the targets")
        )
    if "crossentropy" in loss and not from_logits and output_activation not in ("sigmoid", "softmax"):
        squash = "softmax" if output_units > 1 else "sigmoid"
        found.append(
            Finding(
                f"{loss} reads the outputs as probabilities, and a {output_activation} output gives none",
                "output_activation",
                f"a {squash} output makes them probabilities",
                squash,
            )
        )
    if "crossentropy" in loss:
        labels = y.argmax(axis=-1) if not classes else y.reshape(-1)
        _, counts = np.unique(labels, return_counts=True)
        share = counts.max() / counts.sum()
        if share > IMBALANCE:
            found.append(
                Finding(
                    f"one class holds {share:.0%} of the training labels",
                    None,
                    "weigh or resample the classes (FIT's class_weight); no knob here does",
                )
            )
    return found


def structure_findings(layers: Sequence[Layer]) -> list[Finding]:
    """The structure checks: hidden layers with no activation (the network is one linear map) and kernels
    whose scale is far above their fan-in's."""
    found = []
    hidden = [layer for layer in layers if not layer.is_output]
    if hidden and all(layer.activation == "linear" for layer in hidden):
        found.append(
            Finding(
                f"no hidden layer has an activation ({', '.join(layer.name for layer in hidden)}): the network is "
                "one linear map",
                "hidden_activation",
                "a nonlinearity between the layers",
            )
        )
    for layer in layers:
        scale = layer.kernel_variance * layer.fan_in
        if scale > INIT_VARIANCE_FAN_IN:
            found.append(
                Finding(
                    f"{layer.name}'s weights have variance {layer.kernel_variance:.3g} on {layer.fan_in} inputs: "
                    f"{scale:.0f}x what keeps activations' scale (Glorot and He give 1-2)",
                    "kernel_initializer",
                    "a start scaled to the fan-in",
                )
            )
    return found
