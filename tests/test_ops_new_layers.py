"""Normalization, dropout, tanh and leaky ReLU: each forward against TensorFlow and each
hand-written backward against tf.GradientTape of the same function, in float64, with random
upstream gradients, at batch sizes 1, 2 and 7, for [N, D] and NHWC [N, H, W, C]."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.ops.activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    tanh_backward,
    tanh_forward,
)
from tfhybrid.ops.dropout import (
    dropout_backward,
    dropout_forward,
    dropout_inference,
    dropout_inference_backward,
    dropout_mask,
)
from tfhybrid.ops.normalization import (
    batchnorm_backward,
    batchnorm_forward,
    batchnorm_inference_backward,
    batchnorm_inference_forward,
    layernorm_backward,
    layernorm_backward_per_example,
    layernorm_forward,
)

RTOL = 1e-10  # float64, the same maths in another order
EPS = 1e-3
BATCHES = (1, 2, 7)
LAYOUTS = ("ND", "NHWC")


def random_shape(rng: np.random.Generator, batch: int, layout: str) -> tuple[int, ...]:
    """A tiny random shape: [batch, D] with D in 2..6, or [batch, H, W, C] with H, W in 1..3
    and C in 2..4."""
    if layout == "ND":
        return (batch, int(rng.integers(2, 7)))
    h, w = (int(v) for v in rng.integers(1, 4, size=2))
    return (batch, h, w, int(rng.integers(2, 5)))


def tape_vjp(fn, inputs: dict, dout: np.ndarray) -> dict:
    """Gradients of sum(fn(**inputs) * dout) w.r.t. every input: a vector-Jacobian product."""
    variables = {k: tf.Variable(v) for k, v in inputs.items()}
    with tf.GradientTape() as tape:
        target = tf.reduce_sum(fn(**variables) * dout)
    return {k: g.numpy() for k, g in tape.gradient(target, variables).items()}


def params(rng: np.random.Generator, channels: int) -> tuple[np.ndarray, np.ndarray]:
    return 1 + 0.5 * rng.standard_normal(channels), rng.standard_normal(channels)


def tf_batchnorm(x, gamma, beta):
    mean, var = tf.nn.moments(x, axes=list(range(len(x.shape) - 1)))
    return tf.nn.batch_normalization(x, mean, var, beta, gamma, EPS)


def tf_layernorm(x, gamma, beta):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + EPS) * gamma + beta


# --- batch normalization ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
def test_batchnorm_matches_tape(rng, batch, layout):
    shape = random_shape(rng, batch, layout)
    x = 3 * rng.standard_normal(shape) + 1
    gamma, beta = params(rng, shape[-1])
    out, cache = batchnorm_forward(x, gamma, beta, EPS)
    assert_close("batchnorm out", out, tf_batchnorm(x, gamma, beta).numpy(), RTOL)
    mean, var = tf.nn.moments(x, axes=list(range(x.ndim - 1)))
    assert_close("batchnorm mean", cache.mean, mean.numpy(), RTOL)
    assert_close("batchnorm var", cache.var, var.numpy(), RTOL)

    dout = rng.standard_normal(shape)
    grads = tape_vjp(tf_batchnorm, {"x": x, "gamma": gamma, "beta": beta}, dout)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    assert_close("batchnorm dx", dx, grads["x"], RTOL)
    assert_close("batchnorm dgamma", dgamma, grads["gamma"], RTOL)
    assert_close("batchnorm dbeta", dbeta, grads["beta"], RTOL)


def test_batchnorm_batch_one_dense_gives_beta_and_zero_dx(rng):
    """At batch 1 of [N, D] each feature is its own mean and the variance is 0: the output is
    beta and, through the batch statistics, dx = 0; epsilon > 0 keeps both free of NaN."""
    x = rng.standard_normal((1, 5))
    gamma, beta = params(rng, 5)
    out, cache = batchnorm_forward(x, gamma, beta, EPS)
    np.testing.assert_array_equal(cache.var, np.zeros(5))
    np.testing.assert_array_equal(out, beta[None, :])
    dout = rng.standard_normal((1, 5))
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    for name, grad in (("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)):
        assert np.all(np.isfinite(grad)), f"batchnorm {name} has NaN or inf at batch 1"
    np.testing.assert_array_equal(dx, np.zeros((1, 5)))
    np.testing.assert_array_equal(dgamma, np.zeros(5))
    np.testing.assert_array_equal(dbeta, dout[0])
    grads = tape_vjp(tf_batchnorm, {"x": x, "gamma": gamma, "beta": beta}, dout)
    np.testing.assert_array_equal(grads["x"], np.zeros((1, 5)))


def test_batchnorm_backward_with_constant_statistics_fails_the_tape(rng):
    """A backward that forgets the batch statistics depend on x (dx = dout gamma / std) is
    wrong in training mode: the tape comparison must catch it."""
    x = rng.standard_normal((7, 5))
    gamma, beta = params(rng, 5)
    _, cache = batchnorm_forward(x, gamma, beta, EPS)
    dout = rng.standard_normal(x.shape)
    grads = tape_vjp(tf_batchnorm, {"x": x, "gamma": gamma, "beta": beta}, dout)
    wrong_dx = dout * gamma / np.sqrt(cache.var + EPS)
    with pytest.raises(AssertionError, match="batchnorm dx"):
        assert_close("batchnorm dx", wrong_dx, grads["x"], RTOL)
    rel = np.abs(wrong_dx - grads["x"]).max() / np.abs(grads["x"]).max()
    assert rel > 0.1, f"the constant-statistics dx is only {rel:.1e} off: the test is too weak"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
def test_batchnorm_inference_matches_tape(rng, batch, layout):
    shape = random_shape(rng, batch, layout)
    x = rng.standard_normal(shape)
    gamma, beta = params(rng, shape[-1])
    running_mean = rng.standard_normal(shape[-1])
    running_var = rng.uniform(0.5, 2.0, shape[-1])

    def tf_inference(x, gamma, beta):
        return tf.nn.batch_normalization(x, running_mean, running_var, beta, gamma, EPS)

    out, cache = batchnorm_inference_forward(x, gamma, beta, running_mean, running_var, EPS)
    assert_close("batchnorm inference out", out, tf_inference(x, gamma, beta).numpy(), RTOL)
    dout = rng.standard_normal(shape)
    grads = tape_vjp(tf_inference, {"x": x, "gamma": gamma, "beta": beta}, dout)
    dx, dgamma, dbeta = batchnorm_inference_backward(dout, cache)
    assert_close("batchnorm inference dx", dx, grads["x"], RTOL)
    assert_close("batchnorm inference dgamma", dgamma, grads["gamma"], RTOL)
    assert_close("batchnorm inference dbeta", dbeta, grads["beta"], RTOL)


def test_batchnorm_rejects_parameters_of_the_wrong_shape(rng):
    x = rng.standard_normal((2, 3, 3, 4))
    with pytest.raises(ValueError, match="shape"):
        batchnorm_forward(x, np.ones(3), np.zeros(3), EPS)
    with pytest.raises(ValueError, match="rank"):
        layernorm_forward(np.ones(4), np.ones(4), np.zeros(4), EPS)


# --- layer normalization ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
def test_layernorm_matches_tape(rng, batch, layout):
    shape = random_shape(rng, batch, layout)
    x = 2 * rng.standard_normal(shape) - 1
    gamma, beta = params(rng, shape[-1])
    out, cache = layernorm_forward(x, gamma, beta, EPS)
    assert_close("layernorm out", out, tf_layernorm(x, gamma, beta).numpy(), RTOL)

    dout = rng.standard_normal(shape)
    grads = tape_vjp(tf_layernorm, {"x": x, "gamma": gamma, "beta": beta}, dout)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    assert_close("layernorm dx", dx, grads["x"], RTOL)
    assert_close("layernorm dgamma", dgamma, grads["gamma"], RTOL)
    assert_close("layernorm dbeta", dbeta, grads["beta"], RTOL)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
def test_layernorm_per_example_gradients_sum_to_the_batch_ones(rng, batch, layout):
    shape = random_shape(rng, batch, layout)
    x = rng.standard_normal(shape)
    gamma, beta = params(rng, shape[-1])
    _, cache = layernorm_forward(x, gamma, beta, EPS)
    dout = rng.standard_normal(shape)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    dx_n, dgamma_n, dbeta_n = layernorm_backward_per_example(dout, cache)
    assert dgamma_n.shape == dbeta_n.shape == (batch, shape[-1])
    assert_close("layernorm per-example dx", dx_n, dx, RTOL)
    assert_close("layernorm sum of per-example dgamma", dgamma_n.sum(axis=0), dgamma, RTOL)
    assert_close("layernorm sum of per-example dbeta", dbeta_n.sum(axis=0), dbeta, RTOL)
    # Sample 0's share is the gradient of sample 0's loss alone.
    only_first = np.zeros_like(dout)
    only_first[0] = dout[0]
    grads = tape_vjp(tf_layernorm, {"x": x, "gamma": gamma, "beta": beta}, only_first)
    assert_close("layernorm dgamma of sample 0", dgamma_n[0], grads["gamma"], RTOL)
    assert_close("layernorm dbeta of sample 0", dbeta_n[0], grads["beta"], RTOL)


# --- dropout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("inverted", [True, False])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
def test_dropout_matches_tape(rng, batch, layout, inverted):
    shape = random_shape(rng, batch, layout)
    rate = 0.3
    x = rng.standard_normal(shape)
    mask = dropout_mask(rng, shape, rate)
    scale = 1 / (1 - rate) if inverted else 1.0

    def tf_dropout(x):
        return x * tf.constant(mask, tf.float64) * scale

    out, cache = dropout_forward(x, mask, rate, inverted)
    assert_close("dropout out", out, tf_dropout(x).numpy(), RTOL)
    dout = rng.standard_normal(shape)
    grads = tape_vjp(tf_dropout, {"x": x}, dout)
    assert_close("dropout dx", dropout_backward(dout, cache), grads["x"], RTOL)

    def tf_inference(x):
        return x if inverted else x * (1 - rate)

    assert_close("dropout inference", dropout_inference(x, rate, inverted), tf_inference(x), RTOL)
    grads = tape_vjp(tf_inference, {"x": x}, dout)
    dx = dropout_inference_backward(dout, rate, inverted)
    assert_close("dropout inference dx", dx, grads["x"], RTOL)


def test_inverted_dropout_scales_as_tf_nn_dropout(rng):
    """Given tf.nn.dropout's own mask (where its output is non-zero), the inverted forward
    reproduces its output: the same 1 / (1 - rate) scale."""
    x = rng.uniform(0.5, 2.0, (7, 3, 3, 4))  # never 0, so out != 0 is exactly the mask
    rate = 0.4
    expected = tf.nn.dropout(x, rate=rate, seed=5).numpy()
    mask = expected != 0
    assert 0 < mask.mean() < 1
    out, _ = dropout_forward(x, mask, rate)
    assert_close("dropout out vs tf.nn.dropout", out, expected, RTOL)


def test_dropout_mask_replays_from_the_generator_state():
    first = dropout_mask(np.random.default_rng(7), (7, 3, 3, 4), 0.5)
    second = dropout_mask(np.random.default_rng(7), (7, 3, 3, 4), 0.5)
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.bool_ and 0 < first.mean() < 1
    expected = np.random.default_rng(7).random((7, 3, 3, 4)) >= 0.5
    np.testing.assert_array_equal(first, expected)
    other = dropout_mask(np.random.default_rng(8), (7, 3, 3, 4), 0.5)
    assert not np.array_equal(first, other)


def test_dropout_rejects_a_rate_of_one(rng):
    with pytest.raises(ValueError, match="rate"):
        dropout_mask(rng, (2, 3), 1.0)
    with pytest.raises(ValueError, match="rate"):
        dropout_forward(np.ones((2, 3)), np.ones((2, 3), bool), 1.0)


# --- tanh and leaky ReLU ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
def test_tanh_matches_tape(rng, batch, layout):
    shape = random_shape(rng, batch, layout)
    x = 2 * rng.standard_normal(shape)
    out, cache = tanh_forward(x)
    assert_close("tanh out", out, tf.tanh(x).numpy(), RTOL)
    dout = rng.standard_normal(shape)
    grads = tape_vjp(tf.tanh, {"x": x}, dout)
    assert_close("tanh dx", tanh_backward(dout, cache), grads["x"], RTOL)


# TensorFlow holds leaky_relu's alpha as a float32 attribute, so 0.01 would differ from ours by
# float32 rounding (~1e-9 relative): these two are exact in float32.
@pytest.mark.parametrize("alpha", [2**-6, 0.25])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
def test_leaky_relu_matches_tape(rng, batch, layout, alpha):
    shape = random_shape(rng, batch, layout)
    x = rng.standard_normal(shape)
    x.flat[0] = 0.0  # the kink: TensorFlow's gradient there is alpha
    out, cache = leaky_relu_forward(x, alpha)
    assert_close("leaky_relu out", out, tf.nn.leaky_relu(x, alpha=alpha).numpy(), RTOL)
    dout = rng.standard_normal(shape)
    grads = tape_vjp(lambda x: tf.nn.leaky_relu(x, alpha=alpha), {"x": x}, dout)
    dx = leaky_relu_backward(dout, cache)
    assert_close("leaky_relu dx", dx, grads["x"], RTOL)
    assert dx.flat[0] == alpha * dout.flat[0]


# --- dtypes ----------------------------------------------------------------------------------


def test_float32_stays_float32(rng):
    x = rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = (p.astype(np.float32) for p in params(rng, 4))
    mask = dropout_mask(rng, x.shape, 0.25)

    results = {}
    out, cache = batchnorm_forward(x, gamma, beta, EPS)
    results["batchnorm"] = (out, cache.mean, cache.var, *batchnorm_backward(dout, cache))
    out, cache = batchnorm_inference_forward(x, gamma, beta, cache.mean, cache.var, EPS)
    results["batchnorm inference"] = (out, *batchnorm_inference_backward(dout, cache))
    out, cache = layernorm_forward(x, gamma, beta, EPS)
    results["layernorm"] = (
        out,
        *layernorm_backward(dout, cache),
        *layernorm_backward_per_example(dout, cache),
    )
    for inverted in (True, False):
        out, cache = dropout_forward(x, mask, 0.25, inverted)
        results[f"dropout inverted={inverted}"] = (
            out,
            dropout_backward(dout, cache),
            dropout_inference(x, 0.25, inverted),
            dropout_inference_backward(dout, 0.25, inverted),
        )
    out, cache = tanh_forward(x)
    results["tanh"] = (out, tanh_backward(dout, cache))
    out, cache = leaky_relu_forward(x, np.float64(0.1))
    results["leaky_relu"] = (out, leaky_relu_backward(dout, cache))

    for name, arrays in results.items():
        for i, array in enumerate(arrays):
            assert array.dtype == np.float32, f"{name} result {i} is {array.dtype}"
