"""The article's manual backward pass against tf.GradientTape of the same loss, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.data import one_hot
from tfhybrid.models.seed_cnn import seed_cnn

CONV_POSITIONS = 20 * 20  # output positions of the 9x9 VALID convolution on 28x28

# float64 throughout: only summation order differs between the two sides, so the
# errors stay at a few hundred ulps of the largest element.
RTOL_FLOAT64 = 1e-11
# float32: the two dw1 modes sum the same products in another order.
RTOL_FLOAT32 = 2e-5


def tape_gradients(params: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Autodiff of the article's loss: mean over the batch of the summed sigmoid CE."""
    variables = {k: tf.Variable(v) for k, v in params.items()}
    with tf.GradientTape() as tape:
        z1 = tf.nn.conv2d(x, variables["w1"], strides=1, padding="VALID") + variables["b1"]
        pooled = tf.nn.avg_pool2d(tf.sigmoid(z1), ksize=2, strides=2, padding="VALID")
        z2 = tf.reshape(pooled, [len(x), -1]) @ variables["w2"] + variables["b2"]
        per_sample = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(y, z2), axis=1)
        loss = tf.reduce_mean(per_sample)
    grads = tape.gradient(loss, variables)
    return float(loss), {k: g.numpy() for k, g in grads.items()}


def random_batch(rng: np.random.Generator, n: int, dtype=np.float64):
    x = rng.random((n, 28, 28, 1)).astype(dtype)
    return x, one_hot(rng.integers(0, 10, n), dtype)


@pytest.mark.parametrize("seed,batch", [(0, 1), (1, 7), (2, 32)])
@pytest.mark.parametrize("dw_mode", ["batched", "per-sample"])
def test_manual_gradients_match_tape_float64(seed, batch, dw_mode):
    rng = np.random.default_rng(seed)
    x, y = random_batch(rng, batch)
    model = seed_cnn(seed=seed, dtype=np.float64, dw_mode=dw_mode, bias_grad="exact")
    result = model.loss_and_gradients(x, y)
    tape_loss, tape_grads = tape_gradients(model.params, x, y)
    assert result["loss"] == pytest.approx(tape_loss, rel=RTOL_FLOAT64)
    for key in ("w1", "b1", "w2", "b2"):
        assert result["grads"][key].dtype == np.float64
        assert_close(f"d{key}", result["grads"][key], tape_grads[key], RTOL_FLOAT64)


def test_seed_bias_rule_is_exactly_one_four_hundredth(rng):
    x, y = random_batch(rng, 5)
    exact = seed_cnn(seed=3, dtype=np.float64, bias_grad="exact").gradients(x, y)
    seed_rule = seed_cnn(seed=3, dtype=np.float64, bias_grad="seed").gradients(x, y)
    assert_close("db1 seed x 400", seed_rule["b1"] * CONV_POSITIONS, exact["b1"], RTOL_FLOAT64)
    ratio = seed_rule["b1"] / exact["b1"]
    assert np.allclose(ratio, 1 / 400, rtol=1e-12), f"db1 ratios {ratio.ravel()[:5]}"
    for key in ("w1", "w2", "b2"):  # the rule touches db1 only
        np.testing.assert_array_equal(seed_rule[key], exact[key], err_msg=f"d{key}")


@pytest.mark.parametrize("dtype,rtol", [(np.float32, RTOL_FLOAT32), (np.float64, RTOL_FLOAT64)])
def test_per_sample_and_batched_dw1_agree(rng, dtype, rtol):
    x, y = random_batch(rng, 100, dtype)
    batched = seed_cnn(seed=5, dtype=dtype, dw_mode="batched").gradients(x, y)
    per_sample = seed_cnn(seed=5, dtype=dtype, dw_mode="per-sample").gradients(x, y)
    assert_close("dw1 per-sample vs batched", per_sample["w1"], batched["w1"], rtol)


def test_float32_gradients_are_close_to_float64(rng):
    x, y = random_batch(rng, 16)
    model64 = seed_cnn(seed=9, dtype=np.float64)
    reference = model64.gradients(x, y)
    model32 = seed_cnn(params=model64.params, dtype=np.float32)
    single = model32.gradients(x.astype(np.float32), y.astype(np.float32))
    for key in reference:
        assert single[key].dtype == np.float32
        assert_close(f"d{key} float32", single[key], reference[key], 1e-4)
