"""check_op, check_layer and assert_gradients_match on op pairs written here from scratch:
correct pairs pass, and each planted bug is named with its kind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfhybrid._tf import tf
from tfhybrid.audit import check_layer, check_op
from tfhybrid.audit.compare import FACTOR, MATCH, SIGN, WRONG
from tfhybrid.layers import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sigmoid
from tfhybrid.testing import assert_gradients_match

N = 5  # batch


def inputs(seed: int = 0, d: int = 4, m: int = 4):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((N, d)),
        "w": rng.standard_normal((d, m)),
        "b": rng.standard_normal((1, m)),
    }


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return {"x": dout @ w.T, "w": x.T @ dout, "b": dout.sum(axis=0, keepdims=True)}


def affine_reference(x, w, b):
    return tf.matmul(x, w) + b


@pytest.mark.parametrize("reference", [None, affine_reference])
def test_a_correct_op_pair_matches(reference):
    report = check_op(affine_forward, affine_backward, inputs(), reference)
    assert report.ok and report.mismatches == []
    assert report.verdicts == {"x": MATCH, "w": MATCH, "b": MATCH}
    assert ("finite differences only" in str(report)) == (reference is None)
    record = json.loads(report.to_json())
    assert record["ok"] and record["verdicts"]["w"] == MATCH
    if reference is not None:
        assert all(item.vote.unanimous for item in report.inputs)


def planted(kind: str):
    """The affine op's backward with one bug of ``kind``."""

    def backward(dout, cache):
        x, w = cache
        grads = affine_backward(dout, cache)
        if kind == "bias averaged":
            grads["b"] = dout.mean(axis=0, keepdims=True)
        elif kind == "sign flipped":
            grads["x"] = -grads["x"]
        elif kind == "transposed weight gradient":
            grads["w"] = (x.T @ dout).T
        return grads

    return backward


@pytest.mark.parametrize("reference", [None, affine_reference])
@pytest.mark.parametrize(
    "kind,tensor,verdict",
    [
        ("bias averaged", "b", f"{FACTOR} 1/{N}"),
        ("sign flipped", "x", SIGN),
        ("transposed weight gradient", "w", WRONG),
    ],
)
def test_each_planted_bug_is_named_with_its_kind(reference, kind, tensor, verdict):
    report = check_op(affine_forward, planted(kind), inputs(1), reference)
    assert report.mismatches == [tensor], str(report)
    assert report.verdicts[tensor] == verdict, str(report)
    assert not report.ok
    if reference is not None:
        assert report.input(tensor).vote.odd_one_out == "manual"


def mean_softmax_ce_forward(z, y):
    shifted = z - z.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return np.array(-(y * np.log(p)).sum() / len(z)), (p, y)


def test_a_missing_factor_of_the_batch_size():
    rng = np.random.default_rng(2)
    z, y = rng.standard_normal((N, 3)), np.eye(3)[rng.integers(0, 3, N)]

    def backward(dout, cache):
        p, y = cache
        return {"z": dout * (p - y)}  # forgot the mean's 1/N

    def reference(z, y):
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, z))

    report = check_op(mean_softmax_ce_forward, backward, {"z": z, "y": y}, reference)
    assert report.verdicts == {"z": f"{FACTOR} {N}", "y": "not checked"}
    assert report.mismatches == ["z"]


def max_pool_forward(x):
    """2x2 windows, stride 2, of x [N,H,W,C]."""
    n, h, w, c = x.shape
    windows = x.reshape(n, h // 2, 2, w // 2, 2, c)
    out = windows.max(axis=(2, 4))
    return out, (windows, out)


def max_pool_backward_every_tie(dout, cache):
    windows, out = cache
    hit = windows == out[:, :, None, :, None, :]  # every tied maximum: the sources' rule
    dx = hit * dout[:, :, None, :, None, :]
    return {"x": dx.reshape(windows.shape[0], windows.shape[1] * 2, windows.shape[3] * 2, -1)}


def test_max_pool_ties_sent_to_every_maximum():
    rng = np.random.default_rng(3)
    x = np.round(rng.random((2, 6, 6, 2)) * 2)  # values 0, 1, 2: ties in most windows
    report = check_op(
        max_pool_forward,
        max_pool_backward_every_tie,
        {"x": x},
        lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"),
    )
    assert report.verdicts == {"x": WRONG}, str(report)
    assert report.input("x").fd_not_comparable > 0  # ties are kinks: no difference quotient
    distinct = rng.permutation(144).reshape(2, 6, 6, 2).astype(float)  # no ties: it passes
    assert check_op(
        max_pool_forward,
        max_pool_backward_every_tie,
        {"x": distinct},
        lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"),
    ).ok


def test_assert_gradients_match_is_silent_on_a_match_and_shows_the_table_otherwise():
    assert assert_gradients_match(affine_forward, affine_backward, inputs(), affine_reference).ok
    with pytest.raises(AssertionError) as caught:
        assert_gradients_match(affine_forward, planted("bias averaged"), inputs(), affine_reference)
    message = str(caught.value)
    assert message.startswith("gradients do not match: b")
    assert "worst index" in message and f"{FACTOR} 1/{N}" in message


def test_tolerances_can_be_set_per_call():
    def slightly_off(dout, cache):
        grads = affine_backward(dout, cache)
        return {**grads, "w": grads["w"] * (1 + 1e-6)}

    assert not check_op(affine_forward, slightly_off, inputs(), affine_reference).ok
    assert check_op(affine_forward, slightly_off, inputs(), affine_reference, rtol=1e-5).ok
    assert check_op(affine_forward, slightly_off, inputs(), affine_reference, atol=1e-3).ok


@pytest.mark.parametrize(
    "make,needle",
    [
        (
            lambda: check_op(affine_forward, affine_backward, {**inputs(), "w": np.ones((3, 3))}),
            "forward failed on inputs x [5, 4], w [3, 3], b [1, 4]",
        ),
        (lambda: check_op(affine_forward, lambda d, c: {"v": d}, inputs()), "not inputs"),
        (
            lambda: check_op(affine_forward, lambda d, c: {"w": d}, inputs()),
            "gradient for 'w' has shape [5, 4], but input 'w' has shape [4, 4]",
        ),
        (
            lambda: check_op(
                affine_forward, affine_backward, {**inputs(), "x": np.ones((5, 4), int)}
            ),
            "input 'x' has dtype int64",
        ),
        (
            lambda: check_op(lambda x, w, b: x @ w + b, affine_backward, inputs()),
            "forward must return (out, cache)",
        ),
        (lambda: check_op(affine_forward, lambda d, c: [d], inputs()), "must return a dict"),
        (
            lambda: check_op(
                affine_forward, affine_backward, inputs(), lambda x, w, b: tf.matmul(x, w)[:2]
            ),
            "reference's output has shape",
        ),
        (lambda: check_op(affine_forward, affine_backward, {}), "non-empty dict"),
    ],
)
def test_bad_input_is_one_clear_value_error(make, needle):
    with pytest.raises(ValueError) as caught:
        make()
    assert needle in str(caught.value)


@pytest.mark.parametrize(
    "layer,input_shape",
    [
        (Conv2D(3, 3), (6, 6, 2)),
        (Conv2D(2, 3, stride=2, padding=1), (7, 5, 3)),
        (Conv2D(4, 2, stride=3, padding=0, use_bias=False), (8, 8, 1)),
        (Dense(4), (6,)),
        (ReLU(), (4, 4, 3)),
        (Sigmoid(), (3, 5, 2)),
        (AvgPool2D(2), (4, 6, 2)),
        (AvgPool2D(3, 2), (7, 7, 1)),
        (MaxPool2D(2), (6, 6, 2)),
        (MaxPool2D(3, 2), (7, 7, 2)),
        (Flatten(), (2, 3, 2)),
    ],
)
def test_every_builtin_layer_passes_check_layer(layer, input_shape):
    report = check_layer(layer, input_shape, batch=3, seed=4)
    assert report.ok, str(report)
    expected = {"x", *layer.param_shapes(input_shape)}
    assert set(report.verdicts) == expected and set(report.verdicts.values()) == {MATCH}


def test_check_layer_catches_a_planted_bug_in_a_users_layer():
    from tfhybrid.layers import Layer

    class LeakyReLU(Layer):
        def __init__(self, slope: float = 0.1, bug: bool = False):
            super().__init__()
            self.slope, self.bug = slope, bug

        def forward(self, params, x):
            return np.where(x > 0, x, self.slope * x), x > 0

        def backward(self, dout, cache, need_dx=True):
            slope = 1.0 if self.bug else self.slope  # the bug: no slope below zero
            return np.where(cache, dout, slope * dout), {}

        def reference(self, params, x):
            # Not tf.nn.leaky_relu: its slope is a float32 attribute, 1e-9 off in float64.
            return tf.where(x > 0, x, self.slope * x)

    assert check_layer(LeakyReLU(), (4, 4, 2)).ok
    broken = check_layer(LeakyReLU(bug=True), (4, 4, 2))
    assert broken.verdicts == {"x": WRONG} and broken.input("x").vote.odd_one_out == "manual"


def test_a_keras_layer_as_the_reference():
    keras = tf.keras
    values = inputs(5, d=4, m=3)
    report = check_op(
        affine_forward, affine_backward, values, keras.layers.Dense(3), weights=("w", "b")
    )  # Keras's bias is [3]; ours [1,3]: reshaped
    assert report.ok and report.reference.startswith("keras Dense"), str(report)
    wrong = check_op(
        affine_forward, planted("bias averaged"), values, keras.layers.Dense(3), weights=("w", "b")
    )
    assert wrong.verdicts == {"x": MATCH, "w": MATCH, "b": f"{FACTOR} 1/{N}"}

    from tfhybrid.ops.conv import conv2d_backward, conv2d_forward

    def conv_forward(x, w, b):
        return conv2d_forward(x, w, b, 2, 0)

    def conv_backward(dout, cache):
        grads = conv2d_backward(dout, cache)
        return {"x": grads["dx"], "w": grads["dw"], "b": grads["db"]}

    rng = np.random.default_rng(6)
    conv = {
        "x": rng.standard_normal((2, 7, 7, 2)),
        "w": rng.standard_normal((3, 3, 2, 4)),
        "b": rng.standard_normal(4),
    }
    assert check_op(
        conv_forward, conv_backward, conv, keras.layers.Conv2D(4, 3, strides=2), weights=("w", "b")
    ).ok


@pytest.mark.parametrize(
    "bias,weights,needle",
    [
        (False, ("w", "b"), "has 1 weights (kernel), but weights= names 2"),
        (True, ("b", "w"), "input 'b' has shape [1, 3], but Dense's kernel has shape [4, 3]"),
        (True, (), "one call input besides its weights"),
        (True, ("w", "v"), "weights ['v'] are not inputs"),
    ],
)
def test_keras_reference_errors_name_the_problem(bias, weights, needle):
    with pytest.raises(ValueError) as caught:
        check_op(
            affine_forward,
            affine_backward,
            inputs(5, d=4, m=3),
            tf.keras.layers.Dense(3, use_bias=bias),
            weights=weights,
        )
    assert needle in str(caught.value)


def test_every_example_in_docs_check_your_own_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "check-your-own.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 9
    for block in blocks:
        exec(block, {})  # each block is self-contained and asserts what it shows
