"""The data and structure checks (`sweeper.findings`) on small inputs one can check by hand, then read from
real Keras programs."""

import numpy as np
import pytest

from sweeper.findings import Layer, as_written, data_findings, structure_findings
from sweeper.workload import load

from conftest import workload_variant

RNG = np.random.default_rng(0)
UNIT = RNG.normal(size=(400, 3))


def knobs(found):
    return [finding.knob for finding in found]


def test_targets_the_output_cannot_reach():
    (finding,) = data_findings(UNIT, np.array([3.0, 50.0, 103.0]), "sigmoid", 1, "mean_squared_error")
    assert finding.what == "targets span 3 to 103; a sigmoid output reaches 0 to 1"
    assert finding.knob == "output_activation"
    assert data_findings(UNIT, np.array([0.1, 0.9]), "sigmoid", 1, "mean_squared_error") == []
    assert data_findings(UNIT, np.array([-5.0, 9.0]), "linear", 1, "mean_squared_error") == []


def test_features_on_scales_100x_apart():
    x = UNIT * np.array([1.0, 1.0, 500.0])
    (finding,) = data_findings(x, np.zeros(400), "linear", 1, "mean_squared_error")
    assert finding.knob == "input_scaling" and "spreads differ" in finding.what
    assert data_findings(UNIT * np.array([1.0, 1.0, 50.0]), np.zeros(400), "linear", 1, "mean_squared_error") == []


def test_a_loss_that_does_not_fit_its_targets_or_output():
    one_hot = np.eye(3)[RNG.integers(0, 3, 400)]
    assert knobs(data_findings(UNIT, one_hot, "softmax", 3, "sparse_categorical_crossentropy")) == ["loss"]
    labels = RNG.integers(0, 3, 400).astype(float)
    assert knobs(data_findings(UNIT, labels, "softmax", 3, "categorical_crossentropy")) == ["loss"]
    binary = RNG.integers(0, 2, 400).astype(float)
    (softmax_of_one,) = data_findings(UNIT, binary, "softmax", 1, "binary_crossentropy")
    assert softmax_of_one.knob == "output_activation" and "softmax over one output unit" in softmax_of_one.what
    assert (
        "binary cross-entropy on targets 0 to 5"
        in data_findings(UNIT, binary * 5, "linear", 1, "binary_crossentropy")[0].what
    )


def test_cross_entropy_on_an_output_that_is_no_probability_points_to_a_squashing_output():
    labels = np.eye(3)[RNG.integers(0, 3, 400)]
    (finding,) = data_findings(UNIT, labels, "linear", 3, "categorical_crossentropy")
    assert finding.what == "categorical_crossentropy reads the outputs as probabilities, and a linear output gives none"
    assert (finding.knob, finding.value) == ("output_activation", "softmax")
    binary = RNG.integers(0, 2, 400).astype(float)
    assert data_findings(UNIT, binary, "relu", 1, "binary_crossentropy")[0].value == "sigmoid"
    # logits read as logits, or an output that is a probability already: nothing to say
    assert data_findings(UNIT, labels, "linear", 3, "categorical_crossentropy", from_logits=True) == []
    assert data_findings(UNIT, labels, "softmax", 3, "categorical_crossentropy") == []


def test_class_imbalance_past_90_10_points_to_no_knob():
    labels = np.array([0.0] * 95 + [1.0] * 5)
    (finding,) = data_findings(UNIT[:100], labels, "sigmoid", 1, "binary_crossentropy")
    assert finding.what == "one class holds 95% of the training labels" and finding.knob is None
    assert data_findings(UNIT[:100], np.array([0.0] * 85 + [1.0] * 15), "sigmoid", 1, "binary_crossentropy") == []


def test_sequences_that_are_mostly_padding():
    x = np.zeros((10, 8, 2))
    x[:, :3] = 1.0  # 3 of 8 steps hold data: 62.5% padding
    (finding,) = data_findings(x, np.zeros(10), "linear", 1, "mean_squared_error")
    assert finding.what == "62% of the sequences' steps are all zeros (padding)" and finding.knob is None
    x[:, :5] = 1.0
    assert data_findings(x, np.zeros(10), "linear", 1, "mean_squared_error") == []


def test_a_linear_network_and_weights_scaled_far_past_their_fan_in():
    layers = [
        Layer("dense", "linear", 784, 1.0, False),
        Layer("dense_1", "linear", 64, 2 / 64, False),
        Layer("out", "softmax", 64, 1 / 64, True),
    ]
    found = structure_findings(layers)
    assert knobs(found) == ["hidden_activation", "kernel_initializer"]
    assert "the network is one linear map" in found[0].what and "784x" in found[1].what
    assert structure_findings([Layer("dense", "relu", 8, 2 / 8, False), Layer("out", "sigmoid", 8, 1 / 8, True)]) == []
    assert as_written(layers) == {"output_activation": "softmax", "hidden_activation": "linear"}


def test_a_keras_program_is_read_before_it_trains(tmp_path):
    """The tiny program as written shows nothing; with a linear hidden layer and N(0, 1) weights it shows both,
    and its own output activation is known, so the doctor never proposes it."""
    reading = load(str(workload_variant(tmp_path / "plain.py", "keras_tiny.py"))).read_program()
    assert reading.findings == () and reading.as_written == {
        "output_activation": "sigmoid",
        "hidden_activation": "relu",
    }
    broken = workload_variant(
        tmp_path / "linear.py",
        "keras_tiny.py",
        (
            'activation="relu", input_shape=(3,)',
            "kernel_initializer=tf.keras.initializers.RandomNormal(stddev=30.0), input_shape=(3,)",
        ),
    )
    found = load(str(broken)).read_program().findings
    assert knobs(found) == ["hidden_activation", "kernel_initializer"], [f.what for f in found]


@pytest.mark.parametrize("name", ["sigmoid_regression.py", "single_unit_softmax.py", "unscaled_inputs.py"])
def test_the_example_programs_faults_are_found_before_training(name):
    from conftest import ROOT

    expected = {
        "sigmoid_regression.py": "output_activation",
        "single_unit_softmax.py": "output_activation",
        "unscaled_inputs.py": "input_scaling",
    }[name]
    assert expected in knobs(load(str(ROOT / "examples" / "keras" / name)).read_program().findings)
