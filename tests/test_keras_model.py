"""A plain Keras program as a workload (sweeper.keras_model): knobs, remedies by rebuilding, reference levels,
reports, refusals. Real TensorFlow, tiny models."""

import math

import numpy as np
import pytest

from sweeper.errors import SweeperError
from sweeper.keras_levels import reference_levels
from sweeper.keras_model import REPORTS_PER_TRIAL, scale_inputs
from sweeper.trial import run_trial
from sweeper.workload import load, load_shipped

from conftest import TEST_WORKLOADS, workload_refusal, workload_variant

TINY = (TEST_WORKLOADS / "keras_tiny.py").read_text()


def program(tmp_path, *changes, name="prog.py"):
    """The path of the tiny Keras program with (old, new) text replacements applied."""
    return workload_variant(tmp_path / name, "keras_tiny.py", *changes)


def refusal(path) -> str:
    message = workload_refusal(path)
    assert str(path) in message
    return message


# --- the contract ---
def test_the_generic_knobs_sit_beside_the_programs_own_with_defaults_as_written(tmp_path):
    workload = load(str(program(tmp_path)))
    assert list(workload.knobs)[:3] == ["width", "functional", "seed"]
    knobs = workload.knobs
    assert knobs["learning_rate"].default == 0.01  # COMPILE's
    assert (knobs["epochs"].default, knobs["batch_size"].default) == (3, 32)  # FIT's
    assert knobs["output_activation"].default == "as_written" and knobs["normalization"].default == "none"
    assert "linear" in knobs["output_activation"].choices and "he_normal" in knobs["kernel_initializer"].choices
    assert all(knob.doc for knob in knobs.values())
    assert workload.chance == "reported" and workload.smoke == {"epochs": 2}


def test_without_a_learning_rate_the_optimizers_keras_default_is_the_default(tmp_path):
    path = program(tmp_path, ('"learning_rate": 0.01, ', ""), ('"optimizer": "adam"', '"optimizer": "sgd"'))
    assert load(str(path)).knobs["learning_rate"].default == 0.01
    path = program(tmp_path, ('"learning_rate": 0.01, ', ""), name="adam.py")
    assert load(str(path)).knobs["learning_rate"].default == 0.001


COMPILED = (
    (TINY.splitlines()[6] + "\n", ""),  # the COMPILE line
    (
        "    if not config.functional:\n        return tf.keras.Sequential(",
        "    if not config.functional:\n        net = tf.keras.Sequential(",
    ),
    (
        '                tf.keras.layers.Dense(1, activation="sigmoid"),\n            ]\n        )',
        '                tf.keras.layers.Dense(1, activation="sigmoid"),\n            ]\n        )\n'
        "        net.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.3), "
        'loss=tf.keras.losses.BinaryCrossentropy(), metrics=["accuracy", tf.keras.metrics.AUC(name="roc")])\n'
        "        return net",
    ),
)
"""keras_tiny.py without COMPILE, its model() compiling itself (SGD at 0.3, a loss object, a metric object
named apart from its class)."""


def test_a_model_that_compiles_is_read_where_compile_is_left_out(tmp_path):
    workload = load(str(program(tmp_path, *COMPILED)))
    assert workload.knobs["learning_rate"].default == pytest.approx(0.3)  # the model's optimizer's rate
    compiled = workload.module.COMPILE
    assert {key: compiled[key] for key in ("optimizer", "learning_rate", "loss")} == {
        "optimizer": "sgd",
        "learning_rate": pytest.approx(0.3),
        "loss": "binary_crossentropy",
    }
    # a metric object is kept as its Keras config: each trial compiles a fresh one, under the name it logs
    assert compiled["metrics"][0] == "accuracy" and compiled["metrics"][1]["config"]["name"] == "roc"
    workload.check_remedies([{}, {"learning_rate": 0.01}])  # its METRIC is produced; the remedies recompile it
    by_name = load(str(program(tmp_path, *COMPILED, ('"val_accuracy", "max"', '"val_roc", "max"'), name="roc.py")))
    by_name.check_remedies([{}])  # METRIC val_roc: the metric's own name, not its class's
    history = run_trial(by_name, {"epochs": 2}).history
    assert 0.0 <= history[-1]["val_roc"] <= 1.0
    # COMPILE's settings come first where both give one
    partial = program(tmp_path, *COMPILED[1:], ('"learning_rate": 0.01, ', ""), name="partial.py")
    partial.write_text(partial.read_text().replace('"optimizer": "adam", ', ""))
    assert load(str(partial)).module.COMPILE["optimizer"] == "sgd"  # read: COMPILE gave no optimizer
    assert load(str(partial)).module.COMPILE["metrics"] == ["accuracy"]  # COMPILE's


def test_a_compiled_models_loss_and_optimizer_objects_keep_their_arguments(tmp_path):
    """A logits output under BinaryCrossentropy(from_logits=True) and SGD with momentum: the program as written
    trains with both, not with their names alone (which would read the logits as probabilities)."""
    from sweeper.keras_model import make_optimizer

    path = program(
        tmp_path,
        *COMPILED,
        ('tf.keras.layers.Dense(1, activation="sigmoid"),\n            ]', "tf.keras.layers.Dense(1),\n            ]"),
        ("tf.keras.optimizers.SGD(learning_rate=0.3)", "tf.keras.optimizers.SGD(learning_rate=0.3, momentum=0.9)"),
        ("tf.keras.losses.BinaryCrossentropy()", "tf.keras.losses.BinaryCrossentropy(from_logits=True)"),
    )
    workload = load(str(path))
    assert workload.module.COMPILE["loss"] == "binary_crossentropy"  # the name, for the rules that read it
    written = workload.module.train.__self__.written_objects
    assert written["loss"]["config"]["from_logits"] is True
    as_written = workload.make_config({})
    optimizer = make_optimizer(as_written, "sgd", written["optimizer"])
    assert optimizer.momentum == pytest.approx(0.9) and float(optimizer.learning_rate) == pytest.approx(0.3)
    swapped = make_optimizer(workload.make_config({"optimizer": "adam"}), "sgd", written["optimizer"])
    assert type(swapped).__name__ == "Adam"
    history = run_trial(workload, {"epochs": 3}).history
    assert history[-1]["val_accuracy"] > 0.8  # logits read as logits: the easy task is learned


def test_a_model_that_neither_compiles_nor_has_compile_is_told_so(tmp_path):
    message = refusal(program(tmp_path, COMPILED[0]))
    assert "it does not define COMPILE, and model() does not compile" in message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            ('METRIC, MODE = "val_accuracy"', 'METRIC, MODE = "accuracy"'),
            "METRIC is 'accuracy'; it is a validation key",
        ),
        (('"metrics": ["accuracy"]', '"metrics": ["accuracy"], "run_eagerly": True'), "COMPILE['run_eagerly']"),
        (('"optimizer": "adam"', '"optimizer": "adamw2"'), "COMPILE['optimizer'] is 'adamw2'; valid: sgd, adam"),
        (('"shuffle": False', '"validation_split": 0.2'), "FIT['validation_split'] is not a key it takes"),
        (("width: Literal[4, 8] = 8", "epochs: Literal[4, 8] = 8"), "Config.epochs has the name of a generic knob"),
        (('FIT = {"epochs": 3', 'FITS = {"epochs": 3'), "it does not define FIT"),
    ],
)
def test_a_program_that_breaks_the_contract_gets_one_line_naming_file_and_key(tmp_path, change, fragment):
    assert fragment in refusal(program(tmp_path, change))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            ("return x[:150], y[:150], x[150:], y[150:]", "return x[:150].tolist(), y[:150], x[150:], y[150:]"),
            "data()'s x_train is a list; return numpy arrays",
        ),
        (
            ("return x[:150], y[:150], x[150:], y[150:]", "return x[:150], y[:140], x[150:], y[150:]"),
            "data()'s x_train has 150 rows and y_train 140",
        ),
        (
            ("return x[:150], y[:150], x[150:], y[150:]", "return x[:150], y[:150], x[150:]"),
            "data() returned a tuple of 3 values; it returns x_train, y_train, x_val, y_val",
        ),
        (
            ("    return x[:150]", "    x[3, 1] = np.nan\n    return x[:150]"),
            "data()'s x_train holds 1 NaN or infinite values: a data bug",
        ),
        (
            ("return x[:150], y[:150], x[150:], y[150:]", "return x[:150], y[:150], x[150:, :2], y[150:]"),
            "data()'s training and validation inputs differ in shape: (3,) and (2,)",
        ),
        (("def data(config):", "def data():"), "data() takes 0 arguments; it takes one: `def data(seed):`"),
        (("def data(config):", "def load_data(config):"), "it does not define data; a Keras program defines"),
        (
            ('"metrics": ["accuracy"]', '"metrics": ["mae"]'),
            "METRIC is 'val_accuracy', which COMPILE's metrics do not produce; valid: val_loss, val_mae",
        ),
        (
            ("    if not config.functional:", "    return None\n    if not config.functional:"),
            "model() returned NoneType; it returns a keras Model",
        ),
        (
            ("    if not config.functional:", "    return [tf.keras.layers.Dense(1)]\n    if not config.functional:"),
            "model() returned list; it returns a keras Model",
        ),
        (
            ('activation="relu", input_shape', 'activation="relu", kernel_initializer="he_normall", input_shape'),
            "model() raised ValueError: ",
        ),
    ],
    ids=[
        "list",
        "lengths",
        "three values",
        "NaN",
        "shapes",
        "no argument",
        "load_data",
        "metric",
        "None",
        "a list model",
        "mistyped initializer",
    ],
)
def test_a_program_that_cannot_train_as_written_is_refused_before_any_trial(tmp_path, change, fragment):
    """`data` and `model` are called once on the driver: each mistake is one line naming the function."""
    try:
        workload = load(str(program(tmp_path, change)))
    except SweeperError as exc:  # the contract of the file itself
        message = str(exc)
    else:
        with pytest.raises(SweeperError) as raised:
            workload.check_remedies([{}])
        message = str(raised.value)
    assert fragment in message and "\n" not in message, message


def test_validate_and_doctor_refuse_nan_data_with_exit_2_and_write_nothing(tmp_path):
    from typer.testing import CliRunner

    from sweeper.cli import app

    program(tmp_path, ("    return x[:150]", "    y[0] = np.inf\n    return x[:150]"))
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\nworkload: ./prog.py\nseeds: 2\ndesign: fixed\ngrid:\n  learning_rate: [0.01, 0.001]\n")
    for args in (
        ["validate", str(spec)],
        ["doctor", str(tmp_path / "prog.py"), "--spec-out", str(tmp_path / "d.yaml")],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "data()'s y_train holds 1 NaN or infinite values" in result.output, (
            result.output
        )
    assert not (tmp_path / "d.yaml").exists()


# --- remedies, applied by rebuilding the model ---
def built(tmp_path, *changes, **knobs):
    workload = load(str(program(tmp_path, *changes)))
    return workload.module.train.__self__.built_model(workload.make_config(knobs))


@pytest.mark.parametrize("functional", [False, True])
def test_each_model_knob_is_applied_where_it_belongs(tmp_path, functional):
    import tensorflow as tf

    net = built(
        tmp_path,
        functional=functional,
        output_activation="linear",
        hidden_activation="tanh",
        kernel_initializer="he_normal",
        normalization="batch",
    )
    layers = [layer for layer in net.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    kinds = [type(layer).__name__ for layer in layers]
    assert "BatchNormalization" in kinds and kinds.index("BatchNormalization") == 1  # right after the hidden Dense
    activations = [getattr(layer, "activation", None) for layer in layers]
    names = [a.__name__ for a in activations if a is not None]
    assert "tanh" in names and "relu" not in names and "sigmoid" not in names
    assert names[-1] == "linear"  # the output (a trailing Activation layer in the functional version)
    dense = [layer for layer in layers if isinstance(layer, tf.keras.layers.Dense)]
    assert all(isinstance(layer.kernel_initializer, tf.keras.initializers.HeNormal) for layer in dense)
    assert net(np.zeros((2, 3), np.float32)).shape == (2, 1)


def test_the_model_as_written_is_used_as_it_is(tmp_path):
    import tensorflow as tf

    net = built(tmp_path)
    assert [type(layer).__name__ for layer in net.layers] == ["Dense", "Dense"]
    assert net.layers[-1].activation is tf.keras.activations.sigmoid


def test_a_linear_network_gets_the_hidden_activation_it_lacks(tmp_path):
    net = built(tmp_path, ('activation="relu", input_shape=(3,)', "input_shape=(3,)"), hidden_activation="tanh")
    assert [layer.activation.__name__ for layer in net.layers] == ["tanh", "sigmoid"]


@pytest.mark.parametrize(
    ("change", "knobs", "fragment"),
    [
        (
            ('tf.keras.layers.Dense(1, activation="sigmoid")', "tf.keras.layers.Lambda(lambda x: x[:, :1])"),
            {"output_activation": "linear"},
            "output_activation=linear cannot be applied to layer 'lambda' (Lambda): the output layer has no activation",
        ),
        (
            ('tf.keras.layers.Dense(config.width, activation="relu", input_shape=(3,))', "tf.keras.Input((3,))"),
            {"hidden_activation": "tanh"},
            "hidden_activation=tanh cannot be applied: the model has no hidden layer with an activation to set",
        ),
    ],
)
def test_a_remedy_the_model_cannot_take_is_refused_naming_layer_and_knob(tmp_path, change, knobs, fragment):
    workload = load(str(program(tmp_path, change)))
    with pytest.raises(SweeperError) as raised:
        workload.check_remedies([knobs])
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_a_sweep_with_a_remedy_the_model_cannot_take_is_refused_before_anything_starts(tmp_path):
    from typer.testing import CliRunner

    from sweeper.cli import app

    program(
        tmp_path,
        ('tf.keras.layers.Dense(config.width, activation="relu", input_shape=(3,)),', ""),
        ('(1, activation="sigmoid")', '(1, activation="sigmoid", input_shape=(3,))'),
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\nworkload: ./prog.py\nseeds: 2\ndesign: fixed\ngrid:\n  normalization: [none, batch]\n")
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "normalization=batch cannot be applied: the model has no hidden Dense" in result.output
    assert not (tmp_path / "out").exists()


# --- inputs and reference levels ---
def test_inputs_are_scaled_with_the_training_splits_statistics_only():
    x_train = np.array([[0.0, 10.0], [2.0, 10.0]])
    x_val = np.array([[4.0, 20.0]])
    train, val = scale_inputs("standardize", x_train, x_val)
    assert train.tolist() == [[-1.0, 0.0], [1.0, 0.0]] and val.tolist() == [[3.0, 10.0]]  # constant: centred only
    train, val = scale_inputs("minmax", x_train, x_val)
    assert train.tolist() == [[0.0, 0.0], [1.0, 0.0]] and val.tolist() == [[2.0, 10.0]]


def test_chance_is_the_best_constant_and_oracle_the_targets_themselves():
    # binary labels, 3 of 4 positive in training: the constant 0.75 predicts 1 everywhere (accuracy 0.4 on
    # validation); the validation prior 0.4 predicts 0 everywhere (0.6), the better constant
    y_train, y_val = np.array([1.0, 1.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0, 0.0, 1.0])
    levels = reference_levels((1,), "binary_crossentropy", lambda: ["accuracy"], y_train, y_val, "val_accuracy", "max")
    assert levels == (pytest.approx(0.6), pytest.approx(1.0))
    # regression, MSE: the training mean 2.0 scores 5 against validation targets 1 and 5, their own mean 3 scores 4
    y_train, y_val = np.array([1.0, 3.0]), np.array([1.0, 5.0])
    chance, oracle = reference_levels((1,), "mean_squared_error", list, y_train, y_val, "val_loss", "min")
    assert chance == pytest.approx(4.0) and oracle == pytest.approx(0.0)
    # integer labels over a 3-way softmax: the priors, one-hot ideal; the validation priors (2/3, 1/3, 0) win
    y_train, y_val = np.array([0, 1, 1, 2]), np.array([1, 1, 0])
    chance, oracle = reference_levels(
        (3,), "sparse_categorical_crossentropy", lambda: ["accuracy"], y_train, y_val, "val_loss", "min"
    )
    assert chance == pytest.approx(-(2 * math.log(2 / 3) + math.log(1 / 3)) / 3, rel=1e-4)
    assert oracle == pytest.approx(0.0, abs=1e-5)


# --- training and reports ---
def test_a_long_run_reports_about_a_hundred_times_and_always_at_its_end(tmp_path):
    workload = load(str(program(tmp_path, ('"batch_size": 32', '"batch_size": 150'))))
    reports = []
    workload.train(workload.make_config({"epochs": 250, "width": 4}), reports.append)
    steps = [r["step"] for r in reports]
    assert steps[-1] == 250 and len(steps) <= REPORTS_PER_TRIAL and steps[:2] == [3, 6]
    final = reports[-1]
    for key in ("loss", "grad_norm", "val_accuracy", "val_loss", "chance", "oracle", "dead_share", "update_ratio"):
        assert isinstance(final[key], float) and math.isfinite(final[key]), key
    assert final["oracle"] == 1.0 and final["val_accuracy"] > final["chance"]


def test_another_training_loss_is_judged_on_the_loss_as_written(tmp_path):
    path = program(tmp_path, ('METRIC, MODE = "val_accuracy", "max"', 'METRIC, MODE = "val_loss", "min"'))
    workload = load(str(path))
    written, other = [], []
    workload.train(workload.make_config({"epochs": 1}), written.append)
    workload.train(workload.make_config({"epochs": 1, "loss": "mean_squared_error"}), other.append)
    assert written[-1]["chance"] == pytest.approx(other[-1]["chance"])  # both in binary cross-entropy
    assert other[-1]["val_loss"] == other[-1]["val_written_loss"] != other[-1]["loss"]


def test_a_workload_file_missing_on_a_node_is_written_from_the_shipped_source(tmp_path):
    source = (tmp_path / "elsewhere.py").parent / "gone.py"
    workload = load_shipped(str(source), TINY)
    assert workload.name == "gone" and "width" in workload.knobs
    assert load_shipped(str(program(tmp_path)), TINY).module.__file__ == str(tmp_path / "prog.py")


def test_a_subclassed_model_trains_as_written_and_refuses_model_knobs(tmp_path):
    subclassed = """
    class Net(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = tf.keras.layers.Dense(config.width, activation="relu")
            self.out = tf.keras.layers.Dense(1, activation="sigmoid")

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    return Net()
"""
    path = program(tmp_path, ("    if not config.functional:", subclassed + "    if not config.functional:"))
    workload = load(str(path))
    reports = []
    workload.train(workload.make_config({"epochs": 1}), reports.append)
    assert reports[-1]["grad_norm"] > 0 and "chance" in reports[-1] and "dead_share" not in reports[-1]
    with pytest.raises(SweeperError, match="returned Net, not a Sequential or Functional model; output_activation"):
        workload.check_remedies([{"output_activation": "linear"}])
