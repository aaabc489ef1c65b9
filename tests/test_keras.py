"""tfhybrid.keras: hand-written backward passes inside Keras models trained by model.fit.

Tiny shapes and few steps throughout; the 20-step comparison with tfhybrid's own loop uses
the article's network on the first 2,000 MNIST training images.
"""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

from tfhybrid._tf import tf
from tfhybrid.keras import (
    AuditCallback,
    HybridLayer,
    SigmoidCrossEntropy,
    keras_loss,
    layer_at_fault,
    to_keras,
    to_sequential,
)
from tfhybrid.layers import Conv2D, Dense, Flatten, Layer, ReLU, Sigmoid

# isort: split
import keras


class Tanh(Layer):
    """tanh(x), with a hand-written backward; ``factor`` plants a constant-factor bug."""

    prefix = "t"

    def __init__(self, factor: float = 1.0, name=None):
        super().__init__(name)
        self.factor = factor

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, params, x):
        out = np.tanh(x)
        return out, out

    def backward(self, dout, cache, need_dx=True):
        return dout * (1 - cache * cache) * self.factor, {}

    def reference(self, params, x):
        return tf.tanh(x)


class Scale(Layer):
    """x * w with one weight per feature: a user layer with a parameter, NumPy forward."""

    prefix = "sc"

    def param_shapes(self, input_shape):
        return {"w": (1, input_shape[-1])}

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, params, x):
        return x * params["w"], (x, params["w"])

    def backward(self, dout, cache, need_dx=True):
        x, w = cache
        return dout * w, {"w": (dout * x).sum(axis=0, keepdims=True)}

    def reference(self, params, x):
        return x * params["w"]


@keras.saving.register_keras_serializable(package="tests")
class SavedTanh(Tanh):
    """Tanh that model.save can store: get_config, registered with Keras."""

    def get_config(self):
        return {"factor": self.factor, "name": self.name}


def small_cnn(seed=0):
    import tfhybrid

    return tfhybrid.Sequential(
        [Conv2D(2, 3), ReLU(), Flatten(), Dense(3)], input_shape=(6, 6, 1), seed=seed
    )


def batch(n=4, shape=(6, 6, 1), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape), dtype=np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return x, y


def tape_grads(model, x, y, loss, sources=None):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(y, model(x, training=True))
    return tape.gradient(value, [x, *(sources or model.trainable_weights)])


# --- the hand-written backward is what Keras uses ----------------------------------------


def mixed_model(factor, seed=0):
    """Keras Dense -> HybridLayer(Tanh) -> Keras Dense, the Dense weights from ``seed``."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(shape=(6,)),
            keras.layers.Dense(5, name="below"),
            HybridLayer(Tanh(factor), name="tanh"),
            keras.layers.Dense(3, name="above"),
        ]
    )


def test_a_factor_2_bug_in_the_backward_doubles_the_keras_dense_gradient_below():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    right, wrong = mixed_model(1.0), mixed_model(2.0)
    wrong.set_weights(right.get_weights())
    below = [right.get_layer("below").kernel], [wrong.get_layer("below").kernel]
    g_right = tape_grads(right, x, y, loss, below[0])[1].numpy()
    g_wrong = tape_grads(wrong, x, y, loss, below[1])[1].numpy()
    assert np.abs(g_right).max() > 0
    np.testing.assert_array_equal(g_wrong, 2 * g_right)  # exactly twice
    # and the correct one is the gradient of Keras's own tanh
    plain = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            keras.layers.Dense(5),
            keras.layers.Activation("tanh"),
            keras.layers.Dense(3),
        ]
    )
    plain.set_weights(right.get_weights())
    g_plain = tape_grads(plain, x, y, loss, [plain.layers[0].kernel])[1].numpy()
    np.testing.assert_allclose(g_right, g_plain, rtol=1e-5, atol=1e-7)


# --- the same training as tfhybrid's own loop ----------------------------------------------


def test_fit_trains_the_articles_network_as_tfhybrids_loop_does_for_20_steps(data_dir):
    import tfhybrid
    from tfhybrid.data import MNIST_FILES, mnist_file, one_hot, read_idx
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import train_step

    names = list(MNIST_FILES)
    images = read_idx(mnist_file(data_dir, names[0]), "images")[:2000]
    labels = read_idx(mnist_file(data_dir, names[1]), "labels")[:2000]
    x = (images.reshape(-1, 28, 28, 1) / np.float32(255)).astype(np.float32)
    y = one_hot(labels)

    net = tfhybrid.build_model("seed-cnn", seed=0)
    model = to_keras(net)
    assert len(model.layers) == 6  # the input and the article's five layers
    model.compile(keras.optimizers.SGD(0.1), keras_loss(net))
    model.fit(x, y, batch_size=100, epochs=1, shuffle=False, verbose=0)

    optimizer = build_optimizer("sgd", 0.1)
    for step in range(20):
        train_step(
            net, optimizer, x[step * 100 : (step + 1) * 100], y[step * 100 : (step + 1) * 100]
        )
    trained = to_sequential(model).params
    for key, value in net.params.items():
        scale = np.abs(value).max()
        diff = np.abs(trained[key] - value).max()
        # float32 rounding: a few units in the last place of the largest entry
        assert diff <= 2e-6 * scale, (key, diff, scale)
        assert not np.array_equal(value, tfhybrid.build_model("seed-cnn").params[key])


# --- eager and graph, Functional and Sequential, mixed layers ------------------------------


def one_step(model, x, y, run_eagerly):
    model.compile(
        keras.optimizers.SGD(0.1),
        keras.losses.CategoricalCrossentropy(from_logits=True),
        run_eagerly=run_eagerly,
    )
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return [w.numpy() for w in model.weights]


def test_eager_and_graph_give_the_same_update():
    x, y = batch()
    net = small_cnn()
    eager = one_step(to_keras(net), x, y, True)
    graph = one_step(to_keras(net), x, y, False)
    assert len(eager) == 4
    for a, b in zip(eager, graph, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(eager[0], net.params["w1"])


def test_a_float64_network_gets_its_hand_written_gradients_in_float64():
    import tfhybrid

    x, y = batch()
    net = tfhybrid.Sequential(
        [Conv2D(2, 3), Sigmoid(), Flatten(), Dense(3)],
        input_shape=(6, 6, 1),
        seed=0,
        dtype=np.float64,
    )
    model = to_keras(net)
    grads = tape_grads(model, x.astype(np.float64), y, keras_loss(net))[1:]
    assert all(g.dtype == tf.float64 for g in grads)
    expected = net.loss_and_gradients(x, y)["grads"]
    for key, grad in zip(net.params, grads, strict=True):
        np.testing.assert_allclose(grad.numpy(), expected[key], rtol=1e-12, atol=1e-15)


def keras_twin(hidden):
    """Keras Conv2D -> ``hidden`` (a Dense-like layer on the flattened features) -> Dense."""
    return [
        keras.layers.Conv2D(2, 3, name="conv"),
        keras.layers.Flatten(),
        hidden,
        keras.layers.Dense(3, name="top"),
    ]


@pytest.mark.parametrize("api", ["functional", "sequential"])
def test_mixed_with_keras_layers_gradients_cross_the_boundary_both_ways(api):
    x, y = batch()
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    keras.utils.set_random_seed(1)
    hybrid = HybridLayer(Dense(4, kernel_init=0.3), seed=3, name="hybrid_dense")
    plain = keras.layers.Dense(4, name="plain_dense")
    models = []
    for middle in (hybrid, plain):
        layers = keras_twin(middle)
        if api == "sequential":
            model = keras.Sequential([keras.Input(shape=(6, 6, 1)), *layers])
        else:
            inputs = keras.Input(shape=(6, 6, 1))
            h = inputs
            for layer in layers:
                h = layer(h)
            model = keras.Model(inputs, h)
        models.append(model)
    # the hybrid Dense's b is [1,4], Keras's bias [4]: same numbers
    models[1].set_weights(
        [
            w.reshape(v.shape)
            for w, v in zip(models[0].get_weights(), models[1].weights, strict=True)
        ]
    )
    for _ in range(2):
        grads = [tape_grads(m, x, y, loss) for m in models]
        for a, b in zip(*grads, strict=True):
            np.testing.assert_allclose(np.reshape(a, -1), np.reshape(b, -1), rtol=1e-5, atol=1e-7)
        for m, g in zip(models, grads, strict=True):
            for w, gw in zip(m.trainable_weights, g[1:], strict=True):
                w.assign_sub(0.5 * gw)
    # the gradient reached the Keras convolution below, and the images' gradient too
    assert np.abs(grads[0][0]).max() > 0 and np.abs(grads[0][1]).max() > 0


def test_a_keyword_call_keeps_the_hand_written_gradient():
    x = tf.constant(np.full((2, 3), 0.5, np.float32))
    layer = HybridLayer(Tanh(factor=3.0))  # the planted factor shows the backward ran
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(inputs=x)
    expected = 3.0 * (1 - np.tanh(0.5) ** 2)
    np.testing.assert_allclose(tape.gradient(out, x).numpy(), expected, rtol=1e-6)


def test_a_user_layer_with_a_parameter_and_numpy_forward_in_fit_graph_and_predict():
    keras.utils.set_random_seed(0)
    x, y = batch()
    model = keras.Sequential(
        [
            keras.Input(shape=(6, 6, 1)),
            keras.layers.Flatten(),
            HybridLayer(Scale(), seed=0),
            keras.layers.Dense(3),
        ]
    )
    before = model.layers[1].weights[0].numpy().copy()
    model.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(model.layers[1].weights[0].numpy(), before)
    assert model.predict(x, verbose=0).shape == (4, 3)
    assert np.isfinite(model.evaluate(x, y, verbose=0))


# --- callbacks, the audit during fit, saving ------------------------------------------------


def test_callbacks_and_the_audit_in_the_epoch_logs(tmp_path):
    x, y = batch(8)
    net = small_cnn()
    model = to_keras(net)
    model.compile(
        keras.optimizers.SGD(0.05), keras.losses.CategoricalCrossentropy(from_logits=True)
    )
    log = tmp_path / "log.csv"
    callbacks = [
        AuditCallback(x[:2], y[:2], every=1),
        keras.callbacks.EarlyStopping(monitor="loss", patience=5),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"), save_weights_only=True),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
        keras.callbacks.CSVLogger(str(log)),
    ]
    history = model.fit(x, y, batch_size=4, epochs=2, callbacks=callbacks, verbose=1)
    assert history.history["audit_ok"] == [1.0, 1.0]
    assert str(history.history["audit"][0]).startswith("ok: ")
    rows = list(csv.DictReader(log.open()))
    assert [r["audit_ok"] for r in rows] == ["1.0", "1.0"]
    assert rows[1]["audit"].startswith("ok: ")
    assert any((tmp_path / "tb").rglob("*tfevents*"))
    again = to_keras(small_cnn(seed=5))
    again.load_weights(str(tmp_path / "best.weights.h5"))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_the_audit_callback_catches_a_planted_bug_and_names_it():
    import tfhybrid

    x, y = batch(4)
    net = tfhybrid.Sequential(
        [Conv2D(2, 3), Tanh(factor=2.0), Flatten(), Dense(3)], input_shape=(6, 6, 1), seed=0
    )
    model = to_keras(net)
    model.compile(
        keras.optimizers.SGD(0.05), keras.losses.CategoricalCrossentropy(from_logits=True)
    )
    audit = AuditCallback(x, y)
    history = model.fit(x, y, epochs=1, callbacks=[audit], verbose=0)
    assert history.history["audit_ok"] == [0.0]
    outcome = str(history.history["audit"][0])
    assert outcome.startswith("mismatch: ")
    assert "off by a constant factor 2" in outcome
    assert "dw1" in audit.reports[0].unexpected
    fault = layer_at_fault(audit.reports[0])
    assert fault.startswith("layer at fault: ") and "Tanh" in fault and fault in outcome


@pytest.mark.parametrize("factor", [1.0, 2.0])
def test_in_a_mixed_model_each_hybrid_layer_is_audited_on_its_own(factor):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    model = mixed_model(factor)
    model.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(from_logits=True))
    audit = AuditCallback(x[:4], y[:4])
    history = model.fit(x, y, batch_size=4, epochs=1, callbacks=[audit], verbose=0)
    outcome = str(history.history["audit"][0])
    if factor == 1.0:
        assert history.history["audit_ok"] == [1.0]
        assert outcome == "ok: the hand-written backward of the hybrid layer matches"
    else:
        assert history.history["audit_ok"] == [0.0]
        assert "layer at fault: tanh: its own backward gives dx off by a constant factor 2" in (
            outcome
        )
    assert list(audit.reports[0]) == ["tanh"]


def test_save_and_load_weights_and_the_whole_model(tmp_path):
    x, _ = batch()
    model = to_keras(small_cnn())
    expected = model.predict(x, verbose=0)
    model.save_weights(str(tmp_path / "w.weights.h5"))
    other = to_keras(small_cnn(seed=1))
    other.load_weights(str(tmp_path / "w.weights.h5"))
    np.testing.assert_array_equal(other.predict(x, verbose=0), expected)

    model.compile(keras.optimizers.SGD(0.1), SigmoidCrossEntropy())
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert isinstance(loaded.layers[1], HybridLayer)
    assert isinstance(loaded.loss, SigmoidCrossEntropy)
    loaded.fit(x, batch()[1], epochs=1, verbose=0)  # the loaded model trains


def test_model_save_of_a_user_layer(tmp_path):
    x, _ = batch(shape=(5,))
    registered = keras.Sequential([keras.Input(shape=(5,)), HybridLayer(SavedTanh(0.5))])
    registered.save(tmp_path / "ok.keras")
    loaded = keras.models.load_model(tmp_path / "ok.keras")
    assert loaded.layers[0].layer.factor == 0.5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), np.tanh(x), rtol=1e-6)

    registry = keras.saving.get_custom_objects()
    key = next(k for k in registry if k.endswith(">SavedTanh"))
    held = registry.pop(key)  # as in a process that never imported the layer's module
    try:
        with pytest.raises(ValueError, match="not registered here.*custom_objects="):
            keras.models.load_model(tmp_path / "ok.keras")
    finally:
        registry[key] = held

    plain = keras.Sequential([keras.Input(shape=(5,)), HybridLayer(Tanh())])
    with pytest.raises(ValueError, match="not its Python code.*get_config.*save_weights"):
        plain.save(tmp_path / "no.keras")


# --- XLA and bad input ---------------------------------------------------------------------


def test_jit_compile_is_turned_off_by_keras_or_refused_in_one_line():
    x, y = batch()
    model = to_keras(small_cnn())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(
            "sgd", keras.losses.CategoricalCrossentropy(from_logits=True), jit_compile=True
        )
    assert model.jit_compile is False
    assert any("jit_compile" in str(w.message) for w in caught)
    model.fit(x, y, epochs=1, verbose=0)

    compiled = tf.function(lambda t: model(t), jit_compile=True)
    with pytest.raises(ValueError, match="cannot be compiled by XLA.*jit_compile=False"):
        compiled(tf.constant(x))


class NoReference(Layer):
    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, params, x):
        return x, None

    def backward(self, dout, cache, need_dx=True):
        return dout, {}


class WrongShape(Tanh):
    def backward(self, dout, cache, need_dx=True):
        return dout[:, :1], {}


def test_bad_input_gets_one_clear_error():
    import tfhybrid

    with pytest.raises(TypeError, match="has no reference"):
        HybridLayer(NoReference())
    with pytest.raises(TypeError, match="wraps a tfhybrid.layers.Layer"):
        HybridLayer(keras.layers.Dense(3))

    inputs = keras.Input(shape=(None, None, 1))
    with pytest.raises(ValueError, match="needs every input dimension.*keras.Input"):
        HybridLayer(Conv2D(2, 3))(inputs)

    with pytest.raises(TypeError, match="float32 or float64.*mixed_float16"):
        HybridLayer(Sigmoid(), dtype="mixed_float16")(keras.Input(shape=(3,)))
    with pytest.raises(TypeError, match="float32 or float64.*float16"):
        HybridLayer(Sigmoid(), dtype="float16")(keras.Input(shape=(3,)))
    with pytest.raises(TypeError, match="real-valued inputs, got string"):
        HybridLayer(Sigmoid())(tf.constant([["a", "b"]]))

    with pytest.raises(TypeError, match="converts a tfhybrid.Sequential"):
        to_keras(keras.Sequential())
    net = tfhybrid.Sequential([Flatten(), NoReference(), Dense(3)], input_shape=(2, 2, 1), seed=0)
    with pytest.raises(
        TypeError, match=r"cannot convert sequential: layer 1 \(NoReference\) has no reference"
    ):
        to_keras(net)

    with pytest.raises(ValueError, match="params must have keys"):
        HybridLayer(Dense(3), params={"w": np.zeros((4, 3))})(keras.Input(shape=(4,)))

    broken = keras.Sequential([keras.Input(shape=(3,)), HybridLayer(WrongShape())])
    x = tf.constant(np.ones((2, 3), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = broken(x)
    with pytest.raises(
        Exception, match=r"backward returned dx of shape \[2, 1\], expected \[2, 3\]"
    ):
        tape.gradient(out, x)

    with pytest.raises(ValueError, match="every must be an integer"):
        AuditCallback(np.zeros((1, 3)), np.zeros((1, 2)), every=0)
    plain = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(3)])
    plain.compile("sgd", "mse")
    with pytest.raises(ValueError, match="has none; wrap your tfhybrid layers with HybridLayer"):
        plain.fit(
            np.zeros((2, 6)),
            np.zeros((2, 3)),
            callbacks=[AuditCallback(np.zeros((1, 6)), np.zeros((1, 3)))],
            verbose=0,
        )
