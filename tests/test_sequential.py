"""The layer framework: per-example gradients against a per-example tape, the fused forward
against the plain op pairs, a user's own layer (the one in docs/layers.md), and errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.catalog import MODEL_NAMES, build_model
from tfhybrid.data import one_hot
from tfhybrid.layers import Conv2D, Dense, Flatten, Layer, MaxPool2D
from tfhybrid.models.sequential import Sequential

RTOL = 1e-10  # float64, the same maths in another summation order
DOCS = Path(__file__).resolve().parent.parent / "docs" / "layers.md"
EXACT = {"seed-cnn": {"bias_grad": "exact"}}


def batch(seed: int, n: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1)).astype(dtype), one_hot(rng.integers(0, 10, n), dtype)


def tape_grads(net, x, y) -> dict[str, np.ndarray]:
    variables = {k: tf.Variable(v) for k, v in net.params.items()}
    with tf.GradientTape() as tape:
        loss, _ = net.reference_forward(variables, tf.constant(x), tf.constant(y))
    return {k: g.numpy() for k, g in tape.gradient(loss, variables).items()}


# Networks whose samples are independent and whose forward draws nothing: a one-sample
# tape is each sample's gradient (batch norm couples the samples; dropout's draw is batch-wide).
INDEPENDENT = [
    name
    for name in MODEL_NAMES
    if not any(layer.couples_batch or layer.random for layer in build_model(name).layers)
]


@pytest.mark.parametrize("name", INDEPENDENT)
def test_per_example_gradients_match_a_per_example_tape(name):
    n = 4
    x, y = batch(7, n)
    net = build_model(name, seed=2, dtype=np.float64, **EXACT.get(name, {}))
    result = net.loss_and_gradients(x, y, per_example=True)
    per = result["per_example_grads"]
    assert set(per) == set(net.params)
    for i in range(n):
        # The loss is a mean over the batch: sample i's share is its own gradient / N.
        alone = tape_grads(net, x[i : i + 1], y[i : i + 1])
        for key, value in alone.items():
            assert per[key].shape == (n, *net.params[key].shape), key
            assert_close(f"{name} d{key} of sample {i}", per[key][i], value / n, RTOL)
    whole = net.loss_and_gradients(x, y)["grads"]
    for key, value in whole.items():
        assert_close(f"{name} sum of per-example d{key}", per[key].sum(axis=0), value, RTOL)
        assert_close(f"{name} d{key} in per-example mode", result["grads"][key], value, RTOL)


def test_per_example_keeps_the_article_bias_rule():
    x, y = batch(3, 3)
    seed_rule = build_model("seed-cnn", seed=1, dtype=np.float64)
    exact = build_model("seed-cnn", seed=1, dtype=np.float64, bias_grad="exact")
    ratio = (
        seed_rule.loss_and_gradients(x, y, per_example=True)["per_example_grads"]["b1"]
        / exact.loss_and_gradients(x, y, per_example=True)["per_example_grads"]["b1"]
    )
    np.testing.assert_allclose(ratio, 1 / 400, rtol=1e-12)


def unfused_gradients(net, x, y):
    """The network as a plain chain of op pairs: each layer's own forward, no fusion (with
    the mode, state and draw the network hands it)."""
    h, caches = x, []
    for index, layer in enumerate(net.layers):
        h, cache = layer.forward(net.layer_params(index), h, **net.call_options(index))
        caches.append(cache)
    logits = h
    if net.loss == "sigmoid_cross_entropy":
        from tfhybrid.ops.losses import sigmoid_cross_entropy as loss_fn
    else:
        from tfhybrid.ops.losses import softmax_cross_entropy as loss_fn
    _, dout = loss_fn(logits, y)
    grads = {}
    for index in range(len(net.layers) - 1, net.first_parameter_layer() - 1, -1):
        dout, local = net.layers[index].backward(dout, caches[index], True)
        grads.update({net.param_keys[index][k]: v for k, v in local.items()})
    return logits, grads


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fused_forward_gives_the_op_pairs_gradients(name):
    x, y = batch(5, 3)
    x[:, :4] = 0.0  # flat rows: ties in every max-pool window there
    net = build_model(name, seed=4, dtype=np.float64)
    with net.replaying(0):  # one draw for both
        fused = net.loss_and_gradients(x, y)
        logits, plain = unfused_gradients(net, x, y)
    assert_close(f"{name} logits", fused["logits"], logits, RTOL)
    for key, value in plain.items():
        assert_close(f"{name} d{key} fused vs op pairs", fused["grads"][key], value, RTOL)


def test_convolutional_networks_run_their_forward_as_one_call():
    for name in INDEPENDENT:
        net = build_model(name)
        spans = [(run.start, run.stop) for run in net.runs]
        # Without a convolution the forward stays in NumPy, where a small network is faster.
        assert spans == ([] if name == "two-layer-net" else [(0, len(net.layers))]), name


def docs_code_blocks(heading: str) -> list[str]:
    text = DOCS.read_text()
    section = text[text.index(heading) :]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)[:2]


def test_the_docs_tanh_layer_trains_and_passes_the_audit():
    layer_code, usage_code = docs_code_blocks("## A layer of your own")
    x, y = batch(11, 6, np.float32)
    space = {"x": x, "y": y}
    exec(layer_code, space)
    exec(usage_code, space)
    net, report = space["net"], space["report"]
    assert net.names == ["z1", "t1", "flat", "z2"]
    assert report.ok, report.mismatches
    assert {t.name for t in report.tensors} >= {"dw1", "db1", "dt1", "dz1", "dw2"}
    fresh = Sequential([Conv2D(4, 3), space["Tanh"](), Flatten(), Dense(10)], seed=0)
    assert net.loss_and_gradients(x, y)["loss"] < fresh.loss_and_gradients(x, y)["loss"]
    assert len(net.runs) == 1  # Conv2D compiled; Tanh in NumPy, and Flatten, Dense after it too


class Scale(Layer):
    """x * g with one learned scalar g, and no per-example backward."""

    def param_shapes(self, input_shape):
        return {"g": (1,)}

    def forward(self, params, x):
        return x * params["g"], (x, params["g"])

    def backward(self, dout, cache, need_dx=True):
        x, g = cache
        return dout * g, {"g": np.array([(dout * x).sum()])}

    def reference(self, params, x):
        return x * params["g"]


def test_a_user_layer_with_parameters_is_numbered_and_checked():
    net = Sequential([Flatten(), Dense(5), Scale(), Dense(10)], seed=1, dtype=np.float64)
    assert list(net.params) == ["w1", "b1", "g2", "w3", "b3"]
    x, y = batch(2, 3)
    grads = net.loss_and_gradients(x, y)["grads"]
    for key, value in tape_grads(net, x, y).items():
        assert_close(f"d{key}", grads[key], value, RTOL)
    with pytest.raises(
        NotImplementedError, match="Scale has parameters but no backward_per_example"
    ):
        net.loss_and_gradients(x, y, per_example=True)


def test_bad_networks_are_refused_with_what_was_received():
    with pytest.raises(ValueError, match="put a Flatten before it"):
        Sequential([Conv2D(2, 3), Dense(10)])
    with pytest.raises(ValueError, match="does not fit input 4x4"):
        Sequential([Conv2D(2, 5), Flatten(), Dense(10)], input_shape=(4, 4, 1))
    with pytest.raises(ValueError, match="loss must be one of"):
        Sequential([Flatten(), Dense(10)], loss="hinge")
    with pytest.raises(ValueError, match="Layer instances"):
        Sequential([Flatten(), "dense"])
    with pytest.raises(ValueError, match="no parameters"):
        Sequential([Flatten()])
    dense = Dense(5)  # used twice, it is shared: both uses need one input shape
    with pytest.raises(ValueError, match=r"input \[N,784\] and at layer 2 with input \[N,5\]"):
        Sequential([Flatten(), dense, dense, Dense(10)])
    with pytest.raises(ValueError, match="pool_ties must be one of"):
        MaxPool2D(2, ties="some")
    net = Sequential([Flatten(), Dense(10)])
    with pytest.raises(ValueError, match=r"takes inputs \[N,28,28,1\], got \[2, 28, 28\]"):
        net.loss_and_gradients(np.zeros((2, 28, 28)), np.zeros((2, 10)))
    with pytest.raises(ValueError, match="one-hot"):
        net.loss_and_gradients(np.zeros((2, 28, 28, 1)), np.zeros((2, 9)))


@pytest.mark.parametrize("name", ["seed-cnn", "lenet5"])
def test_large_batches_in_pieces_give_the_whole_batch_result(name):
    x, y = batch(8, 16)
    whole = build_model(name, seed=3, dtype=np.float64).loss_and_gradients(x, y, per_example=True)
    net = build_model(name, seed=3, dtype=np.float64)
    net.chunk_size = 7  # pieces of 7, 7 and 2
    pieces = net.loss_and_gradients(x, y, per_example=True)
    assert pieces["loss"] == pytest.approx(whole["loss"], rel=RTOL)
    assert pieces["cost"] == pytest.approx(whole["cost"], rel=RTOL)
    for group in ("grads", "per_example_grads", "intermediates"):
        assert set(pieces[group]) == set(whole[group])
        for key, value in whole[group].items():
            assert_close(f"{name} {group} {key} in pieces", pieces[group][key], value, RTOL)
    lean = net.loss_and_gradients(x, y, intermediates=False)
    assert lean["intermediates"] == {}
    for key, value in whole["grads"].items():
        assert_close(f"{name} d{key} without intermediates", lean["grads"][key], value, RTOL)


def test_the_docs_dropout_of_ones_own_trains_and_passes_the_audit():
    layer_code, usage_code = docs_code_blocks("## Training mode, state and randomness")
    x, y = batch(12, 5, np.float32)
    space = {"x": x, "y": y}
    exec(layer_code, space)
    exec(usage_code, space)
    net = space["net"]
    assert space["report"].ok
    assert net.step == 0, "the audit replays a draw without moving the step"
    first = net.loss_and_gradients(x, y)["intermediates"]["dz1"]
    second = net.loss_and_gradients(x, y)["intermediates"]["dz1"]
    assert net.step == 2 and not np.array_equal(first == 0, second == 0), "a new mask per step"
    np.testing.assert_array_equal(net.logits(x), net.logits(x))  # inference draws nothing


def test_the_docs_fused_layer_passes_both_paths_and_a_wrong_cache_is_caught():
    fused_code, wrong_code = docs_code_blocks("## A fused layer of your own")
    space: dict = {}
    exec(fused_code, space)  # each block asserts what it shows
    exec(wrong_code, space)
    x, y = batch(12, 4, np.float32)
    net = space["net"]
    plain = Sequential(
        [Conv2D(4, 3), space["FusedTanh"](), Flatten(), Dense(10)], seed=0, params=net.params
    )
    plain.runs, plain._run_at = [], {}  # the same network, every layer through forward
    fused, unfused = net.loss_and_gradients(x, y), plain.loss_and_gradients(x, y)
    for key in net.params:  # float32: the same up to rounding
        scale = np.abs(unfused["grads"][key]).max()
        np.testing.assert_allclose(fused["grads"][key], unfused["grads"][key], atol=1e-5 * scale)
