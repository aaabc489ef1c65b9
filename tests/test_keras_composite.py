"""tfhybrid.keras with composite layers: each Residual or Branches one HybridLayer whose
gradient is its hand-written backward (fork and join included), a layer at two top-level
places one HybridLayer called twice, and the round trips through fit, carry_weights,
to_sequential and model.save. Tiny shapes (8x8x1 images, 4 of them), float64, few steps."""

from __future__ import annotations

import numpy as np
import pytest

import tfhybrid
from tfhybrid._tf import tf
from tfhybrid.keras import (
    HybridLayer,
    carry_weights,
    hybrid_chain,
    keras_loss,
    keras_weight_name,
    tfhybrid_weight_name,
    to_keras,
    to_sequential,
)
from tfhybrid.layers import (
    BatchNormalization,
    Branches,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    ReLU,
    Residual,
)

# isort: split
import keras


def exact(x: np.ndarray) -> np.ndarray:
    """float64 values that float32 holds exactly: fit rounds float64 arrays to Keras's
    floatx (float32) before the float64 model sees them."""
    return x.astype(np.float32).astype(np.float64)


def forked_net(seed: int = 1) -> tfhybrid.Sequential:
    """images [N,8,8,1] -> logits [N,5]: a convolution used at two top-level places, a
    residual block (batch norm, one convolution used twice inside) with a projection
    shortcut, branches joined by concatenation (one of them dropout), in float64."""
    shared = Conv2D(3, 3, padding=1)
    twice = Conv2D(4, 3, padding=1)
    block = [Conv2D(4, 3, stride=2, padding=1), BatchNormalization(), ReLU(), twice, twice]
    return tfhybrid.Sequential(
        [
            Conv2D(3, 3, padding=1),
            shared,
            shared,
            Residual(block, shortcut=[Conv2D(4, 1, stride=2)]),
            Branches({"a": [Conv2D(2, 1)], "b": [Dropout(0.25)]}),
            Flatten(),
            Dense(5),
        ],
        input_shape=(8, 8, 1),
        dtype=np.float64,
        seed=seed,
    )


def batch(n: int = 4):
    rng = np.random.default_rng(0)
    return exact(rng.standard_normal((n, 8, 8, 1))), np.eye(5)[rng.integers(0, 5, n)]


def with_state(net: tfhybrid.Sequential) -> tfhybrid.Sequential:
    """The network with running statistics far from their start, and step 3."""
    rng = np.random.default_rng(1)
    net.state = {k: rng.random(v.shape) + 0.5 for k, v in net.state.items()}
    net.step = 3
    return net


def network_name(model, net, weight) -> str:
    """The network's name (w3, running_mean4) of a Keras weight of to_keras(net)."""
    hybrid = model.get_layer(weight.path.split("/")[0])
    index = net.names.index(hybrid.name)
    local = tfhybrid_weight_name(weight.name)
    return {**net.param_keys[index], **net.state_keys[index]}[local]


def test_a_residual_network_gives_the_sequentials_logits_gradients_and_state():
    net = with_state(forked_net())
    model = to_keras(net)
    hybrids = [lyr for lyr in model.layers if isinstance(lyr, HybridLayer)]
    assert [h.name for h in hybrids] == ["z1", "z2", "res6", "br7", "flat", "z8"]
    assert isinstance(model.get_layer("res6").layer, Residual)
    chain = hybrid_chain(model)
    # net.names: z1, z2, z2_ (the second place of z2), res6, ...; one HybridLayer for both.
    assert [h.name for h in chain] == [n.rstrip("_") for n in net.names]
    assert chain[1] is chain[2]
    assert not chain[0].input_gradient and chain[1].input_gradient
    names = sorted(network_name(model, net, w) for w in model.trainable_weights)
    assert names == sorted(net.params)  # each once: w2 at two places, w5 twice inside
    state = {w.path for w in model.non_trainable_weights}
    assert state == {"res6/block.1.running_mean", "res6/block.1.running_var", "br7/step"}
    for weight in model.weights:
        if weight.name != "step":
            expected = {**net.params, **net.state}[network_name(model, net, weight)]
            np.testing.assert_array_equal(weight.numpy(), expected)
    assert model.get_layer("br7").step == 3

    x, y = batch()
    np.testing.assert_allclose(model(x).numpy(), net.logits(x), rtol=1e-12, atol=1e-13)

    # A training call of both: batch statistics, step 3's dropout mask in branch b.
    with tf.GradientTape() as tape:
        loss = keras_loss(net)(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    result = net.loss_and_gradients(x, y)
    np.testing.assert_allclose(float(loss), result["loss"], rtol=1e-12)
    for weight, grad in zip(model.trainable_weights, grads, strict=True):
        key = network_name(model, net, weight)
        np.testing.assert_allclose(
            grad.numpy(), result["grads"][key], rtol=1e-10, atol=1e-13, err_msg=key
        )
    for weight in model.non_trainable_weights:  # the running statistics moved alike
        if weight.name != "step":
            key = network_name(model, net, weight)
            np.testing.assert_allclose(weight.numpy(), net.state[key], rtol=1e-12)
    assert model.get_layer("br7").step == net.step == 4


def test_fit_trains_as_tfhybrids_loop_and_the_weights_carry_back():
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import train_step

    x, y = batch()
    net = with_state(forked_net())
    model = to_keras(net)
    model.compile(keras.optimizers.SGD(0.1), keras_loss(net))
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)  # 2 steps
    optimizer = build_optimizer("sgd", float(np.float32(0.1)))  # Keras holds lr in float32
    for _ in range(2):
        train_step(net, optimizer, x, y)  # step 3 and step 4's masks, as fit drew

    back = forked_net(seed=2)  # other weights, the same layers
    carry_weights(back, hybrid_chain(model))
    logits = model.predict(x, verbose=0)
    np.testing.assert_allclose(back.logits(x), logits, rtol=1e-12, atol=1e-13)
    assert back.step == net.step == 5
    for key, value in net.params.items():  # float64 rounding apart: the same two steps
        np.testing.assert_allclose(back.params[key], value, rtol=1e-11, atol=1e-13)
    for key, value in net.state.items():
        np.testing.assert_allclose(back.state[key], value, rtol=1e-12)

    again = to_sequential(model)
    assert sorted(again.params) == sorted(net.params)
    assert again.layers[1] is again.layers[2]  # still one layer at two places
    block = again.layers[3].paths["block"]
    assert block[3] is block[4]
    np.testing.assert_allclose(again.logits(x), logits, rtol=1e-12, atol=1e-13)


def test_save_and_load_keep_the_tree_the_sharing_the_state_and_the_step(tmp_path):
    x, y = batch()
    model = to_keras(with_state(forked_net()))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")

    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    chain = hybrid_chain(loaded)
    assert chain is not None and chain[1] is chain[2]
    residual = loaded.get_layer("res6").layer
    assert isinstance(residual, Residual)
    block = residual.paths["block"]
    assert block[3] is block[4]  # the convolution used twice inside: one object again
    assert loaded.get_layer("br7").layer.join == "concat"
    assert loaded.get_layer("br7").step == 3
    for before, after in zip(model.weights, loaded.weights, strict=True):
        assert before.path == after.path
        np.testing.assert_array_equal(after.numpy(), before.numpy())
    loaded.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(True))
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)  # the loaded model trains on
    assert loaded.get_layer("br7").step == 4


def test_weight_names_keras_would_refuse_are_escaped_reversibly():
    for name in ("w", "running_mean", "block.0.w", "block.2.shortcut.0.b"):
        assert keras_weight_name(name) == name  # every built-in and composite name
    for name in ("a/b", "x-y", "w[0]", "é/-2f-"):
        escaped = keras_weight_name(name)
        assert "/" not in escaped and tfhybrid_weight_name(escaped) == name
        keras.Variable(np.zeros(2), name=escaped)  # Keras takes it


def test_what_has_no_honest_keras_form_is_refused_in_one_line():
    conv = Conv2D(2, 3, padding=1)
    inside = tfhybrid.Sequential(
        [conv, Residual([conv, ReLU()]), Flatten(), Dense(3)], input_shape=(4, 4, 2)
    )
    shared = r"layer 0 \(Conv2D\) and layer 1 \(Residual\) share w1, b1"
    with pytest.raises(ValueError, match=shared):
        to_keras(inside)

    drop = Dropout(0.5)
    twice = tfhybrid.Sequential([Dense(4), drop, Dense(4), drop, Dense(3)], input_shape=(3,))
    with pytest.raises(ValueError, match="layers 1 and 3 are one Dropout that draws"):
        to_keras(twice)

    class NoReference(Layer):
        def forward(self, params, x):
            return x, None

        def backward(self, dout, cache, need_dx=True):
            return dout, {}

    with pytest.raises(TypeError, match=r"Residual > block\.1 \(NoReference\) has no reference"):
        HybridLayer(Residual([Dense(3), NoReference()]))

    class Halve(NoReference):
        def reference(self, params, x):
            return x / 2

    with pytest.raises(ValueError, match=r"Halve \(at block\.1\) is your own layer"):
        HybridLayer(Residual([Dense(3), Halve()]), name="res").get_config()  # model.save

    hybrid = HybridLayer(Residual([Dense(3)]))
    hybrid(keras.Input(shape=(3,)))
    with pytest.raises(ValueError, match=r"built for inputs \[N,3\] and is called on \[N,4\]"):
        hybrid(keras.Input(shape=(4,)))


def test_the_audit_callback_checks_composites_in_a_chain_and_in_a_mixed_model():
    from tfhybrid.keras import AuditCallback

    x, y = batch()
    chain = to_keras(forked_net())
    keras.utils.set_random_seed(0)
    residual = Residual([Dense(4), BatchNormalization(), ReLU()], shortcut=[Dense(4)])
    mixed = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1), dtype="float64"),
            keras.layers.Flatten(dtype="float64"),
            keras.layers.Dense(4, dtype="float64"),
            HybridLayer(residual, name="res", dtype="float64"),
            keras.layers.Dense(5, dtype="float64"),
        ]
    )
    for model in (chain, mixed):
        model.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(True))
        audit = AuditCallback(x, y, fd_samples=2)
        history = model.fit(x, y, batch_size=4, epochs=1, callbacks=[audit], verbose=0)
        assert history.history["audit_ok"] == [1.0], str(history.history["audit"][0])
    # Checked on its own, a composite's parameters are named by their paths, and each
    # layer inside it is checked too (its join with them).
    report = audit.reports[0]["res"]
    assert set(report.verdicts) >= {"x", "block.0.w", "shortcut.0.b"}
    assert [p.describe() for p in report.parts] == [
        "Residual > shortcut > 0 (Dense)",
        "Residual > block > 2 (ReLU)",
        "Residual > block > 1 (BatchNormalization)",
        "Residual > block > 0 (Dense)",
    ]


class Forgetful(Residual):
    """Its backward returns the block's dx alone: the shortcut's is not added at the fork."""

    def backward(self, dout, cache, need_dx=True):
        dx_block, grads = self.path_backward("block", dout, cache[0])
        return dx_block, grads


def test_the_audit_callback_names_the_join_of_a_residual_that_forgets_the_shortcut():
    from tfhybrid.audit.forks import NOT_ADDED
    from tfhybrid.keras import AuditCallback

    x, y = batch()
    keras.utils.set_random_seed(0)
    mixed = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1), dtype="float64"),
            keras.layers.Flatten(dtype="float64"),
            keras.layers.Dense(4, dtype="float64"),
            HybridLayer(Forgetful([Dense(4), ReLU()]), name="res", dtype="float64"),
            keras.layers.Dense(5, dtype="float64"),
        ]
    )
    mixed.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(True))
    audit = AuditCallback(x, y, fd_samples=2)
    history = mixed.fit(x, y, batch_size=4, epochs=1, callbacks=[audit], verbose=0)
    assert history.history["audit_ok"] == [0.0]
    outcome = str(history.history["audit"][0])
    assert outcome.startswith(
        "mismatch in res; layer at fault: res (Forgetful): its own backward gives dx wrong; "
        "every layer inside matches on its own, so the fault is in its join"
    ), outcome
    assert (
        f"likely cause: dx equals path block's gradient alone: {NOT_ADDED} "
        "(the identity path shortcut's)"
    ) in outcome
    report = audit.reports[0]["res"]
    assert {p.status for p in report.parts} == {"ok"}  # the layers inside match
    assert report.to_dict()["layer_at_fault"] == "Forgetful"


def test_the_docs_example_runs_and_prints_what_the_docs_show(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "keras.md").read_text()
    section = text[text.index("## Residual networks and branches") :]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, flags=re.S)[:2]
    exec(code, {})
    printed = capsys.readouterr().out.strip().splitlines()

    def rows(lines):  # (layer, output shape, params) of each row of the summary's table
        cells = [[c.strip() for c in line.split("│")[1:4]] for line in lines]
        return [c for c in cells if len(c) == 3 and c[0] not in ("", "Layer (type)")]

    assert rows(printed) == rows(shown.splitlines())
    assert printed[-1] == shown.strip().splitlines()[-1]  # the composite's weight names
    for line in shown.splitlines():
        if "params:" in line:
            assert line in printed
