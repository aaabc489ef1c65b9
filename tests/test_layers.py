"""Max pooling, ReLU and flatten against tf.GradientTape in float64, tie-free and tie-heavy."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tests.test_ops import RTOL, tape_vjp
from tfhybrid._tf import tf
from tfhybrid.ops.activations import relu_backward, relu_forward
from tfhybrid.ops.maxpool import max_pool_backward, max_pool_forward
from tfhybrid.ops.reshape import flatten_backward, flatten_forward

# (shape, window, stride, pad); several have (H + 2p - k) not a multiple of the stride.
POOL_CASES = [
    ((2, 8, 8, 3), 2, 2, 0),
    ((3, 10, 11, 2), 3, 2, 0),
    ((2, 7, 9, 2), 3, 2, 1),
    ((1, 9, 9, 1), 2, 3, 1),
    ((2, 6, 5, 4), 2, 1, 0),
    ((2, 11, 13, 3), 3, 3, 1),
    ((2, 13, 13, 2), 2, 2, 0),
    ((2, 9, 12, 2), 3, 3, 0),
    ((2, 10, 8, 3), 3, 3, 0),
]


def tie_free(rng, shape):
    return rng.standard_normal(shape)


def tie_heavy(rng, shape):
    """Like ReLU feature maps on MNIST: large flat zero regions and repeated small integers."""
    x = np.maximum(rng.integers(-4, 3, shape), 0).astype(np.float64)
    x[:, : shape[1] // 2] = 0.0  # a flat zero half, as the digit's background
    return x


def tf_max_pool(size, stride, pad, pad_value):
    def pool(x):
        padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], constant_values=pad_value)
        return tf.nn.max_pool2d(padded, size, stride, "VALID")

    return pool


@pytest.mark.parametrize("shape,size,stride,pad", POOL_CASES)
@pytest.mark.parametrize("pad_value", [0.0, -np.inf])
@pytest.mark.parametrize("make_input", [tie_free, tie_heavy])
def test_max_pool_matches_tape(rng, shape, size, stride, pad, pad_value, make_input):
    x = make_input(rng, shape)
    out, cache = max_pool_forward(x, size, stride, pad, pad_value)
    reference = tf_max_pool(size, stride, pad, pad_value)
    assert_close("max_pool out", out, reference(x).numpy(), RTOL)
    dout = rng.standard_normal(out.shape)
    grads = tape_vjp(reference, {"x": x}, dout)
    assert_close(
        f"max_pool dx ({make_input.__name__})", max_pool_backward(dout, cache), grads["x"], RTOL
    )


def brute_force_all_ties(x, dout, size, stride, pad, pad_value):
    """The sources' rule written as loops: every element equal to the window max gets it."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
    dxp = np.zeros_like(xp)
    for r in range(dout.shape[1]):
        for s in range(dout.shape[2]):
            win = xp[:, r * stride : r * stride + size, s * stride : s * stride + size]
            hit = win == win.max(axis=(1, 2), keepdims=True)
            dxp[:, r * stride : r * stride + size, s * stride : s * stride + size] += (
                hit * dout[:, r : r + 1, s : s + 1]
            )
    return dxp[:, pad : pad + x.shape[1], pad : pad + x.shape[2]]


@pytest.mark.parametrize("shape,size,stride,pad", POOL_CASES)
def test_all_ties_rule_matches_its_definition(rng, shape, size, stride, pad):
    x = tie_heavy(rng, shape)
    out, cache = max_pool_forward(x, size, stride, pad, 0.0, ties="all")
    dout = rng.standard_normal(out.shape)
    expected = brute_force_all_ties(x, dout, size, stride, pad, 0.0)
    assert_close("max_pool dx (ties=all)", max_pool_backward(dout, cache), expected, RTOL)


def test_all_ties_rule_equals_first_without_ties(rng):
    x = tie_free(rng, (2, 8, 8, 3))
    dout = rng.standard_normal((2, 4, 4, 3))
    first = max_pool_backward(dout, max_pool_forward(x, ties="first")[1])
    every = max_pool_backward(dout, max_pool_forward(x, ties="all")[1])
    np.testing.assert_array_equal(every, first)


def test_all_ties_rule_multiplies_flat_windows():
    x = np.zeros((1, 4, 4, 1))
    dout = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    every = max_pool_backward(dout, max_pool_forward(x, ties="all")[1])
    first = max_pool_backward(dout, max_pool_forward(x, ties="first")[1])
    assert every.sum() == 4 * dout.sum()  # 4 tied maxima per 2x2 window
    assert first.sum() == dout.sum()
    assert first[0, 0, 0, 0] == 1.0 and first[0, 0, 1, 0] == 0.0  # first in row-major order


def test_max_pool_rejects_bad_arguments():
    x = np.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="ties"):
        max_pool_forward(x, ties="some")
    with pytest.raises(ValueError, match="pad"):
        max_pool_forward(x, 2, 2, pad=2)


@pytest.mark.parametrize("make_input", [tie_free, tie_heavy])
def test_relu_matches_tape(rng, make_input):
    z = make_input(rng, (3, 5, 6, 2)) - (1.0 if make_input is tie_heavy else 0.0)
    z[0, 0, 0, 0] = 0.0  # the kink itself: TensorFlow's subgradient is 0
    out, cache = relu_forward(z)
    assert_close("relu out", out, tf.nn.relu(z).numpy(), RTOL)
    dout = rng.standard_normal(z.shape)
    grads = tape_vjp(lambda z: tf.nn.relu(z), {"z": z}, dout)
    dz = relu_backward(dout, cache)
    assert_close("relu dz", dz, grads["z"], RTOL)
    assert dz[0, 0, 0, 0] == 0.0


def test_flatten_matches_tape(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    out, cache = flatten_forward(x)
    assert_close("flatten out", out, tf.reshape(x, [3, -1]).numpy(), RTOL)
    dout = rng.standard_normal(out.shape)
    grads = tape_vjp(lambda x: tf.reshape(x, [3, -1]), {"x": x}, dout)
    assert_close("flatten dx", flatten_backward(dout, cache), grads["x"], RTOL)
