"""sweeper.instruments on tiny hand-set models, each reading computed by hand."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from sweeper.instruments import Instruments  # noqa: E402

X = np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.0], [2.0, 1.0]], np.float32)
Y = np.array([[1.0], [0.0], [-1.0], [2.0]], np.float32)


def mse_to(targets):
    return lambda outputs: tf.reduce_mean(tf.square(outputs - targets))


def sum_of_outputs(outputs):
    return tf.reduce_sum(outputs)


def set_dense(layer, bias, kernel=None):
    bias = np.asarray(bias, np.float32)
    kernel = np.zeros(layer.kernel.shape, np.float32) if kernel is None else np.asarray(kernel, np.float32)
    layer.set_weights([kernel, bias])


def hidden_then_linear(activation, units, bias, kernel=None, functional=False):
    """Input(2) -> Dense(units, activation) with the given bias (and kernel, default zeros) -> Dense(1)."""
    hidden, head = tf.keras.layers.Dense(units, activation=activation), tf.keras.layers.Dense(1)
    if functional:
        inputs = tf.keras.Input(shape=(2,))
        model = tf.keras.Model(inputs, head(hidden(inputs)))
    else:
        model = tf.keras.Sequential([tf.keras.Input(shape=(2,)), hidden, head])
    set_dense(hidden, bias, kernel)
    return model


@pytest.mark.parametrize("functional", [False, True])
def test_dead_share_counts_units_that_are_zero_on_every_example(functional):
    all_dead = hidden_then_linear("relu", 3, [-1.0, 0.0, -0.5], functional=functional)
    assert Instruments(all_dead, X, sum_of_outputs).measure()["dead_share"] == 1.0
    # Units 0-1 read x0 (positive on some examples): alive; units 2-3 see a zero kernel and a negative bias.
    half = hidden_then_linear(
        "relu", 4, [0.0, 0.0, -1.0, -1.0], [[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], functional=functional
    )
    assert Instruments(half, X, sum_of_outputs).measure()["dead_share"] == 0.5


def test_relu6_an_activation_layer_and_a_relu_layer_count_as_relu_a_leaky_one_does_not():
    inputs = tf.keras.Input(shape=(2,))
    dense = tf.keras.layers.Dense(2)
    h1 = tf.keras.layers.Activation("relu6")(dense(inputs))
    h2 = tf.keras.layers.ReLU()(h1)
    h3 = tf.keras.layers.ReLU(negative_slope=0.1)(h2)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(h3))
    set_dense(dense, [-1.0, 1.0])
    # relu6 and ReLU layers: 2 + 2 units, one dead in each; the leaky ReLU is not watched.
    assert Instruments(model, X, sum_of_outputs).measure()["dead_share"] == 0.5


def test_no_hidden_relu_no_dead_share_and_an_output_relu_is_not_hidden():
    assert "dead_share" not in Instruments(hidden_then_linear("tanh", 2, [0.0, 0.0]), X, sum_of_outputs).measure()
    model = tf.keras.Sequential([tf.keras.Input(shape=(2,)), tf.keras.layers.Dense(1, activation="relu")])
    set_dense(model.layers[0], [-1.0])
    assert "dead_share" not in Instruments(model, X, sum_of_outputs).measure()


def test_a_unit_of_a_sequence_output_is_dead_only_when_zero_at_every_position():
    model = tf.keras.Sequential([tf.keras.Input(shape=(3, 1)), tf.keras.layers.Dense(2, activation="relu")])
    model.add(tf.keras.layers.Dense(1))
    set_dense(model.layers[0], [0.0, 0.0], [[1.0, -1.0]])
    # One positive step in one sequence keeps unit 0 alive; unit 1 is positive there only where x < 0.
    x = np.array([[[-1.0], [-2.0], [-3.0]], [[-1.0], [4.0], [-1.0]]], np.float32)
    assert Instruments(model, x, sum_of_outputs).measure()["dead_share"] == 0.0
    assert Instruments(model, np.abs(x), sum_of_outputs).measure()["dead_share"] == 0.5


@pytest.mark.parametrize(
    "activation, bias, share",
    [
        ("sigmoid", [10.0, -10.0, 0.0, 1.0], 0.5),  # 0.99995 and 0.00005 saturated; 0.5 and 0.73 not
        ("sigmoid", [3.0, -3.0, 0.0, 0.0], 0.0),  # 0.953 and 0.047: inside the bounds
        ("hard_sigmoid", [5.0, -5.0, 0.0, 0.0], 0.5),  # exactly 1 and 0
        ("tanh", [3.0, -3.0, 0.5, 0.0], 0.5),  # |tanh(3)| = 0.995 saturated; 0.46 and 0 not
        ("tanh", [2.0, -2.0, 0.0, 0.0], 0.0),  # |tanh(2)| = 0.964 < 0.97
    ],
)
def test_saturated_share(activation, bias, share):
    model = hidden_then_linear(activation, 4, bias)
    assert Instruments(model, X, sum_of_outputs).measure()["saturated_share"] == share


def test_a_unit_saturated_on_some_examples_only_is_not_saturated():
    # sigmoid(10 * x0) on x0 = 1, 0.5, -1, 2: 0.99995, 0.9933, 0.00005, 1.0, saturated on every example;
    # sigmoid(4 * x0): 0.982, 0.881, 0.018, 0.9997, not on the second.
    saturated = hidden_then_linear("sigmoid", 1, [0.0], [[10.0], [0.0]])
    assert Instruments(saturated, X, sum_of_outputs).measure()["saturated_share"] == 1.0
    partly = hidden_then_linear("sigmoid", 1, [0.0], [[4.0], [0.0]])
    assert Instruments(partly, X, sum_of_outputs).measure()["saturated_share"] == 0.0


def test_no_sigmoid_or_tanh_no_saturated_share_and_lstm_gates_are_not_read():
    assert "saturated_share" not in Instruments(hidden_then_linear("relu", 2, [0, 0]), X, sum_of_outputs).measure()
    x = np.full((2, 3, 1), 100.0, np.float32)
    lstm = tf.keras.Sequential(
        [tf.keras.Input(shape=(3, 1)), tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(2)), tf.keras.layers.Dense(1)]
    )
    assert "saturated_share" not in Instruments(lstm, x, sum_of_outputs).measure()
    # A SimpleRNN's output is its tanh's: inside a Bidirectional wrapper it is watched as the wrapper.
    rnn = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(3, 1)),
            tf.keras.layers.Bidirectional(tf.keras.layers.SimpleRNN(2, kernel_initializer="ones")),
            tf.keras.layers.Dense(1),
        ]
    )
    assert Instruments(rnn, x, sum_of_outputs).measure()["saturated_share"] == 1.0


def test_a_sigmoid_output_behind_a_reshape_is_an_output_not_a_hidden_unit():
    inputs = tf.keras.Input(shape=(2,))
    dense = tf.keras.layers.Dense(1, activation="sigmoid")
    model = tf.keras.Model(inputs, tf.keras.layers.Reshape(())(dense(inputs)))
    set_dense(dense, [10.0])
    assert "saturated_share" not in Instruments(model, X, sum_of_outputs).measure()


@pytest.mark.parametrize("functional", [False, True])
def test_grad_norm_of_a_linear_model_under_mse_is_the_hand_computed_one(functional):
    w, b = np.array([[0.3], [-0.7]], np.float32), np.array([0.2], np.float32)
    dense = tf.keras.layers.Dense(1)
    if functional:
        inputs = tf.keras.Input(shape=(2,))
        model = tf.keras.Model(inputs, dense(inputs))
    else:
        model = tf.keras.Sequential([tf.keras.Input(shape=(2,)), dense])
    dense.set_weights([w, b])
    residual = X.astype(np.float64) @ w + b - Y
    grad_w = 2.0 / len(X) * X.T.astype(np.float64) @ residual
    grad_b = 2.0 / len(X) * residual.sum()
    expected = np.sqrt(np.sum(grad_w**2) + grad_b**2)
    readings = Instruments(model, X, mse_to(Y)).measure()
    assert readings["grad_norm"] == pytest.approx(expected, rel=1e-6)
    assert readings[f"grad_norm/{dense.name}"] == readings["grad_norm"]
    assert "grad_norm_ratio" not in readings and "update_ratio" not in readings
    assert all(type(value) is float for value in readings.values())


def test_grad_norm_ratio_is_first_layer_over_last():
    # y_hat = b * a * x: d/da = b * m and d/db = a * m with m = mean(2 r x), so the ratio is |b| / |a|.
    first = tf.keras.layers.Dense(1, use_bias=False)
    last = tf.keras.layers.Dense(1, use_bias=False)
    model = tf.keras.Sequential([tf.keras.Input(shape=(1,)), first, last])
    first.set_weights([np.array([[2.0]], np.float32)])
    last.set_weights([np.array([[0.5]], np.float32)])
    x, y = np.array([[1.0], [2.0]], np.float32), np.array([[3.0], [-1.0]], np.float32)
    readings = Instruments(model, x, mse_to(y)).measure()
    assert readings["grad_norm_ratio"] == pytest.approx(0.25, rel=1e-6)
    # Where the last layer's gradient is 0 the ratio is left out.
    last.set_weights([np.array([[0.0]], np.float32)])
    first.set_weights([np.array([[0.0]], np.float32)])
    assert "grad_norm_ratio" not in Instruments(model, x, mse_to(y)).measure()


def test_update_ratio_after_a_manual_weight_change():
    model = hidden_then_linear("relu", 2, [1.0, 2.0], [[1.0, 0.0], [0.0, 2.0]])
    instruments = Instruments(model, X, sum_of_outputs)
    assert "update_ratio" not in instruments.measure()
    before = model.get_weights()
    norm = np.sqrt(sum(np.sum(np.square(w.astype(np.float64))) for w in before))
    model.layers[0].set_weights([before[0] + np.array([[0.0, 3.0], [0.0, 0.0]], np.float32), before[1]])
    model.layers[1].set_weights([before[2], before[3] + 4.0])  # the head's bias: a change of norm 4
    assert instruments.measure()["update_ratio"] == pytest.approx(5.0 / norm, rel=1e-6)
    assert instruments.measure()["update_ratio"] == 0.0  # nothing moved since the previous call


def test_measure_changes_no_weight_nor_random_state_and_is_traced_once():
    model = hidden_then_linear("relu", 3, [0.1, -0.2, 0.3], [[1.0, 0.5, -1.0], [0.2, 0.0, 1.0]])
    instruments = Instruments(model, X, mse_to(Y))
    weights = model.get_weights()
    tf.keras.utils.set_random_seed(7)
    expected = tf.random.uniform((3,)).numpy(), np.random.random()
    tf.keras.utils.set_random_seed(7)
    for _ in range(3):
        instruments.measure()
    assert np.array_equal(tf.random.uniform((3,)).numpy(), expected[0]) and np.random.random() == expected[1]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights, strict=True))
    assert instruments._readings.experimental_get_tracing_count() == 1


def test_a_sequential_without_an_input_and_a_nested_model_work():
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, activation="relu"), tf.keras.layers.Dense(1)])
    model.build((None, 2))
    set_dense(model.layers[0], [-1.0, -1.0])
    assert Instruments(model, X, sum_of_outputs).measure()["dead_share"] == 1.0
    inner = tf.keras.Sequential([tf.keras.Input(shape=(2,)), tf.keras.layers.Dense(3, activation="relu")])
    inputs = tf.keras.Input(shape=(2,))
    outer = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inner(inputs)))
    readings = Instruments(outer, X, sum_of_outputs).measure()
    # The inner model is one layer: its gradient norm under its name, its units not watched.
    assert f"grad_norm/{inner.name}" in readings and "dead_share" not in readings


def test_a_subclassed_model_gets_its_gradient_readings_only():
    class Custom(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(1)

        def call(self, inputs):
            return self.dense(inputs)

    model = Custom()
    model(X)
    readings = Instruments(model, X, sum_of_outputs).measure()
    assert readings["grad_norm"] > 0 and f"grad_norm/{model.dense.name}" in readings
    assert "dead_share" not in readings and "saturated_share" not in readings


def test_a_functional_model_with_dict_inputs_and_outputs():
    a, b = tf.keras.Input(shape=(2,), name="a"), tf.keras.Input(shape=(2,), name="b")
    hidden = tf.keras.layers.Dense(2, activation="relu")
    model = tf.keras.Model(
        {"a": a, "b": b}, {"y": tf.keras.layers.Dense(1)(hidden(a)), "z": tf.keras.layers.Dense(1)(b)}
    )
    set_dense(hidden, [-1.0, 1.0])
    # Only z's head gets a gradient from this loss; the model's outputs reach it as the dict the model returns.
    readings = Instruments(model, {"a": X, "b": X}, lambda outputs: tf.reduce_sum(outputs["z"])).measure()
    assert readings["dead_share"] == 0.5 and readings[f"grad_norm/{hidden.name}"] == 0.0
    assert readings["grad_norm"] == pytest.approx(np.sqrt(np.sum(X.sum(axis=0) ** 2) + len(X) ** 2), rel=1e-6)
