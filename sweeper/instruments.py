"""Training instruments: readings of a Keras model's gradients, activations and updates on a fixed probe batch.

`Instruments(model, probe_inputs, loss_of_outputs).measure()` returns, at any moment of training, a dict of plain
floats that a workload merges into its report:

- `grad_norm`: the global L2 norm of d loss / d trainable weights on the probe batch;
- `grad_norm/<layer name>`: the same per layer that has trainable weights, in model order;
- `grad_norm_ratio`: the first such layer's norm over the last one's (vanishing gradients make it tiny; the
  ratio of AUTOTRAINER's vanishing-gradient check, there over kernels only); absent with fewer than two such
  layers or where the last one's norm is 0;
- `dead_share`: the share of hidden ReLU-family units (activation relu or relu6, as a layer's `activation`,
  an `Activation` layer or a `ReLU` layer without a negative slope) whose output is <= 0 on every probe
  example (and, for sequence or image outputs, at every position); absent without such a layer;
- `saturated_share`: the share of hidden sigmoid, hard_sigmoid or tanh units saturated on every probe
  example (see SIGMOID_LOW, SIGMOID_HIGH, TANH_BOUND); absent without such a layer;
- `update_ratio`: ||w_now - w_then|| / ||w_then|| over all trainable weights, `then` being the previous call
  of `measure`; absent at the first call.

A unit is one output channel (the last axis). Hidden means not producing a model output, directly or through
layers that only reshape or drop out (OUTPUT_PASS_THROUGH): a sigmoid output squashed by `Reshape` is an
output, not a hidden unit. Layers inside a wrapper (`Bidirectional`, `TimeDistributed`) count as the wrapper,
which takes the inner layer's kind. The gates of LSTM and GRU layers are inside them and cannot be read from
their outputs, so those layers are never watched (a SimpleRNN's output is its activation's, so it is). A model
nested inside the model counts as one layer: its gradient norm is reported under its name, its own
activations are not watched. A subclassed model gets its gradient readings only: its layers are called
inside its own `call`, where no activation can be read.

`measure` reads the model in inference mode (`training=False`) inside one `tf.function`, traced at the first
call; it changes no weight and draws from no random stream of its own, so a training run gives the same
numbers with or without it (unless `loss_of_outputs` draws random numbers itself). TensorFlow is imported
inside the functions only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

# Saturation bounds on a unit's OUTPUT. These constants are ours: Amazon SageMaker Debugger's
# SaturatedActivation rule reads the activation's INPUT instead, with bounds where the derivative falls below
# 1e-7 (tanh |x| > 9.4999, sigmoid x < -23 or x > 16.99999), which only flags float32 saturation. At an output
# of 0.03 or 0.97 the sigmoid's derivative is 0.029, 12% of its peak of 0.25; at |tanh| = 0.97 the tanh's is
# 0.059, 6% of its peak of 1: a unit held there on every example passes back little gradient.
SIGMOID_LOW = 0.03
SIGMOID_HIGH = 0.97
TANH_BOUND = 0.97

_RELU_FAMILY = {"relu": "relu", "relu6": "relu", "sigmoid": "sigmoid", "hard_sigmoid": "sigmoid", "tanh": "tanh"}
# Layers whose output carries their input's values unchanged in inference, so a layer feeding a model output
# through them still produces that output.
OUTPUT_PASS_THROUGH = ("Reshape", "Flatten", "Permute", "Dropout")


def _activation_kind(layer) -> str | None:
    """ "relu", "sigmoid" or "tanh" for a layer whose output is that activation's output, else None."""
    import tensorflow as tf

    while isinstance(layer, tf.keras.layers.Wrapper):
        layer = layer.layer
    if isinstance(layer, tf.keras.layers.RNN) and not isinstance(layer, tf.keras.layers.SimpleRNN):
        return None
    if isinstance(layer, tf.keras.layers.ReLU):
        # A negative slope leaks gradient below 0 (leaky ReLU) and a negative threshold lets negative outputs
        # through, so "<= 0 everywhere" would not mean dead.
        return "relu" if float(layer.negative_slope) == 0.0 and float(layer.threshold) >= 0.0 else None
    return _RELU_FAMILY.get(getattr(getattr(layer, "activation", None), "__name__", ""))


def _passes_through(layer) -> bool:
    import tensorflow as tf

    return isinstance(layer, tuple(getattr(tf.keras.layers, name) for name in OUTPUT_PASS_THROUGH))


def _output_layers(model) -> set[int]:
    """ids of the layers that produce a model output, directly or through OUTPUT_PASS_THROUGH layers."""
    import tensorflow as tf

    found: set[int] = set()
    if isinstance(model, tf.keras.Sequential):
        for layer in reversed(model.layers):
            found.add(id(layer))
            if not _passes_through(layer):
                break
        return found
    pending = list(model.outputs)
    while pending:
        history = pending.pop()._keras_history
        found.add(id(history.layer))
        if _passes_through(history.layer):
            pending.extend(tf.nest.flatten(history.layer.get_input_at(history.node_index)))
    return found


class Instruments:
    """Readings of one model on one fixed probe batch; see the module's docstring for the keys."""

    def __init__(self, model, probe_inputs, loss_of_outputs: Callable[[Any], Any]):
        """model: a built tf.keras.Model (Sequential or Functional); probe_inputs: a fixed batch of inputs
        (numpy or tensor, or a tuple/list/dict as the model takes them; keep it small, <= 256 examples);
        loss_of_outputs: callable(model outputs on probe_inputs) -> scalar loss tensor."""
        import tensorflow as tf

        # A subclassed model's layers are called inside its own `call`, out of reach: its gradients are read
        # (per layer that owns weights), its activations are not.
        self._subclassed = not isinstance(model, tf.keras.Sequential) and not getattr(model, "_is_graph_network", False)
        self._model = model
        self._loss_of_outputs = loss_of_outputs
        self._probe = tf.nest.map_structure(tf.convert_to_tensor, probe_inputs)
        outputs = set() if self._subclassed else _output_layers(model)
        self._watched = [
            (layer, kind)
            for layer in ([] if self._subclassed else model.layers)
            if id(layer) not in outputs and (kind := _activation_kind(layer)) is not None
        ]
        self._variables = list(model.trainable_variables)
        position = {variable.ref(): index for index, variable in enumerate(self._variables)}
        # Each layer with trainable weights and the positions of its variables in self._variables; a variable
        # shared by two layers counts for the first.
        claimed: set[int] = set()
        self._layers: list[tuple[str, list[int]]] = []
        for layer in model.layers:
            indices = []
            for variable in layer.trainable_weights:
                index = position.get(variable.ref())
                if index is not None and index not in claimed:
                    claimed.add(index)
                    indices.append(index)
            if indices:
                self._layers.append((layer.name, indices))
        self._forward = self._make_forward()
        self._readings = tf.function(self._compute)
        self._previous: list[np.ndarray] | None = None

    def _make_forward(self) -> Callable[[Any], tuple[list, Any]]:
        """inputs -> (outputs of the watched layers, the model's outputs), in inference mode."""
        import tensorflow as tf

        watched_ids = {id(layer) for layer, _ in self._watched}
        if self._subclassed:
            model = self._model
            return lambda inputs: ([], model(inputs, training=False))
        if isinstance(self._model, tf.keras.Sequential):
            # Layer by layer, so a Sequential built without an Input (no symbolic `inputs`) works too; masks
            # travel on the tensors as they do inside Sequential.call.
            layers = list(self._model.layers)

            def sequential_forward(inputs):
                activations, hidden = [], inputs
                for layer in layers:
                    hidden = layer(hidden, training=False)
                    if id(layer) in watched_ids:
                        activations.append(hidden)
                return activations, hidden

            return sequential_forward
        # One model over the same layers whose outputs are the watched layers' and then the model's, flat (Keras
        # drops an empty nested list); the model's own are packed back into their structure (a tensor, a list
        # or a dict).
        structure = self._model.output
        watched = len(self._watched)
        taps = tf.keras.Model(
            self._model.input, [layer.output for layer, _ in self._watched] + tf.nest.flatten(structure)
        )

        def functional_forward(inputs):
            flat = tf.nest.flatten(taps(inputs, training=False))
            return flat[:watched], tf.nest.pack_sequence_as(structure, flat[watched:])

        return functional_forward

    def _compute(self):
        """Squared gradient norm per variable (float64) and per watched layer how many of its units
        are dead (relu) or saturated (sigmoid, tanh) on every probe example, beside its number of units."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            activations, outputs = self._forward(self._probe)
            loss = self._loss_of_outputs(outputs)
        gradients = tape.gradient(loss, self._variables)
        squares = [
            tf.zeros((), tf.float64)
            if gradient is None
            else tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(gradient), tf.float64)))
            for gradient in gradients
        ]
        stuck = []
        for (_, kind), output in zip(self._watched, activations, strict=True):
            if kind == "relu":
                stuck_here = output <= 0.0
            elif kind == "sigmoid":
                stuck_here = tf.logical_or(output < SIGMOID_LOW, output > SIGMOID_HIGH)
            else:
                stuck_here = tf.abs(output) > TANH_BOUND
            units = tf.shape(stuck_here, out_type=tf.int64)[-1]
            every_example = tf.reduce_all(tf.reshape(stuck_here, (-1, units)), axis=0)
            stuck.append(tf.stack([tf.reduce_sum(tf.cast(every_example, tf.int64)), units]))
        return squares, stuck

    def measure(self) -> dict[str, float]:
        """Readings at this moment, plain Python floats; never changes weights or random state."""
        squares, stuck = self._readings()
        squared = [float(square) for square in squares]
        readings: dict[str, float] = {"grad_norm": math.sqrt(sum(squared))}
        layer_norms = [math.sqrt(sum(squared[i] for i in indices)) for _, indices in self._layers]
        for (name, _), norm in zip(self._layers, layer_norms, strict=True):
            readings[f"grad_norm/{name}"] = norm
        if len(layer_norms) >= 2 and layer_norms[-1] != 0.0:
            readings["grad_norm_ratio"] = layer_norms[0] / layer_norms[-1]
        for key, kinds in (("dead_share", ("relu",)), ("saturated_share", ("sigmoid", "tanh"))):
            counted = [pair.numpy() for (_, kind), pair in zip(self._watched, stuck, strict=True) if kind in kinds]
            if counted:
                readings[key] = float(sum(c for c, _ in counted) / sum(u for _, u in counted))
        readings.update(self._update_ratio())
        return readings

    def _update_ratio(self) -> dict[str, float]:
        now = [variable.numpy() for variable in self._variables]
        previous, self._previous = self._previous, now
        if previous is None:
            return {}
        change = sum(np.sum(np.square(a - b, dtype=np.float64)) for a, b in zip(now, previous, strict=True))
        size = sum(np.sum(np.square(b, dtype=np.float64)) for b in previous)
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"update_ratio": float(np.sqrt(change) / np.sqrt(size))}
