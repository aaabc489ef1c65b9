"""tfhybrid.keras with layers that take training, state or rng: batch norm's running
statistics as non-trainable Keras weights, dropout's draw a function of its step, and the
round trips through to_keras, to_sequential and model.save. Tiny shapes, a few steps."""

from __future__ import annotations

import numpy as np
import pytest

from tfhybrid._tf import tf
from tfhybrid.keras import AuditCallback, HybridLayer, keras_loss, to_keras, to_sequential
from tfhybrid.layers import (
    BatchNormalization,
    Dense,
    Dropout,
    LayerNormalization,
    LeakyReLU,
    ReLU,
    Tanh,
)
from tfhybrid.layers.base import layer_rng
from tfhybrid.ops.dropout import dropout_mask

# isort: split
import keras

F64 = "float64"


def exact(x: np.ndarray) -> np.ndarray:
    """float64 values that float32 holds exactly: fit hands the model float32 (Keras casts
    float64 arrays to its floatx), which the float64 layers then take as they are."""
    return x.astype(np.float32).astype(np.float64)


def images(n=4, shape=(3, 3, 2), seed=0):
    rng = np.random.default_rng(seed)
    return exact(rng.standard_normal((n, *shape)) * 2 + 1)  # mean 1, var 4: far from the start


def bn_model(momentum=0.9, functional=True, shape=(3, 3, 2)):
    """Input -> HybridLayer(BatchNormalization) -> Flatten -> Dense(3), in float64."""
    keras.utils.set_random_seed(0)
    bn = HybridLayer(BatchNormalization(momentum), name="bn", dtype=F64)
    top = [keras.layers.Flatten(dtype=F64), keras.layers.Dense(3, name="top", dtype=F64)]
    inputs = keras.Input(shape=shape, dtype=F64)
    if not functional:
        return keras.Sequential([inputs, bn, *top]), bn
    h = bn(inputs)
    for layer in top:
        h = layer(h)
    return keras.Model(inputs, h), bn


def numpy_bn(layer, params, state, x, training):
    """BatchNormalization's NumPy forward, on a copy of ``state``: (out, the state after)."""
    state = {k: np.array(v) for k, v in state.items()}
    out, _ = layer.forward(params, x, training=training, state=state)
    return out, state


# --- batch norm: modes, running statistics, gradients ---------------------------------------


def test_batch_norm_follows_keras_training_argument_and_reads_running_stats_in_inference():
    model, bn = bn_model()
    x = images()
    layer = bn.layer
    params = bn.params()
    start = bn.state()
    np.testing.assert_array_equal(start["running_mean"], np.zeros(2))
    np.testing.assert_array_equal(start["running_var"], np.ones(2))

    out = bn(tf.constant(x), training=True).numpy()
    expected, after = numpy_bn(layer, params, start, x, training=True)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    for key, value in bn.state().items():  # the training call stored the forward's state
        np.testing.assert_allclose(value, after[key], rtol=1e-12)
        assert not np.allclose(value, start[key])

    state = bn.state()
    for training in (False, None):  # None (a call outside fit) is inference, as in Keras
        out = bn(tf.constant(x), training=training).numpy()
        expected, _ = numpy_bn(layer, params, state, x, training=False)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
        mean, var = state["running_mean"], state["running_var"]
        np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-12)
    model.predict(x, verbose=0)
    for key, value in bn.state().items():  # inference only reads
        np.testing.assert_array_equal(value, state[key])


@pytest.mark.parametrize("functional", [True, False])
def test_fit_moves_the_running_stats_by_the_momentum_rule_on_the_batches_the_layer_saw(
    functional,
):
    model, bn = bn_model(momentum=0.8, functional=functional)
    x = images(12)
    y = np.eye(3)[np.arange(12) % 3]
    model.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(True))
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # 3 steps

    mean, var = np.zeros(2), np.ones(2)
    for step in range(3):
        seen = x[4 * step : 4 * (step + 1)]  # the BN is right after the input
        mean = 0.8 * mean + 0.2 * seen.mean(axis=(0, 1, 2))
        var = 0.8 * var + 0.2 * seen.var(axis=(0, 1, 2))  # biased, over N, H and W
    state = bn.state()
    np.testing.assert_allclose(state["running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(state["running_var"], var, rtol=1e-12)

    def paths(weights):  # a Sequential puts its own name in front
        return ["/".join(w.path.split("/")[-2:]) for w in weights]

    assert paths(model.non_trainable_weights) == ["bn/running_mean", "bn/running_var"]
    assert paths(model.trainable_weights)[:2] == ["bn/gamma", "bn/beta"]
    assert not np.allclose(bn.params()["gamma"], 1)  # the parameters trained too
    model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(bn.state()["running_mean"], state["running_mean"])


@pytest.mark.parametrize("training", [True, False])
def test_the_gradient_of_a_hybrid_batch_norm_is_the_tape_of_its_reference(training):
    model, bn = bn_model()
    x = images()
    rng = np.random.default_rng(1)
    bn.set_weights(
        [rng.random(2) + 0.5, rng.standard_normal(2), rng.standard_normal(2), rng.random(2) + 1]
    )
    top = model.get_layer("top")
    dy = rng.standard_normal((4, 3))
    layer, state = bn.layer, bn.state()

    tx = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        value = tf.reduce_sum(model(tx, training=training) * dy)
    hybrid = tape.gradient(value, [tx, *bn.trainable_weights, top.kernel])

    gamma, beta = (tf.Variable(w.numpy()) for w in bn.trainable_weights)
    kernel = tf.Variable(top.kernel.numpy())
    with tf.GradientTape() as tape:
        tape.watch(tx)
        h = layer.reference({"gamma": gamma, "beta": beta}, tx, training=training, state=state)
        logits = tf.reshape(h, (4, -1)) @ kernel + top.bias
        value = tf.reduce_sum(logits * dy)
    pure = tape.gradient(value, [tx, gamma, beta, kernel])
    assert all(g.dtype == tf.float64 for g in hybrid)
    for mine, theirs in zip(hybrid, pure, strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-10, atol=1e-12)


# --- dropout: a draw per step, the same in the forward and the backward -----------------------


def dropout_grad(layer, x, dy, training, graph=False):
    def run(tx):
        with tf.GradientTape() as tape:
            tape.watch(tx)
            out = layer(tx, training=training)
            value = tf.reduce_sum(out * dy)
        return out, tape.gradient(value, tx)

    run = tf.function(run) if graph else run
    out, grad = run(tf.constant(x))
    return out.numpy(), grad.numpy()


@pytest.mark.parametrize("rule", ["inverted", "book"])
@pytest.mark.parametrize("graph", [False, True])
def test_dropout_draws_a_mask_per_step_and_its_backward_uses_the_same_one(rule, graph):
    rng = np.random.default_rng(0)
    x = rng.random((3, 8)) + 0.5  # nonzero: a zero output is a dropped unit
    dy = rng.standard_normal((3, 8))
    layer = HybridLayer(Dropout(0.5, rule=rule), seed=7, dtype=F64)
    scale = 2.0 if rule == "inverted" else 1.0

    assert layer.step is None  # not built yet
    masks = []
    for step in range(2):
        out, grad = dropout_grad(layer, x, dy, training=True, graph=graph)
        assert layer.step == step + 1
        mask = out != 0
        assert 0 < mask.sum() < mask.size
        np.testing.assert_array_equal(mask, dropout_mask(layer_rng(7, step, 0), x.shape, 0.5))
        np.testing.assert_allclose(out, x * mask * scale, rtol=1e-15)
        np.testing.assert_allclose(grad, dy * mask * scale, rtol=1e-15)
        masks.append(mask)
    assert layer.step == 2
    assert not np.array_equal(*masks)  # each call draws anew

    layer._step_var.assign(0)  # the draw is a function of the step alone
    out, _ = dropout_grad(layer, x, dy, training=True, graph=graph)
    np.testing.assert_array_equal(out != 0, masks[0])


@pytest.mark.parametrize("rule", ["inverted", "book"])
def test_dropout_in_inference_is_the_identity_or_scales_by_the_keep_probability(rule):
    x = np.random.default_rng(0).random((3, 8))
    layer = HybridLayer(Dropout(0.25, rule=rule), seed=1, dtype=F64)
    expected = x if rule == "inverted" else x * 0.75
    for training in (False, None):
        out, grad = dropout_grad(layer, x, np.ones_like(x), training)
        np.testing.assert_allclose(out, expected, rtol=1e-15)
        np.testing.assert_allclose(grad, np.ones_like(x) * (expected / x), rtol=1e-15)
    assert layer.step == 0  # inference draws nothing and moves no step


# --- to_keras / to_sequential, saving, the audit -------------------------------------------


def small_net(seed=0):
    import tfhybrid

    return tfhybrid.Sequential(
        [Dense(4), BatchNormalization(momentum=0.7), ReLU(), Dropout(0.5), Dense(3)],
        input_shape=(5,),
        seed=seed,
        dtype=np.float64,
    )


def test_to_keras_and_back_keep_the_state_and_fit_draws_what_tfhybrids_loop_draws():
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import train_step

    rng = np.random.default_rng(0)
    x = exact(rng.standard_normal((6, 5)))
    y = np.eye(3)[rng.integers(0, 3, 6)]
    net = small_net()
    net.state = {k: rng.random(v.shape) + 0.5 for k, v in net.state.items()}
    net.step = 5
    model = to_keras(net)
    bn = model.get_layer(net.names[1])
    assert sorted(w.path for w in model.non_trainable_weights) == sorted(
        [f"{bn.name}/running_mean", f"{bn.name}/running_var", f"{net.names[3]}/step"]
    )
    for local, value in bn.state().items():
        np.testing.assert_array_equal(value, net.state[net.state_keys[1][local]])
    assert model.get_layer(net.names[3]).step == 5

    back = to_sequential(model)
    for key, value in net.state.items():
        np.testing.assert_array_equal(back.state[key], value)
    assert (back.seed, back.step) == (net.seed, net.step)

    model.compile(keras.optimizers.SGD(0.1), keras_loss(net))
    model.fit(x, y, batch_size=6, epochs=2, shuffle=False, verbose=0)
    optimizer = build_optimizer("sgd", float(np.float32(0.1)))  # Keras holds lr in float32
    for _ in range(2):
        train_step(net, optimizer, x, y)  # step 5 and step 6's masks, as fit drew
    trained = to_sequential(model)
    assert trained.step == net.step == 7
    for key, value in net.state.items():  # float64 rounding apart: the same two steps
        np.testing.assert_allclose(trained.state[key], value, rtol=1e-13)
        assert not np.allclose(value, back.state[key])
    for key, value in net.params.items():
        np.testing.assert_allclose(trained.params[key], value, rtol=1e-13, atol=1e-15)


def test_model_save_and_load_keep_the_new_layers_their_state_and_step(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6))
    y = np.eye(3)[[0, 1, 2, 0]]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            HybridLayer(BatchNormalization(momentum=0.8, epsilon=1e-3), name="bn"),
            HybridLayer(LayerNormalization(epsilon=1e-4), name="ln"),
            HybridLayer(Tanh(), name="tanh"),
            HybridLayer(LeakyReLU(0.2), name="leaky"),
            HybridLayer(Dropout(0.3, rule="book"), seed=4, name="drop"),
            keras.layers.Dense(3),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(True))
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")

    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    layers = {lyr.name: lyr.layer for lyr in loaded.layers if isinstance(lyr, HybridLayer)}
    assert (layers["bn"].momentum, layers["bn"].epsilon) == (0.8, 1e-3)
    assert layers["ln"].epsilon == 1e-4
    assert isinstance(layers["tanh"], Tanh) and layers["leaky"].alpha == 0.2
    assert (layers["drop"].rate, layers["drop"].rule) == (0.3, "book")
    for name in ("bn", "drop"):
        before, after = model.get_layer(name), loaded.get_layer(name)
        assert (after.seed, after.step) == (before.seed, before.step)
        for key, value in before.state().items():
            np.testing.assert_array_equal(after.state()[key], value)
    assert loaded.get_layer("drop").step == 2
    loaded.fit(x, y, batch_size=2, epochs=1, verbose=0)  # the loaded model trains on
    assert loaded.get_layer("drop").step == 4


def test_the_audit_callback_checks_stateful_and_random_layers_in_training_mode():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5))
    y = np.eye(3)[rng.integers(0, 3, 6)]
    chain = to_keras(small_net())
    keras.utils.set_random_seed(0)
    mixed = keras.Sequential(
        [
            keras.Input(shape=(5,), dtype=F64),
            keras.layers.Dense(4, dtype=F64),
            HybridLayer(BatchNormalization(), name="bn", dtype=F64),
            HybridLayer(Dropout(0.5), seed=0, name="drop", dtype=F64),
            keras.layers.Dense(3, dtype=F64),
        ]
    )
    for model in (chain, mixed):
        model.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(True))
        audit = AuditCallback(x[:4], y[:4], fd_samples=2)
        history = model.fit(x, y, batch_size=3, epochs=1, callbacks=[audit], verbose=0)
        assert history.history["audit_ok"] == [1.0], str(history.history["audit"][0])
    assert list(audit.reports[0]) == ["bn", "drop"]
    assert mixed.get_layer("drop").step == 2  # the two training steps; the audit drew none
    assert "training mode" in audit.reports[0]["bn"].op


def test_state_of_the_wrong_names_or_shapes_is_refused():
    with pytest.raises(ValueError, match="state must have keys.*running_mean.*running_var"):
        HybridLayer(BatchNormalization(), state={"mean": np.zeros(3)})(keras.Input(shape=(3,)))
    bad = {"running_mean": np.zeros(2), "running_var": np.ones(3)}
    with pytest.raises(ValueError, match="state running_mean must have shape"):
        HybridLayer(BatchNormalization(), state=bad)(keras.Input(shape=(3,)))


def test_the_docs_example_runs_and_prints_what_the_docs_show(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "keras.md").read_text()
    section = text[text.index("## Training mode, state and random draws") :]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, flags=re.S)[:2]
    exec(code, {})
    assert capsys.readouterr().out.strip() == shown.strip()
