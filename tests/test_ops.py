"""Each NumPy backward against tf.GradientTape in float64, with random upstream gradients."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.ops.activations import sigmoid_backward, sigmoid_forward
from tfhybrid.ops.conv import conv2d_backward, conv2d_forward
from tfhybrid.ops.dense import dense_backward, dense_forward
from tfhybrid.ops.losses import sigmoid_cross_entropy, softmax_cross_entropy
from tfhybrid.ops.pooling import avg_pool_backward, avg_pool_forward

RTOL = 1e-12  # float64, same maths, another summation order


def tape_vjp(fn, inputs: dict, dout: np.ndarray) -> dict:
    """Gradients of sum(fn(**inputs) * dout) w.r.t. every input: a vector-Jacobian product."""
    variables = {k: tf.Variable(v) for k, v in inputs.items()}
    with tf.GradientTape() as tape:
        out = fn(**variables)
        target = tf.reduce_sum(out * dout)
    return {k: g.numpy() for k, g in tape.gradient(target, variables).items()}


@pytest.mark.parametrize(
    "shape,size,stride",
    [
        ((2, 20, 20, 3), 2, 2),
        ((3, 7, 9, 2), 3, 2),
        ((1, 8, 8, 1), 3, 3),
        ((2, 6, 5, 4), 2, 1),
    ],
)
def test_avg_pool_backward_matches_tape(rng, shape, size, stride):
    x = rng.standard_normal(shape)
    out, cache = avg_pool_forward(x, size, stride)
    expected = tf.nn.avg_pool2d(x, size, stride, "VALID").numpy()
    assert_close("avg_pool out", out, expected, RTOL)
    dout = rng.standard_normal(out.shape)
    grads = tape_vjp(lambda x: tf.nn.avg_pool2d(x, size, stride, "VALID"), {"x": x}, dout)
    assert_close("avg_pool dx", avg_pool_backward(dout, cache), grads["x"], RTOL)


def test_sigmoid_backward_matches_tape(rng):
    z = rng.standard_normal((4, 5, 6, 3)) * 4
    s, cache = sigmoid_forward(z)
    assert_close("sigmoid", s, tf.sigmoid(z).numpy(), RTOL)
    dout = rng.standard_normal(z.shape)
    grads = tape_vjp(lambda z: tf.sigmoid(z), {"z": z}, dout)
    assert_close("sigmoid dz", sigmoid_backward(dout, cache), grads["z"], RTOL)


def test_sigmoid_does_not_overflow():
    s, _ = sigmoid_forward(np.array([-1e4, 0.0, 1e4], dtype=np.float32))
    np.testing.assert_array_equal(s, np.array([0.0, 0.5, 1.0], dtype=np.float32))


def test_dense_backward_matches_tape(rng):
    x, w = rng.standard_normal((6, 11)), rng.standard_normal((11, 4))
    b = rng.standard_normal((1, 4))
    out, cache = dense_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    grads = tape_vjp(lambda x, w, b: x @ w + b, {"x": x, "w": w, "b": b}, dout)
    mine = dense_backward(dout, cache)
    for key in ("x", "w", "b"):
        assert_close(f"dense d{key}", mine[f"d{key}"], grads[key], RTOL)


@pytest.mark.parametrize(
    "shape,kernel,stride,pad",
    [
        ((2, 9, 9, 1), 3, 1, 0),
        ((3, 10, 11, 2), 3, 2, 1),
        ((2, 8, 8, 3), 5, 3, 2),
        ((1, 12, 12, 2), 4, 2, 0),
    ],
)
@pytest.mark.parametrize("dw_mode", ["batched", "per-sample"])
def test_conv_backward_matches_tape(rng, shape, kernel, stride, pad, dw_mode):
    x = rng.standard_normal(shape)
    w = rng.standard_normal((kernel, kernel, shape[3], 4))
    b = rng.standard_normal(4)

    def reference(x, w, b):
        padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return tf.nn.conv2d(padded, w, strides=stride, padding="VALID") + b

    out, cache = conv2d_forward(x, w, b, stride, pad)
    assert_close("conv out", out, reference(x, w, b).numpy(), RTOL)
    dout = rng.standard_normal(out.shape)
    grads = tape_vjp(reference, {"x": x, "w": w, "b": b}, dout)
    mine = conv2d_backward(dout, cache, dw_mode=dw_mode)
    for key in ("x", "w", "b"):
        assert_close(f"conv d{key}", mine[f"d{key}"], grads[key], RTOL)


def test_sigmoid_cross_entropy_matches_tf(rng):
    z, y = rng.standard_normal((5, 10)) * 3, (rng.random((5, 10)) > 0.7).astype(float)
    loss, dz = sigmoid_cross_entropy(z, y)
    zv = tf.Variable(z)
    with tf.GradientTape() as tape:
        ref = tf.reduce_mean(tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(y, zv), 1))
    assert loss == pytest.approx(float(ref), rel=RTOL)
    assert_close("sigmoid CE dz", dz, tape.gradient(ref, zv).numpy(), RTOL)


def test_softmax_cross_entropy_matches_tf(rng):
    z = rng.standard_normal((5, 10)) * 3
    y = np.eye(10)[rng.integers(0, 10, 5)]
    loss, dz = softmax_cross_entropy(z, y)
    zv = tf.Variable(z)
    with tf.GradientTape() as tape:
        ref = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, zv))
    assert loss == pytest.approx(float(ref), rel=RTOL)
    assert_close("softmax CE dz", dz, tape.gradient(ref, zv).numpy(), RTOL)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    loss, dz = softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert loss == pytest.approx(1000.0)
    assert np.all(np.isfinite(dz))


@pytest.mark.parametrize(
    "shape,kernel,stride,pad",
    [
        ((3, 9, 9, 1), 3, 1, 0),
        ((3, 10, 11, 2), 3, 2, 1),
        ((2, 8, 8, 3), 5, 3, 2),
    ],
)
def test_conv_per_example_gradients_are_each_samples_own(rng, shape, kernel, stride, pad):
    x = rng.standard_normal(shape)
    w = rng.standard_normal((kernel, kernel, shape[3], 4))
    b = rng.standard_normal((1, 4))
    out, cache = conv2d_forward(x, w, b, stride, pad)
    dout = rng.standard_normal(out.shape)
    per = conv2d_backward(dout, cache, need_dx=False, per_example=True)
    assert per["dw"].shape == (len(x), *w.shape) and per["db"].shape == (len(x), *b.shape)
    for n in range(len(x)):
        _, alone = conv2d_forward(x[n : n + 1], w, b, stride, pad)
        own = conv2d_backward(dout[n : n + 1], alone, need_dx=False)
        assert_close(f"conv dw of sample {n}", per["dw"][n], own["dw"], RTOL)
        assert_close(f"conv db of sample {n}", per["db"][n], own["db"], RTOL)


def _op_pairs(rng):
    """Each op pair of tfhybrid/ops as (forward, backward -> {input: grad}, inputs, reference)."""
    from tfhybrid.ops.activations import relu_backward, relu_forward
    from tfhybrid.ops.reshape import flatten_backward, flatten_forward

    x4 = rng.standard_normal((2, 6, 7, 3))
    return {
        "sigmoid": (
            sigmoid_forward,
            lambda d, c: {"z": sigmoid_backward(d, c)},
            {"z": x4 * 3},
            lambda z: tf.sigmoid(z),
        ),
        "relu": (
            relu_forward,
            lambda d, c: {"z": relu_backward(d, c)},
            {"z": x4},
            lambda z: tf.nn.relu(z),
        ),
        "flatten": (
            flatten_forward,
            lambda d, c: {"x": flatten_backward(d, c)},
            {"x": x4},
            lambda x: tf.reshape(x, [2, -1]),
        ),
        "avg_pool": (
            lambda x: avg_pool_forward(x, 3, 2),
            lambda d, c: {"x": avg_pool_backward(d, c)},
            {"x": x4},
            lambda x: tf.nn.avg_pool2d(x, 3, 2, "VALID"),
        ),
        "dense": (
            dense_forward,
            lambda d, c: {k[1:]: v for k, v in dense_backward(d, c).items()},
            {
                "x": rng.standard_normal((4, 5)),
                "w": rng.standard_normal((5, 3)),
                "b": rng.standard_normal((1, 3)),
            },
            lambda x, w, b: tf.matmul(x, w) + b,
        ),
        "conv": (
            lambda x, w, b: conv2d_forward(x, w, b, 2, 1),
            lambda d, c: {k[1:]: v for k, v in conv2d_backward(d, c).items()},
            {"x": x4, "w": rng.standard_normal((3, 3, 3, 2)), "b": rng.standard_normal(2)},
            lambda x, w, b: tf.nn.conv2d(x, w, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]) + b,
        ),
    }


@pytest.mark.parametrize("name", ["sigmoid", "relu", "flatten", "avg_pool", "dense", "conv"])
def test_every_op_pair_passes_the_gradient_check(rng, name):
    from tfhybrid.testing import assert_gradients_match

    forward, backward, inputs, reference = _op_pairs(rng)[name]
    assert_gradients_match(forward, backward, inputs, reference)  # tape, fd and the vote


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# (37, 20, 20, 20): several blocks of samples (ops.buffers.blocks), the last one shorter.
@pytest.mark.parametrize(
    "shape,size", [((3, 8, 6, 5), 2), ((2, 9, 9, 4), 3), ((1, 4, 4, 1), 2), ((37, 20, 20, 20), 2)]
)
def test_avg_pool_sigmoid_backward_is_the_two_passes_bit_for_bit(rng, dtype, shape, size):
    from tfhybrid.fast.pooling import avg_pool_sigmoid_backward

    s, _ = sigmoid_forward(rng.standard_normal(shape).astype(dtype) * 3)
    pooled, cache = avg_pool_forward(s, size, size)
    dout = rng.standard_normal(pooled.shape).astype(dtype)
    fused = avg_pool_sigmoid_backward(dout, cache, s)
    expected = sigmoid_backward(avg_pool_backward(dout, cache), s)
    assert fused.dtype == dtype
    np.testing.assert_array_equal(fused, expected)
    overlapping, uneven = avg_pool_forward(s, size, 1)  # windows that overlap: not merged
    other = rng.standard_normal(overlapping.shape).astype(dtype)
    assert avg_pool_sigmoid_backward(other, uneven, s) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_gradients_equal_the_layer_by_layer_ones(rng, dtype):
    """intermediates=False merges the pool's and the sigmoid's backward: same numbers."""
    from tfhybrid.models.seed_cnn import seed_cnn

    net = seed_cnn(seed=3, dtype=dtype)
    x = rng.random((5, 28, 28, 1)).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 5)]
    fast = net.loss_and_gradients(x, y, intermediates=False)["grads"]
    slow = net.loss_and_gradients(x, y)["grads"]
    for key, value in slow.items():
        np.testing.assert_array_equal(fast[key], value, err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_aligned_arrays_reach_tensorflow_in_place_and_others_as_they_are(dtype):
    from tfhybrid.fast import buffers

    array = buffers.empty((3, 5, 7), dtype)
    assert array.ctypes.data % buffers.ALIGN == 0 and array.flags.c_contiguous
    array[...] = np.arange(array.size).reshape(array.shape)
    tensor = buffers.as_tensor(array)
    assert tensor.dtype == tf.as_dtype(dtype) and tensor.shape == array.shape
    np.testing.assert_array_equal(tensor.numpy(), array)
    assert buffers.zeros(4, dtype).sum() == 0
    misaligned = np.empty(array.size * 2 + 1, dtype)[1 : array.size + 1]
    if misaligned.ctypes.data % buffers.ALIGN:
        assert buffers.as_tensor(misaligned) is misaligned  # TensorFlow copies it
    strided = array[:, ::2]
    assert buffers.as_tensor(strided) is strided
    frozen = array.copy()
    frozen.flags.writeable = False
    assert buffers.as_tensor(frozen) is frozen
