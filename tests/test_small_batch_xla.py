"""Small float32 batches run the compiled forward and the convolution's backward call
under XLA (ops.conv_plan.xla_max_batch): the same gradients to float32 rounding, the
same path every time for a given batch size, and the plain call where XLA cannot
compile a layer."""

from __future__ import annotations

import numpy as np
import pytest

import tfhybrid
from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.data import one_hot
from tfhybrid.fast import conv_plan
from tfhybrid.layers import Layer

FLOAT32_RTOL = 1e-4  # float32 sums in another order: a few roundings of 6e-8 each


def _batch(net, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *net.input_shape), dtype=np.float32)
    return x, one_hot(rng.integers(0, net.output_shape[0], n))


def test_only_small_float32_batches_take_xla():
    if conv_plan.gpu_visible():
        assert conv_plan.xla_max_batch(np.float32) == 0
        return
    assert conv_plan.xla_max_batch(np.float32) == conv_plan.XLA_MAX_BATCH
    assert conv_plan.xla_max_batch(np.float32, forward=True) == conv_plan.XLA_FORWARD_MAX_BATCH
    assert conv_plan.xla_max_batch(np.float64) == 0  # the audit's dtype: never
    plan = conv_plan.ConvPlan(xla_max_batch=16)
    assert plan.batch_xla(16) and not plan.batch_xla(17)
    assert "XLA up to batch 16" in plan.describe()


def test_small_batch_gradients_equal_the_float64_ones_and_repeat_exactly():
    net = tfhybrid.build_model("conv8", seed=0)
    wide = tfhybrid.build_model("conv8", seed=0, dtype=np.float64)
    x, y = _batch(net, 3)
    first = net.loss_and_gradients(x, y)["grads"]
    again = net.loss_and_gradients(x, y)["grads"]
    expected = wide.loss_and_gradients(x.astype(np.float64), y)["grads"]
    for key, value in first.items():
        np.testing.assert_array_equal(value, again[key])  # one path, the same every call
        scale = np.abs(expected[key]).max()
        assert_close(key, value / scale, expected[key] / scale, FLOAT32_RTOL)
    assert net.runs[0].xla_compiles is not False


class NumpySquare(Layer):
    """A fused layer whose reference leaves TensorFlow (tf.numpy_function): XLA cannot
    compile it, so its run keeps the plain call."""

    fused = True
    fused_needs = ("x",)

    def output_shape(self, input_shape):
        return input_shape

    def forward(self, params, x):
        return x * x, x

    def cache_from(self, params, x, out, batch):
        return np.asarray(x)

    def backward(self, dout, cache, need_dx=True):
        return 2 * cache * dout, {}

    def reference(self, params, x):
        out = tf.numpy_function(lambda a: a * a, [x], x.dtype)
        return tf.ensure_shape(out, x.shape)


def test_a_run_xla_cannot_compile_keeps_the_plain_call():
    from tfhybrid.layers import Conv2D, Dense, Flatten

    net = tfhybrid.Sequential(
        [Conv2D(2, 3), NumpySquare(), Flatten(), Dense(10)], input_shape=(5, 5, 1), seed=0
    )
    assert net.runs[0].xla_max_batch == 0  # a layer of your own: never XLA
    net.runs[0].xla_max_batch = 4  # as if it were the project's: XLA is tried, and refused
    x = np.random.default_rng(0).random((2, 5, 5, 1), dtype=np.float32)
    y = one_hot(np.array([0, 2]))
    first = net.loss_and_gradients(x, y)["grads"]
    assert net.runs[0].xla_compiles is False
    second = net.loss_and_gradients(x, y)["grads"]
    for key, value in first.items():
        np.testing.assert_array_equal(value, second[key])


class CheckedTanh(Layer):
    """A fused layer of your own whose reference asserts on its input: XLA would drop
    the assertion, so its run never takes XLA."""

    fused = True
    fused_needs = ("out",)

    def output_shape(self, input_shape):
        return input_shape

    def forward(self, params, x):
        out = np.tanh(x)
        return out, out

    def cache_from(self, params, x, out, batch):
        return np.asarray(out)

    def backward(self, dout, cache, need_dx=True):
        return dout * (1 - cache * cache), {}

    def reference(self, params, x):
        with tf.control_dependencies([tf.debugging.assert_less(tf.abs(x), 1e3, message="too big")]):
            return tf.tanh(x)


def test_a_reference_of_your_own_keeps_its_checks_at_small_batches():
    from tfhybrid.layers import Conv2D, Dense, Flatten

    net = tfhybrid.Sequential(
        [Conv2D(2, 3), CheckedTanh(), Flatten(), Dense(10)], input_shape=(5, 5, 1), seed=0
    )
    x = np.full((2, 5, 5, 1), 1e6, np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="too big"):
        net.loss_and_gradients(x, one_hot(np.array([0, 2])))
