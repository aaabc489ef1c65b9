"""Every fast variant in tfhybrid.fast equals its readable definition in tfhybrid.ops.

Bit for bit where the fast variant runs the same products in the same order (activations,
pooling, max-pool routing); to float rounding, ``CONV_RTOL``, for the convolution, whose
compiled TensorFlow formulations sum in another order. And a whole training on the readable
path (``TFHYBRID_READABLE=1``) follows the fast one to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfhybrid import fast
from tfhybrid.fast import activations as fast_activations
from tfhybrid.fast import conv as fast_conv
from tfhybrid.fast import maxpool as fast_maxpool
from tfhybrid.fast import pooling as fast_pooling
from tfhybrid.ops import activations, conv, maxpool, pooling

CONV_RTOL = {np.float32: 1e-5, np.float64: 1e-12}  # the sums run in another order
TRAINING_RTOL = 1e-4  # float32 losses after a few steps of both paths


def assert_same(fast_value, definition, name):
    assert fast_value.shape == definition.shape, name
    assert fast_value.dtype == definition.dtype, name
    np.testing.assert_array_equal(fast_value, definition, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_backwards_are_bit_for_bit_their_formulas(rng, dtype):
    z = rng.normal(size=(3, 5, 5, 4)).astype(dtype)
    dout = rng.normal(size=z.shape).astype(dtype)
    s, cache = activations.sigmoid_forward(z)
    assert_same(
        fast_activations.sigmoid_backward(dout, cache),
        activations.sigmoid_backward(dout, cache),
        "sigmoid",
    )
    _, mask = activations.relu_forward(z)
    assert_same(
        fast_activations.relu_backward(dout, mask), activations.relu_backward(dout, mask), "relu"
    )


@pytest.mark.parametrize(
    "shape,size,stride", [((2, 8, 8, 3), 2, 2), ((2, 7, 9, 2), 3, 3), ((2, 7, 7, 2), 3, 2)]
)
def test_average_pool_backwards_are_bit_for_bit_the_formula(rng, shape, size, stride):
    x = rng.random(shape).astype(np.float32)
    out, cache = pooling.avg_pool_forward(x, size, stride)
    dout = rng.normal(size=out.shape).astype(np.float32)
    definition = pooling.avg_pool_backward(dout, cache)
    assert_same(fast_pooling.avg_pool_backward(dout, cache), definition, "avg pool")
    s, s_cache = activations.sigmoid_forward(rng.normal(size=shape).astype(np.float32))
    merged = fast_pooling.avg_pool_sigmoid_backward(dout, cache, s_cache)
    if size == stride and shape[1] % size == 0 and shape[2] % size == 0:
        assert_same(merged, activations.sigmoid_backward(definition, s_cache), "pool+sigmoid")
    else:
        assert merged is None  # the caller runs the two definitions in turn


@pytest.mark.parametrize("ties", ["first", "all"])
@pytest.mark.parametrize(
    "shape,size,stride,pad",
    [
        ((2, 8, 8, 3), 2, 2, 0),
        ((2, 9, 7, 2), 2, 2, 0),
        ((2, 7, 7, 2), 3, 2, 1),
        ((1, 6, 6, 2), 3, 3, 1),
    ],
)
def test_max_pool_routes_and_backward_are_bit_for_bit_the_definition(
    rng, shape, size, stride, pad, ties
):
    # Few distinct values: many tied maxima, where the two tie rules differ.
    x = rng.integers(0, 3, size=shape).astype(np.float32)
    out, cache = maxpool.max_pool_forward(x, size, stride, pad, 0.0, ties)
    fast_out, fast_cache = fast_maxpool.max_pool_forward(x, size, stride, pad, 0.0, ties)
    assert_same(fast_out, out, "max pool forward")
    dout = rng.normal(size=out.shape).astype(np.float32)
    assert_same(
        fast_maxpool.max_pool_backward(dout, fast_cache),
        maxpool.max_pool_backward(dout, cache),
        "max pool backward",
    )


@pytest.mark.parametrize("ties", ["first", "all"])
@pytest.mark.parametrize("shape,size", [((2, 8, 8, 3), 2), ((2, 9, 7, 2), 2), ((1, 9, 9, 2), 3)])
def test_max_pool_merged_with_the_relu_below_equals_the_two_definitions(rng, shape, size, ties):
    # A ReLU's output: many zeros, so windows whose maximum is 0 (tied), where the mask
    # is 0 however the route goes.
    z = rng.integers(-2, 3, size=shape).astype(np.float32)
    a, mask = activations.relu_forward(z)
    out, cache = maxpool.max_pool_forward(a, size, size, 0, 0.0, ties)
    _, fast_cache = fast_maxpool.max_pool_forward(a, size, size, 0, 0.0, ties)
    dout = rng.normal(size=out.shape).astype(np.float32)
    merged = fast_maxpool.max_pool_relu_backward(dout, fast_cache)
    definition = activations.relu_backward(maxpool.max_pool_backward(dout, cache), mask)
    assert_same(merged, definition, "max pool + relu")
    _, padded = fast_maxpool.max_pool_forward(a, size, size, 1, 0.0, ties)
    assert fast_maxpool.max_pool_relu_backward(dout, padded) is None  # not the rows cache


def test_training_merges_the_max_pool_with_the_relu_below_to_the_same_gradients(rng, monkeypatch):
    from tfhybrid.catalog import build_model

    net = build_model("lenet5", seed=1, dtype=np.float32)  # ReLU then MaxPool2D, twice
    x = rng.random((3, *net.input_shape)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 3)]
    merges = []
    merged = fast_maxpool.max_pool_relu_backward
    monkeypatch.setattr(
        fast_maxpool, "max_pool_relu_backward", lambda *a: merges.append(1) or merged(*a)
    )
    lean = net.loss_and_gradients(x, y, intermediates=False)["grads"]
    assert len(merges) == 2
    layer_by_layer = net.loss_and_gradients(x, y)["grads"]
    assert len(merges) == 2  # the reported gradients between the two: no merge
    for key, value in layer_by_layer.items():
        np.testing.assert_array_equal(lean[key], value, err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (1, 2)])
@pytest.mark.parametrize("dw_mode", ["batched", "per-sample"])
def test_the_compiled_convolution_equals_its_definition(rng, dtype, stride, pad, dw_mode):
    x = rng.normal(size=(3, 9, 8, 2)).astype(dtype)
    w = rng.normal(size=(3, 3, 2, 4)).astype(dtype)
    b = rng.normal(size=(1, 4)).astype(dtype)
    out, cache = conv.conv2d_forward(x, w, b, stride, pad)
    fast_out, fast_cache = fast_conv.conv2d_forward(x, w, b, stride, pad)
    rtol = CONV_RTOL[dtype]
    np.testing.assert_allclose(fast_out, out, rtol=rtol, atol=rtol * np.abs(out).max())
    dout = rng.normal(size=out.shape).astype(dtype)
    for per_example in (False, True):
        definition = conv.conv2d_backward(dout, cache, dw_mode, per_example=per_example)
        quick = fast_conv.conv2d_backward(dout, fast_cache, dw_mode, per_example=per_example)
        assert set(quick) == set(definition) == {"dw", "db", "dx"}
        for name, value in definition.items():
            scale = np.abs(value).max()
            np.testing.assert_allclose(
                quick[name], value, rtol=rtol, atol=rtol * scale, err_msg=f"{name} {per_example=}"
            )


@pytest.mark.parametrize("model", ["seed-cnn", "lenet5"])
def test_a_training_on_the_readable_path_follows_the_fast_one(model, monkeypatch):
    import tfhybrid
    from tfhybrid.data import one_hot
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import train_step

    rng = np.random.default_rng(0)
    x = rng.random((8, 28, 28, 1)).astype(np.float32)
    y = one_hot(rng.integers(0, 10, 8))
    losses = {}
    for readable in (False, True):
        monkeypatch.setattr(fast, "_readable", readable)
        net = tfhybrid.build_model(model, seed=0)
        assert (net.runs == []) is readable  # no compiled run of layers on the readable path
        optimizer = build_optimizer("sgd", 0.05)
        losses[readable] = [train_step(net, optimizer, x, y)["loss"] for _ in range(4)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=TRAINING_RTOL)
    assert losses[True][-1] < losses[True][0]


def test_the_switch_reads_the_environment(monkeypatch):
    import importlib

    for value, readable in (("1", True), ("0", False), ("", False)):
        monkeypatch.setenv(fast.READABLE_ENV, value)
        assert importlib.reload(fast).enabled() is not readable
    monkeypatch.delenv(fast.READABLE_ENV)
    importlib.reload(fast)


def test_check_layer_checks_the_definition_too(monkeypatch):
    """Training runs the fast variant; a bug in the definition in tfhybrid/ops/ is still
    found, in the rows marked "readable path"."""
    from tfhybrid.audit import check_layer
    from tfhybrid.layers import Sigmoid
    from tfhybrid.layers import activations as layer_module

    assert check_layer(Sigmoid(), (3, 4)).ok
    monkeypatch.setattr(layer_module, "sigmoid_backward", lambda dout, s: dout * s)  # no (1 - s)
    report = check_layer(Sigmoid(), (3, 4))
    assert not report.ok
    wrong = {row.point for row in report.inputs if not row.matches}
    assert wrong == {"readable path", "integer-valued x, readable path"}, wrong
