"""A plain Keras program as a workload: the generic remedies, applied by rebuilding the model.

A workload file may, instead of `Config` and `train`, define plain Keras parts (no `sweeper` import):

    METRIC, MODE = "val_loss", "min"     # a key of the Keras History (val_*) and its direction
    COMPILE = {"optimizer": "sgd", "learning_rate": 0.01, "loss": "mean_squared_error", "metrics": ["mae"]}
    FIT = {"epochs": 1000, "batch_size": 150}   # and other `Model.fit` arguments: FIT_EXTRAS
    SMOKE = {"epochs": 100}              # optional: overrides of the knobs below for a seconds-long trial
    def data(seed): return x_train, y_train, x_val, y_val      # numpy arrays, generated, nothing downloaded
    def model(seed): return keras.Model(...)                   # as the user wrote it (failing)

`model()` may compile the model instead of COMPILE (as KerasTuner's builders do): where COMPILE is left out or
lacks the optimizer or the loss, `model()` is called once when the file is loaded and its compile is read
(`compiled_settings`: optimizer, learning rate, loss, metrics), each setting where COMPILE does not give it.
The remedies recompile the model either way. `data()` returns numpy arrays, not `tf.data` datasets.

A file that needs knobs of its own also declares a frozen `Config` dataclass (with `seed: int`) as any
workload does; `data(config)` and `model(config)` then receive it, and the generic knobs (`Remedies`) are
added beside its own. `adapt` turns such a module into one that keeps the workload contract of
`sweeper.workload` (`Config`, `train`, `CHANCE = "reported"`, ...); the defaults are the file as written.

Each report (at most about `REPORTS_PER_TRIAL` per trial: every k epochs, and always the last) carries the
training `loss`, every number of the epoch's Keras logs (the validation metrics among them), the
instruments' readings on a fixed probe batch of training inputs (`sweeper.instruments`: `grad_norm`, the
first-to-last layer gradient ratio, dead and saturated unit shares, the update-to-weight ratio), and
`chance` and `oracle`: the compiled metrics of the best constant prediction (the targets' mean, which is
the class priors for labels, of either split: see `sweeper.keras_levels`) and of the validation targets
themselves, so `collapsed` works; the last report also carries `no_skill`, what the model's own final
validation predictions reach shuffled against the targets, which a trial must pass to be healthy.
When the `loss` knob replaces the loss and METRIC is `val_loss`, METRIC is still the loss as written
(compiled as an extra metric), so trials with different training losses stay comparable.

TensorFlow is imported inside the functions: loading a spec stays light, except `check_remedies`, which
calls `data` and `model` once as written (`check_program`: four finite numpy arrays, a Keras Model, a METRIC
that COMPILE produces) and builds the model once per distinct set of model knobs, to refuse, before Ray
starts, a program that cannot train or a remedy the model cannot take.

Why this module is long: the Keras contract is one piece: reading the file, checking its data and model up
front, reading its structure before training (for the doctor), rebuilding the model with each remedy and
training it; every part reads the same program, and a second copy of how would drift from the first.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Annotated, Any, Literal

from sweeper.errors import SweeperError
from sweeper.findings import Layer, Reading, as_written, data_findings, structure_findings
from sweeper.keras_levels import metric_on, reference_levels
from sweeper.knobs import Range, attribute_docstrings
from sweeper.no_skill import no_skill_level, shuffle_draws

REPORTS_PER_TRIAL = 100
PROBE_SIZE = 256
"""Training inputs the instruments read at every report (the first ones, fixed for the whole trial)."""
COMPILE_KEYS = ("optimizer", "learning_rate", "loss", "metrics")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl")
"""What COMPILE's `optimizer` may name (Keras's own names); the `optimizer` knob swaps it."""
FIT_EXTRAS = ("shuffle", "class_weight", "steps_per_epoch")
"""The other `Model.fit` arguments FIT may hold; validation always comes from `data()`."""
MODEL_KNOBS = ("output_activation", "hidden_activation", "kernel_initializer", "normalization")
"""The knobs applied by rebuilding the model (and checked on it before a sweep starts)."""
_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
_WRAPPERS = ("Bidirectional", "TimeDistributed")
_ACTIVATION_LAYERS = ("Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "PReLU", "Softmax")
_NORMALIZED = ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D",
               "DepthwiseConv2D", *_RECURRENT)  # fmt: skip


@dataclass(frozen=True)
class Remedies:
    """The generic remedies every Keras workload gets, each `as_written` (or off) by default."""

    output_activation: Literal["as_written", "linear", "sigmoid", "softmax"] = "as_written"
    """The output layer's activation (the last layer's, or a trailing `Activation` layer's): a sigmoid on an
    unbounded regression target or a softmax over one unit are the classic mistakes."""
    hidden_activation: Literal[
        "as_written", "relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "swish", "gelu", "relu6"
    ] = "as_written"
    """Every non-linear activation before the output (Dense/Conv `activation`, `Activation`/`ReLU`-style
    layers); in a network with none (one linear map), every hidden Dense/Conv layer gets it. Recurrent cells
    keep theirs, whose tanh and sigmoid gates are part of the cell."""
    kernel_initializer: Literal[
        "as_written", "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "orthogonal"
    ] = "as_written"
    """Every layer's `kernel_initializer` (He for ReLU nets, LeCun for SELU)."""
    normalization: Literal["none", "batch", "layer"] = "none"
    """`BatchNormalization` or `LayerNormalization` inserted after each hidden Dense/Conv/recurrent layer."""
    optimizer: Literal["as_written", "sgd", "momentum", "adam", "rmsprop", "adagrad"] = "as_written"
    """The optimizer (`momentum`: SGD with momentum 0.9), at `learning_rate`."""
    learning_rate: Annotated[float, Range(0.0, 10.0, low_open=True)] = 0.01
    """Learning rate of whichever optimizer runs; the default is COMPILE's, else the optimizer's Keras default."""
    clipnorm: Annotated[float, Range(0.0, None)] = 0.0
    """Clip each weight's gradient to this L2 norm (0 = off)."""
    global_clipnorm: Annotated[float, Range(0.0, None)] = 0.0
    """Clip all gradients together to this global L2 norm (0 = off)."""
    clipvalue: Annotated[float, Range(0.0, None)] = 0.0
    """Clip every gradient element to [-clipvalue, clipvalue] (0 = off)."""
    loss: Literal[
        "as_written",
        "mean_squared_error",
        "mean_absolute_error",
        "huber",
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
    ] = "as_written"
    """The training loss; a METRIC of `val_loss` stays the loss as written, so trials compare."""
    input_scaling: Literal["none", "standardize", "minmax"] = "none"
    """Scale each input feature (the last axis) with statistics of the training split only."""
    epochs: Annotated[int, Range(1, 1_000_000)] = 1
    """Passes over the training data; the default is FIT's."""
    batch_size: Annotated[int, Range(1, 10_000_000)] = 32
    """Examples per step; the default is FIT's."""
    seed: int = 0
    """Seeds Python, NumPy and TensorFlow (`tf.keras.utils.set_random_seed`) before data and model are made."""


# --- adapting a module ---
KERAS_PARTS = ("METRIC", "MODE", "FIT", "data", "model")
"""What a Keras program defines (see the module's docstring); COMPILE too, unless `model()` compiles."""


def is_keras_file(module: ModuleType) -> bool:
    """Whether a workload module is meant as a Keras program: no `train` of its own, and `model`, `data`,
    COMPILE or FIT (so one that misnames a part is told the Keras contract, not the built-in one)."""
    return not hasattr(module, "train") and any(hasattr(module, part) for part in ("model", "data", "COMPILE", "FIT"))


def adapt(module: ModuleType) -> ModuleType:
    """The Keras-contract module as a module that keeps the workload contract: `Config` (its own knobs and the
    generic ones, defaults as written), `train`, `CHANCE = "reported"`, `SMOKE`, `KNOB_DOCS` and
    `check_remedies`. Bad COMPILE, FIT or Config gets one line naming the file and the key."""
    where = str(getattr(module, "__file__", None) or module.__name__)

    def broken(what: str) -> SweeperError:
        return SweeperError(f"Keras workload {where}: {what}")

    for attribute in KERAS_PARTS:
        if not hasattr(module, attribute):
            raise broken(
                f"it does not define {attribute}; a Keras program defines {', '.join(KERAS_PARTS)} "
                "(`data(seed)` and `model(seed)` as functions; see `sweeper.keras_model`)"
            )
    for function in ("data", "model"):
        if not callable(getattr(module, function)):
            raise broken(f"{function} is not a function; define `def {function}(seed):`")
        parameters = inspect.signature(getattr(module, function)).parameters
        if len(parameters) != 1:
            raise broken(
                f"{function}() takes {len(parameters)} arguments; it takes one: `def {function}(seed):` "
                "(or `def {function}(config):` with a Config)"
            )
    if not (isinstance(module.METRIC, str) and module.METRIC.startswith("val_")):
        raise broken(f"METRIC is {module.METRIC!r}; it is a validation key of the Keras History, such as 'val_loss'")
    own = getattr(module, "Config", None)
    if own is not None and not (isinstance(own, type) and dataclasses.is_dataclass(own)):
        raise broken("Config is not a dataclass")
    compile_, fit = dict(getattr(module, "COMPILE", {})), dict(module.FIT)
    for key in compile_:
        if key not in COMPILE_KEYS:
            raise broken(f"COMPILE[{key!r}] is not a key it takes; valid: {', '.join(COMPILE_KEYS)}")
    written_objects: dict[str, Any] = {}
    if "optimizer" not in compile_ or "loss" not in compile_:
        # The model's own compile, where COMPILE leaves a setting out (as KerasTuner's builders compile).
        settings, objects = compiled_settings(module, own, broken)
        written_objects = {key: config for key, config in objects.items() if key not in compile_}
        compile_ = {**settings, **compile_}
    if compile_.get("optimizer") not in OPTIMIZERS:
        raise broken(f"COMPILE['optimizer'] is {compile_.get('optimizer')!r}; valid: {', '.join(OPTIMIZERS)}")
    if not isinstance(compile_.get("loss"), str):
        raise broken(f"COMPILE['loss'] is {compile_.get('loss')!r}; give a Keras loss name, e.g. 'mean_squared_error'")
    for key in fit:
        if key not in ("epochs", "batch_size", *FIT_EXTRAS):
            valid = ", ".join(("epochs", "batch_size", *FIT_EXTRAS))
            raise broken(f"FIT[{key!r}] is not a key it takes (validation comes from data()); valid: {valid}")

    own_fields = {f.name: f for f in dataclasses.fields(own)} if own is not None else {}
    generic = {f.name: f for f in dataclasses.fields(Remedies)}
    for name in own_fields.keys() & generic.keys() - {"seed"}:
        raise broken(f"Config.{name} has the name of a generic knob; rename it (generic: {', '.join(generic)})")
    as_written = {
        "learning_rate": float(compile_.get("learning_rate", _KERAS_DEFAULT_RATE.get(compile_["optimizer"], 0.001))),
        "epochs": int(fit.get("epochs", 1)),
        "batch_size": int(fit.get("batch_size", 32)),
    }
    hints = {**typing.get_type_hints(Remedies, include_extras=True)}
    fields: list[tuple[str, Any, Any]] = []
    if own is not None:
        own_hints = typing.get_type_hints(own, include_extras=True)
        fields += [(f.name, own_hints[f.name], dataclasses.field(default=f.default)) for f in own_fields.values()]
    fields += [
        (name, hints[name], dataclasses.field(default=as_written.get(name, field.default)))
        for name, field in generic.items()
        if name not in own_fields
    ]
    config_cls = dataclasses.make_dataclass("Config", fields, frozen=True)
    config_cls.__module__ = module.__name__

    adapted = ModuleType(module.__name__, module.__doc__)
    adapted.__file__ = where
    adapted.Config = config_cls  # type: ignore[attr-defined]
    adapted.KNOB_DOCS = {**attribute_docstrings(Remedies), **(attribute_docstrings(own) if own else {})}  # type: ignore[attr-defined]
    adapted.METRIC, adapted.MODE = module.METRIC, module.MODE  # type: ignore[attr-defined]
    adapted.CHANCE = "reported"  # type: ignore[attr-defined]
    adapted.COMPILE = compile_  # type: ignore[attr-defined]
    adapted.SMOKE = dict(getattr(module, "SMOKE", {}))  # type: ignore[attr-defined]
    for optional in ("THRESHOLDS", "FIXED_OUTCOMES"):
        if hasattr(module, optional):
            setattr(adapted, optional, getattr(module, optional))
    program = _Program(module, where, compile_, fit, takes_config=own is not None, written_objects=written_objects)
    adapted.train = program.train  # type: ignore[attr-defined]
    adapted.check_remedies = program.check_remedies  # type: ignore[attr-defined]
    adapted.read_program = program.read  # type: ignore[attr-defined]
    return adapted


def compiled_settings(
    module: ModuleType, own: Any, broken: Callable[[str], SweeperError]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The optimizer (its name among OPTIMIZERS and its learning rate), loss and metrics that `model()` compiles
    with, as COMPILE spells them; and the Keras configs of its optimizer and loss objects
    (`_Program.written_objects`: their other arguments, such as `from_logits=True` or SGD's momentum, which a
    name would drop). `model()` is called once, with the Config's defaults (or seed 0), so a file that leaves
    COMPILE out costs a TensorFlow import when it is loaded."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        net = module.model(own() if own is not None else 0)
    except Exception as exc:  # noqa: BLE001 - whatever the user's code raises, one line names it
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise broken(f"model() raised {type(exc).__name__}: {first}") from None
    if not isinstance(net, tf.keras.Model) or not getattr(net, "_is_compiled", False):
        raise broken("it does not define COMPILE, and model() does not compile; define COMPILE or compile the model")
    written = net.get_compile_config()
    tf.keras.backend.clear_session()
    optimizer = written["optimizer"]
    settings: dict[str, Any] = {}
    objects = {key: written[key] for key in ("optimizer", "loss") if isinstance(written[key], dict)}
    if isinstance(optimizer, dict):
        settings["optimizer"] = str(optimizer["class_name"]).lower()
        rate = optimizer["config"].get("learning_rate")
        if isinstance(rate, int | float):
            settings["learning_rate"] = float(rate)
    else:
        settings["optimizer"] = str(optimizer).lower()
    loss = written["loss"]
    settings["loss"] = loss["config"].get("name", loss["class_name"]) if isinstance(loss, dict) else loss
    # A metric object keeps state, so its Keras config is kept (its name is the key it logs under), and each
    # compile builds a fresh one from it (`fresh_metric`).
    settings["metrics"] = list(written["metrics"] or [])
    return settings, objects


_KERAS_DEFAULT_RATE = {"sgd": 0.01, "adagrad": 0.001, "adam": 0.001, "rmsprop": 0.001}


@dataclass(frozen=True)
class _Program:
    """The user's file and what `adapt` read from it."""

    module: ModuleType
    where: str
    """The file, for errors."""
    compile: dict[str, Any]
    fit: dict[str, Any]
    takes_config: bool
    written_objects: dict[str, Any] = dataclasses.field(default_factory=dict)
    """`optimizer` / `loss` -> the Keras config of the object `model()` compiles with, where COMPILE does not
    name one: the program as written is trained with it (a fresh object a trial), not with its name alone."""

    def _argument(self, config: Any) -> Any:
        return config if self.takes_config else config.seed

    def built_model(self, config: Any) -> Any:
        """The file's model with the config's model knobs applied, seeded."""
        import tensorflow as tf

        tf.keras.utils.set_random_seed(config.seed)
        return rebuild(self.module.model(self._argument(config)), config, self.where)

    def check_remedies(self, knob_sets: Iterable[dict[str, Any]], config_of: Callable[[dict], Any]) -> None:
        """The program checked once as written (`check_program`), then the model built once per distinct
        setting of MODEL_KNOBS among the given knob sets; a remedy the model cannot take raises SweeperError
        naming the layer and the knob."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # in the driver: TensorFlow's start-up chatter is noise
        import tensorflow as tf

        self.check_program(config_of({}))
        seen = set()
        for knobs in knob_sets:
            config = config_of(knobs)
            key = tuple(getattr(config, name) for name in MODEL_KNOBS)
            if key in seen:
                continue
            seen.add(key)
            self.built_model(config)
            tf.keras.backend.clear_session()
        try:
            tf.keras.losses.get(self.compile["loss"])
        except ValueError:
            raise SweeperError(
                f"Keras workload {self.where}: COMPILE['loss'] is {self.compile['loss']!r}, not a Keras loss"
            ) from None

    def check_program(self, config: Any) -> None:
        """Call `data` and `model` once, as written, on this machine's CPU, and refuse what no trial could
        use, on one line naming the function and the fix: data that are not four numpy arrays of numbers
        (no `tf.data` datasets, no lists), of matching lengths and feature shapes, all finite (NaN in the data
        is a data bug, never a training verdict); a model that raises or is not a Keras Model; a METRIC that
        COMPILE's metrics do not produce."""
        import numpy as np
        import tensorflow as tf

        def broken(what: str) -> SweeperError:
            return SweeperError(f"Keras workload {self.where}: {what}")

        def called(function: str) -> Any:
            try:
                return getattr(self.module, function)(self._argument(config))
            except Exception as exc:  # noqa: BLE001 - whatever the user's code raises, one line names it
                first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
                raise broken(f"{function}() raised {type(exc).__name__}: {first}") from None

        parts = called("data")
        names = ("x_train", "y_train", "x_val", "y_val")
        if not isinstance(parts, tuple | list) or len(parts) != 4:
            count = f" of {len(parts)} values" if isinstance(parts, tuple | list) else ""
            raise broken(f"data() returned a {type(parts).__name__}{count}; it returns {', '.join(names)}")
        for name, part in zip(names, parts, strict=True):
            if not isinstance(part, np.ndarray):
                raise broken(f"data()'s {name} is a {type(part).__name__}; return numpy arrays (np.asarray)")
            if not (np.issubdtype(part.dtype, np.number) or part.dtype == bool) or part.ndim == 0 or not len(part):
                raise broken(
                    f"data()'s {name} is a {part.dtype} array of shape {part.shape}; give numbers, one row a sample"
                )
            bad = int(part.size - np.count_nonzero(np.isfinite(part)))
            if bad:
                raise broken(
                    f"data()'s {name} holds {bad} NaN or infinite values: a data bug, which no remedy can train "
                    "through; clean or impute them in data()"
                )
        x_train, y_train, x_val, y_val = parts
        for (a, b), (name_a, name_b) in (((x_train, y_train), names[:2]), ((x_val, y_val), names[2:])):
            if len(a) != len(b):
                raise broken(f"data()'s {name_a} has {len(a)} rows and {name_b} {len(b)}; they pair row by row")
        for a, b, what in ((x_train, x_val, "inputs"), (y_train, y_val, "targets")):
            if a.shape[1:] != b.shape[1:]:
                raise broken(
                    f"data()'s training and validation {what} differ in shape: {a.shape[1:]} and {b.shape[1:]}"
                )
        net = called("model")
        if not isinstance(net, tf.keras.Model):
            raise broken(f"model() returned {type(net).__name__}; it returns a keras Model (as written)")
        tf.keras.backend.clear_session()
        produced = ["loss", *map(_metric_name, self.compile.get("metrics", []))]
        if self.module.METRIC[len("val_") :] not in produced:
            valid = ", ".join(f"val_{name}" for name in produced)
            raise broken(f"METRIC is {self.module.METRIC!r}, which COMPILE's metrics do not produce; valid: {valid}")

    def read(self, config: Any) -> Reading:
        """What the program's data and structure show before it trains (`sweeper.findings`), as written:
        the output activation's reach against the targets, the loss against the targets, the features'
        scales, class balance, padding; hidden layers with no activation, kernels scaled far above their
        fan-in. The program must have passed `check_program`."""
        import numpy as np
        import tensorflow as tf

        tf.keras.utils.set_random_seed(config.seed)
        x_train, y_train, _, _ = self.module.data(self._argument(config))
        net = self.module.model(self._argument(config))
        net(np.asarray(x_train[:1]))  # builds a Sequential given no input shape
        layers: list[Layer] = []
        activated = False
        for layer in reversed(net.layers):  # an activation layer after a linear one gives it its activation
            kernel = getattr(layer, "kernel", None)
            if kernel is None:
                activated = activated or type(layer).__name__ in _ACTIVATION_LAYERS
                continue
            name = getattr(getattr(layer, "activation", None), "__name__", "linear")
            weights = np.asarray(kernel.numpy(), dtype=float)
            layers.append(
                Layer(
                    name=layer.name,
                    activation="nonlinear" if name == "linear" and activated else name,
                    fan_in=int(np.prod(weights.shape[:-1])),
                    kernel_variance=float(weights.var()),
                    is_output=not layers,
                )
            )
            activated = False
        layers.reverse()
        output = net.layers[-1]
        output_activation = getattr(getattr(output, "activation", None), "__name__", "linear")
        if type(output).__name__ == "Softmax":
            output_activation = "softmax"
        tf.keras.backend.clear_session()
        logits = bool(self.written_objects.get("loss", {}).get("config", {}).get("from_logits"))
        x, y, units = np.asarray(x_train), np.asarray(y_train), int(net.output_shape[-1])
        found = data_findings(x, y, output_activation, units, self.compile["loss"], from_logits=logits)
        written = as_written(layers) | {"output_activation": output_activation}
        return Reading(tuple(found + structure_findings(layers)), written)

    def train(self, config: Any, report: Callable[[dict], None]) -> None:
        import numpy as np
        import tensorflow as tf

        from sweeper.instruments import Instruments

        tf.keras.utils.set_random_seed(config.seed)
        x_train, y_train, x_val, y_val = self.module.data(self._argument(config))
        x_train, x_val = scale_inputs(config.input_scaling, np.asarray(x_train), np.asarray(x_val))
        net = self.built_model(config)
        written_config = self.written_objects.get("loss")
        written_loss = tf.keras.losses.deserialize(written_config) if written_config else self.compile["loss"]
        swapped = config.loss not in ("as_written", self.compile["loss"])  # another loss trains
        judged_on_written_loss = self.module.METRIC == "val_loss" and swapped
        loss = config.loss if swapped else written_loss
        metric_key = "val_written_loss" if judged_on_written_loss else self.module.METRIC

        def metrics() -> list:
            """The file's metrics, and the loss as written where another loss trains (fresh objects per call:
            Keras metric objects keep state)."""
            written = tf.keras.metrics.MeanMetricWrapper(tf.keras.losses.get(written_loss), name="written_loss")
            return [*map(fresh_metric, self.compile.get("metrics", [])), *([written] if judged_on_written_loss else [])]

        optimizer = make_optimizer(config, self.compile["optimizer"], self.written_objects.get("optimizer"))
        net.compile(optimizer=optimizer, loss=loss, metrics=metrics())
        probe = x_train[:PROBE_SIZE]
        # Also builds a Sequential given no input shape (or a subclassed model), so the instruments can read it.
        sample_output = net(probe[:1])
        out_shape = tuple(sample_output.shape[1:]) if tf.is_tensor(sample_output) else None
        chance, oracle = reference_levels(out_shape, loss, metrics, y_train, y_val, metric_key, self.module.MODE)
        probe_targets = tf.constant(y_train[:PROBE_SIZE])
        instruments = Instruments(net, probe, lambda outputs: net.compute_loss(y=probe_targets, y_pred=outputs))
        every = max(1, math.ceil(config.epochs / REPORTS_PER_TRIAL))
        mode = self.module.MODE
        fit_extras = {key: value for key, value in self.fit.items() if key in FIT_EXTRAS}
        metric = self.module.METRIC

        level = (
            metric_on(out_shape, loss, metrics, y_val, metric_key, one_batch=True)
            if out_shape is not None and chance is not None
            else None
        )
        shuffles = np.random.default_rng(config.seed)
        # What the model reaches before its first step: a metric it has from its initial weights is no sign
        # that it learned (`health`'s `learned`).
        untrained = level(net.predict(x_val, batch_size=len(x_val), verbose=0)) if level is not None else None

        class Reporter(tf.keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                step = epoch + 1
                if step % every and step != config.epochs:
                    return
                numbers = {key: float(value) for key, value in (logs or {}).items() if np.ndim(value) == 0}
                levels = {"chance": chance, "oracle": oracle}
                if step == config.epochs and level is not None:  # the last report: the one a verdict reads
                    predictions = net.predict(x_val, batch_size=len(x_val), verbose=0)
                    levels["no_skill"] = no_skill_level(shuffle_draws(level, predictions, shuffles), mode)
                    levels["untrained"] = untrained
                report(
                    {
                        **numbers,
                        **instruments.measure(),
                        "step": step,
                        "loss": numbers.get("loss", math.nan),
                        metric: numbers.get(metric_key, math.nan),
                        **{key: level for key, level in levels.items() if level is not None},
                    }
                )

        net.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            epochs=config.epochs,
            batch_size=config.batch_size,
            verbose=0,
            callbacks=[Reporter()],
            **fit_extras,
        )


def _metric_name(metric: Any) -> str:
    """The key Keras logs a compiled metric under: its string, its Keras config's name (a compiled model's
    metric object, as `compiled_settings` keeps it), or its object's or function's name."""
    if isinstance(metric, str):
        return metric
    if isinstance(metric, dict):
        return str(metric.get("config", {}).get("name") or metric["class_name"])
    return str(getattr(metric, "name", None) or getattr(metric, "__name__", metric))


def fresh_metric(metric: Any) -> Any:
    """A metric to compile with: a new object built from a Keras config (a compiled model's metric object;
    an object's state must not carry over from one compile to the next), anything else as it is."""
    import tensorflow as tf

    return tf.keras.metrics.deserialize(metric) if isinstance(metric, dict) else metric


# --- optimizer, inputs ---
def make_optimizer(config: Any, written: str, written_config: dict[str, Any] | None = None) -> Any:
    """The optimizer the config asks for, at its learning rate, with its gradient clipping (0 = off). As
    written, from the Keras config of the program's own optimizer object where it has one (its momentum,
    epsilon and the rest kept)."""
    import tensorflow as tf

    name = written if config.optimizer == "as_written" else config.optimizer
    clipping = {key: getattr(config, key) or None for key in ("clipnorm", "global_clipnorm", "clipvalue")}
    if written_config is not None and name == written:
        arguments = {**written_config["config"], "learning_rate": config.learning_rate, **clipping}
        return tf.keras.optimizers.deserialize({**written_config, "config": arguments})
    if name == "momentum":
        return tf.keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=0.9, **clipping)
    optimizer = tf.keras.optimizers.get(name)
    return optimizer.__class__(learning_rate=config.learning_rate, **clipping)


def scale_inputs(how: str, x_train: Any, x_val: Any) -> tuple[Any, Any]:
    """Both splits scaled per input feature (the last axis) with the training split's statistics; a constant
    feature is left centred, not divided by zero."""
    import numpy as np

    if how == "none":
        return x_train, x_val
    axes = tuple(range(x_train.ndim - 1))
    if how == "standardize":
        centre, spread = x_train.mean(axis=axes), x_train.std(axis=axes)
    else:
        centre = x_train.min(axis=axes)
        spread = x_train.max(axis=axes) - centre
    spread = np.where(spread > 0, spread, 1.0)
    return ((x_train - centre) / spread).astype(np.float32), ((x_val - centre) / spread).astype(np.float32)


# --- rebuilding the model with the model knobs ---
def rebuild(net: Any, config: Any, where: str) -> Any:
    """The model with the config's MODEL_KNOBS applied, rebuilt from its Keras config (fresh weights, from
    the seeded global generator); the model itself where every knob is as written. A Sequential or
    Functional model whose layers Keras can rebuild is supported; a remedy the model cannot take raises
    SweeperError naming the layer and the knob."""
    import tensorflow as tf

    wanted = {name: getattr(config, name) for name in MODEL_KNOBS}
    if all(value in ("as_written", "none") for value in wanted.values()):
        return net
    if not isinstance(net, tf.keras.Model) or not (isinstance(net, tf.keras.Sequential) or net._is_graph_network):
        raise SweeperError(
            f"Keras workload {where}: model() returned {type(net).__name__}, not a Sequential or Functional "
            f"model; {', '.join(k for k, v in wanted.items() if v not in ('as_written', 'none'))} cannot be applied"
        )
    spec = net.get_config()
    layers = spec["layers"]
    sequential = isinstance(net, tf.keras.Sequential)
    outputs = {layers[-1]["config"]["name"]} if sequential else {entry[0] for entry in spec["output_layers"]}
    body = [entry for entry in layers if entry["class_name"] != "InputLayer"]
    output_entries = [entry for entry in body if entry["config"]["name"] in outputs]

    def fail(knob: str, entry: dict, why: str) -> SweeperError:
        name, kind = entry["config"]["name"], entry["class_name"]
        return SweeperError(
            f"Keras workload {where}: {knob}={wanted[knob]} cannot be applied to layer {name!r} ({kind}): {why}"
        )

    if wanted["output_activation"] != "as_written":
        for entry in output_entries:
            inner = _inner(entry)
            if "activation" not in inner["config"] or inner["class_name"] in _RECURRENT:
                raise fail("output_activation", entry, "the output layer has no activation to set")
            _set_activation(entry, wanted["output_activation"])
    if wanted["hidden_activation"] != "as_written":
        hidden = [entry for entry in body if entry not in output_entries and _is_nonlinear(entry)]
        if not hidden:  # a linear network: its hidden layers get the activation they lack
            hidden = [entry for entry in body if entry not in output_entries and _takes_activation(entry)]
        if not hidden:
            raise SweeperError(
                f"Keras workload {where}: hidden_activation={wanted['hidden_activation']} cannot be applied: the "
                "model has no hidden layer with an activation to set (recurrent cells keep theirs)"
            )
        for entry in hidden:
            _set_activation(entry, wanted["hidden_activation"])
    if wanted["kernel_initializer"] != "as_written":
        initializer = tf.keras.initializers.serialize(tf.keras.initializers.get(wanted["kernel_initializer"]))
        touched = [entry for entry in body if "kernel_initializer" in _inner(entry)["config"]]
        if not touched:
            raise SweeperError(
                f"Keras workload {where}: kernel_initializer={wanted['kernel_initializer']} cannot be applied: no "
                "layer of the model has a kernel_initializer"
            )
        for entry in touched:
            _inner(entry)["config"]["kernel_initializer"] = initializer
    if wanted["normalization"] != "none":
        kind = {"batch": "BatchNormalization", "layer": "LayerNormalization"}[wanted["normalization"]]
        after = [entry for entry in body if entry not in output_entries and _inner(entry)["class_name"] in _NORMALIZED]
        if not after:
            raise SweeperError(
                f"Keras workload {where}: normalization={wanted['normalization']} cannot be applied: the model has "
                "no hidden Dense, Conv or recurrent layer"
            )
        for entry in after:
            if not sequential and len(entry["inbound_nodes"]) != 1:
                raise fail("normalization", entry, "the layer is shared (called more than once)")
            _insert_after(spec, entry, kind, sequential)
    try:
        return (tf.keras.Sequential if sequential else tf.keras.Model).from_config(spec)
    except (TypeError, ValueError) as exc:
        knobs = ", ".join(f"{k}={v}" for k, v in wanted.items() if v not in ("as_written", "none"))
        raise SweeperError(f"Keras workload {where}: {knobs}: Keras cannot rebuild the model: {exc}") from None


def _inner(entry: dict) -> dict:
    """The layer a wrapper (Bidirectional, TimeDistributed) wraps, or the entry itself."""
    return entry["config"]["layer"] if entry["class_name"] in _WRAPPERS else entry


def _is_nonlinear(entry: dict) -> bool:
    inner = _inner(entry)
    if inner["class_name"] in _RECURRENT:
        return False
    if inner["class_name"] in _ACTIVATION_LAYERS:
        return True
    return inner["config"].get("activation", "linear") not in ("linear", None)


def _takes_activation(entry: dict) -> bool:
    """A layer with an `activation` argument (Dense, Conv, ...), whatever it holds; recurrent cells' gates
    are part of the cell."""
    inner = _inner(entry)
    return inner["class_name"] not in _RECURRENT and "activation" in inner["config"]


def _set_activation(entry: dict, activation: str) -> None:
    inner = _inner(entry)
    if inner["class_name"] in _ACTIVATION_LAYERS and inner["class_name"] != "Activation":
        # ReLU, LeakyReLU, Softmax, ... become a plain Activation layer of the same name
        inner["class_name"], inner["module"] = "Activation", "keras.layers"
        inner["config"] = {"name": inner["config"]["name"], "trainable": True, "dtype": inner["config"].get("dtype")}
    inner["config"]["activation"] = activation


def _insert_after(spec: dict, entry: dict, kind: str, sequential: bool) -> None:
    """A fresh `kind` layer fed by `entry`, and everything `entry` fed now fed by it."""
    name = entry["config"]["name"]
    norm_name = f"{name}_{kind[: -len('Normalization')].lower()}_norm"
    norm: dict[str, Any] = {"module": "keras.layers", "class_name": kind, "config": {"name": norm_name}}
    layers = spec["layers"]
    position = layers.index(entry) + 1
    if sequential:
        layers.insert(position, norm)
        return
    norm.update(name=norm_name, inbound_nodes=[[[name, 0, 0, {}]]])
    for other in layers:
        for node in other.get("inbound_nodes", []):
            for inbound in node:
                if inbound[0] == name:
                    inbound[0] = norm_name
    layers.insert(position, norm)
