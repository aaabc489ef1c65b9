"""Likely causes that never mislead: a factor-based cause is confirmed at a second shape
before it is printed as one, else said to be unconfirmed with every count it equals; a
backward that ignores dout and two swapped axes are named as such. Each planted bug here
is a small op or layer written for this file, checked at tiny shapes; every verdict and
every cause line is asserted."""

from __future__ import annotations

import numpy as np
import pytest

from tfhybrid import Sequential
from tfhybrid._tf import tf
from tfhybrid.audit import audit, check_layer, check_op
from tfhybrid.audit.compare import FACTOR, MATCH, WRONG
from tfhybrid.audit.confirm import IGNORES_UPSTREAM
from tfhybrid.layers import Conv2D, Dense, Flatten, Layer

UNVARIED = "the check could not vary the shapes (check_op's make_inputs lets it)"
TAPS = "the kernel's taps over the input channels"


def causes(report) -> list[str]:
    return [line for line in str(report).splitlines() if "likely cause" in line]


# --- the planted bugs ------------------------------------------------------------------------
def conv_valid(x, w):
    """x [N,H,W,C] * w [k,k,C,F] -> [N,H-k+1,W-k+1,F]: stride 1, no padding, tap by tap."""
    k, ho, wo = w.shape[0], x.shape[1] - w.shape[0] + 1, x.shape[2] - w.shape[0] + 1
    out = np.zeros((len(x), ho, wo, w.shape[3]))
    for p in range(k):
        for q in range(k):
            out += x[:, p : p + ho, q : q + wo, :] @ w[p, q]
    return out


def conv_valid_backward(dout, x, w, need_dx=True):
    """(dx, dw) of conv_valid for dout [N,Ho,Wo,F]."""
    k, ho, wo = w.shape[0], dout.shape[1], dout.shape[2]
    dw, dx = np.zeros_like(w), np.zeros_like(x)
    for p in range(k):
        for q in range(k):
            window = x[:, p : p + ho, q : q + wo, :]
            dw[p, q] = window.reshape(-1, x.shape[3]).T @ dout.reshape(-1, w.shape[3])
            dx[:, p : p + ho, q : q + wo, :] += dout @ w[p, q].T
    return (dx if need_dx else None), dw


class TapBias(Layer):
    """A convolution whose forward adds its bias inside the sum over the kernel's taps
    (once per tap and input channel, kh*kw*C times); its backward is the textbook one
    (db = dout summed), so db is 1/(kh*kw*C) of the true gradient."""

    prefix = "z"

    def __init__(self, filters: int, k: int):
        super().__init__()
        self.filters, self.k = filters, k

    def param_shapes(self, input_shape):
        return {"w": (self.k, self.k, input_shape[-1], self.filters), "b": (1, self.filters)}

    def output_shape(self, input_shape):
        h, w, _ = input_shape
        return (h - self.k + 1, w - self.k + 1, self.filters)

    def forward(self, params, x):
        taps = self.k * self.k * x.shape[3]
        return conv_valid(x, params["w"]) + taps * params["b"][0], (x, params["w"])

    def backward(self, dout, cache, need_dx=True):
        x, w = cache
        dx, dw = conv_valid_backward(dout, x, w, need_dx)
        return dx, {"w": dw, "b": dout.sum(axis=(0, 1, 2))[None]}

    def reference(self, params, x):
        taps = self.k * self.k * x.shape[3]
        return tf.nn.conv2d(x, params["w"], 1, "VALID") + taps * params["b"][0]


class MeanBiasDense(Dense):
    """Dense whose bias gradient is a mean over the batch where the sum belongs."""

    def backward(self, dout, cache, need_dx=True):
        dx, grads = super().backward(dout, cache, need_dx)
        return dx, {**grads, "b": dout.mean(axis=0, keepdims=True)}


class DoubledSigmoid(Layer):
    """sigmoid, its backward with a literal 2 written in: 2 * dout * s * (1 - s)."""

    prefix = "s"

    def forward(self, params, x):
        s = 1 / (1 + np.exp(-x))
        return s, s

    def backward(self, dout, cache, need_dx=True):
        return 2 * dout * cache * (1 - cache), {}

    def reference(self, params, x):
        return tf.sigmoid(x)


class MaskReLU(Layer):
    """ReLU whose backward returns the mask alone, never multiplied by dout."""

    prefix = "a"

    def forward(self, params, x):
        return np.maximum(x, 0), x > 0

    def backward(self, dout, cache, need_dx=True):
        return cache.astype(dout.dtype), {}

    def reference(self, params, x):
        return tf.nn.relu(x)


def sigmoid_forward(x):
    s = 1 / (1 + np.exp(-x))
    return s, s


def sigmoid_doubled(dout, cache):
    return {"x": 2 * dout * cache * (1 - cache)}


def pool_forward(x):
    """2x2 average pooling of x [N,H,W,C], H and W even."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4)), x.shape


def pool_backward_swapped(dout, cache):
    """Spreads each window's gradient in a [N,W,H,C] work array (height and width swapped)
    and reshapes it to x's shape where it must transpose it back."""
    n, h, w, c = cache
    spread = np.repeat(np.repeat(dout, 2, axis=1), 2, axis=2) / 4
    return {"x": spread.transpose(0, 2, 1, 3).reshape(n, h, w, c)}


def pool_backward_channels_first(dout, cache):
    """Spreads the gradient channels first ([N,C,H,W]) and reshapes it to NHWC."""
    n, h, w, c = cache
    spread = np.repeat(np.repeat(dout, 2, axis=1), 2, axis=2) / 4
    return {"x": spread.transpose(0, 3, 1, 2).reshape(n, h, w, c)}


def pool_reference(x):
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


LABELS = np.eye(3)[[0, 2, 1, 1]]


def loss_forward(logits):
    """The softmax cross-entropy of logits [4,3] against LABELS, a mean over the batch."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = z / z.sum(axis=1, keepdims=True)
    return np.array(-np.mean(np.sum(LABELS * np.log(p), axis=1))), p


def loss_backward_without_dout(dout, p):
    """The loss's gradient as if dout were 1: (p - y) / N, never multiplied by dout."""
    return {"logits": (p - LABELS) / len(p)}


def loss_reference(logits):
    return -tf.reduce_mean(tf.reduce_sum(LABELS * tf.nn.log_softmax(logits), axis=1))


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_mean_bias(dout, cache):
    x, w = cache
    return {"x": dout @ w.T, "w": x.T @ dout, "b": dout.mean(axis=0, keepdims=True)}


def affine_reference(x, w, b):
    return tf.matmul(x, w) + b


def affine_inputs(batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    return {
        "x": rng.standard_normal((batch, 3)),
        "w": rng.standard_normal((3, 2)),
        "b": rng.standard_normal((1, 2)),
    }


def images(batch: int, channels: int = 2) -> dict[str, np.ndarray]:
    """x [batch, batch + 1, batch + 1, channels]: the image size moves with the batch."""
    size = batch + 1
    return {"x": np.random.default_rng(batch).standard_normal((batch, size, size, channels))}


# --- a mean where a sum belongs: 1/N, confirmed --------------------------------------------
def test_a_mean_over_the_batch_is_confirmed_at_a_second_batch():
    report = check_layer(MeanBiasDense(2), (3,), batch=4, ties=False)
    record = report.input("b")
    assert record.verdict == f"{FACTOR} 1/4"
    assert record.cause == "1/4 = 1/N (the batch of 4)"
    assert causes(report) == [  # Dense is also checked on its compiled (fused) path
        "likely cause: b is off by 1/4 = 1/N (the batch of 4)",
        "likely cause: b @ fused path is off by 1/4 = 1/N (the batch of 4)",
    ]
    assert report.verdicts == {"x": MATCH, "w": MATCH, "b": f"{FACTOR} 1/4"}


def test_check_op_confirms_a_mean_with_make_inputs_and_says_unconfirmed_without():
    args = (affine_forward, affine_mean_bias, affine_inputs(4), affine_reference)
    confirmed = check_op(*args, make_inputs=affine_inputs)
    assert confirmed.input("b").verdict == f"{FACTOR} 1/4"
    assert confirmed.input("b").cause == "1/4 = 1/N (the batch of 4)"
    unconfirmed = check_op(*args)
    assert unconfirmed.input("b").verdict == f"{FACTOR} 1/4"
    expected = f"1/4: equals 1/N (the batch of 4); unconfirmed: {UNVARIED}"
    assert unconfirmed.input("b").cause == expected


def test_a_mean_over_the_batch_in_a_network_is_confirmed_in_both_lines():
    net = Sequential([Flatten(), Dense(4), MeanBiasDense(3)], input_shape=(2, 2, 1), seed=1)
    rng = np.random.default_rng(2)
    report = audit(net, rng.random((4, 2, 2, 1)), np.eye(3)[[0, 1, 2, 1]], fd_samples=4)
    assert report.tensor("db2").verdict == f"{FACTOR} 1/4"
    assert [t.name for t in report.tensors if not t.matches] == ["db2"]
    assert causes(report) == [
        "likely cause: db2 is off by 1/4 = 1/N (the batch of 4)",
        "  likely cause: layer 2 db is off by 1/4 = 1/N (the batch of 4)",
    ]


# --- a bias added once per kernel tap: 1/(kh*kw*C), never N*Ho*Wo ------------------------------
@pytest.mark.parametrize("channels,factor", [(2, 18), (3, 27)])
def test_a_bias_added_once_per_tap_is_named_after_the_taps_at_two_channel_counts(channels, factor):
    """At 2 channels, 1/18 is also 1/N*Ho*Wo (2x3x3) by the shapes chosen; at 3, only the
    taps (3x3x3 = 27). check_layer varies the batch, size and channels: kh*kw*C follows."""
    report = check_layer(TapBias(4, 3), (5, 5, channels), batch=2, ties=False)
    assert report.verdicts == {"x": MATCH, "w": MATCH, "b": f"{FACTOR} 1/{factor}"}
    cause = f"1/{factor} = 1/kh*kw*C (3x3x{channels}, {TAPS})"
    assert report.input("b").cause == cause
    assert causes(report) == [f"likely cause: b is off by {cause}"]


def test_a_bias_added_once_per_tap_in_a_network_is_not_put_down_to_the_batch():
    """In a network the weights are kept, so the channels are not varied: the taps stay a
    candidate, unconfirmed, and N*Ho*Wo (2x3x3 = 18 too) is ruled out."""
    net = Sequential(
        [TapBias(4, 3), Flatten(), Dense(3)], input_shape=(5, 5, 2), seed=0, dtype=np.float64
    )
    rng = np.random.default_rng(0)
    report = audit(net, rng.standard_normal((2, 5, 5, 2)), np.eye(3)[[0, 2]], fd_samples=4)
    assert report.tensor("db1").verdict == f"{FACTOR} 1/18"
    assert report.mismatches == ["db1", "update"]
    cause = (
        f"1/18: equals 1/kh*kw*C (3x3x2, {TAPS}); unconfirmed: the check cannot vary it "
        "(it stays 1/18 at x [3,10,10,2]; N*Ho*Wo ruled out)"
    )
    assert report.tensor("db1").cause == cause
    assert causes(report) == [
        f"likely cause: db1 is off by {cause}",
        f"  likely cause: layer 0 db is off by {cause}",
    ]


# --- a factor written into the code: never a count ---------------------------------------------
def test_a_literal_factor_two_is_a_constant_where_the_check_varies_every_size():
    report = check_layer(DoubledSigmoid(), (3, 3, 2), batch=2, ties=False)
    assert report.verdicts == {"x": f"{FACTOR} 2"}
    assert report.input("x").cause == (
        "2 at every shape tried (also x [3,6,6,3], where N, C_out and C_in change): a "
        "constant, not a count of the layer (a number written into the code)"
    )


def test_a_literal_factor_two_is_unconfirmed_where_the_check_cannot_vary_the_shapes():
    x = {"x": np.random.default_rng(0).standard_normal((2, 3, 3, 2))}
    report = check_op(sigmoid_forward, sigmoid_doubled, x, tf.sigmoid)
    assert report.verdicts == {"x": f"{FACTOR} 2"}
    cause = (
        "2: equals N (the batch of 2), the 2 output channels and the 2 input channels; "
        f"unconfirmed: {UNVARIED}"
    )
    assert report.input("x").cause == cause
    assert "used twice" not in str(report)
    # make_inputs varies the batch and size, not the channels: N is ruled out
    varied = check_op(sigmoid_forward, sigmoid_doubled, x, tf.sigmoid, make_inputs=images)
    assert varied.input("x").cause == (
        "2: equals the 2 output channels and the 2 input channels; unconfirmed: the check "
        "cannot vary them (it stays 2 at x [3,4,4,2]; N ruled out)"
    )


# --- a backward that ignores its upstream gradient ------------------------------------------------
def test_a_loss_whose_backward_ignores_dout_is_named():
    logits = {"logits": np.random.default_rng(0).standard_normal((4, 3))}
    report = check_op(loss_forward, loss_backward_without_dout, logits, loss_reference)
    dout = np.random.default_rng(0).standard_normal(())  # the check's scalar upstream draw
    record = report.input("logits")
    assert record.verdict.startswith(FACTOR)
    assert abs(record.manual.scale * dout - 1) < 1e-6  # off by 1/dout
    assert record.cause == IGNORES_UPSTREAM
    assert causes(report) == [f"likely cause: logits {IGNORES_UPSTREAM}"]


def test_a_layer_whose_backward_ignores_dout_is_named_whatever_its_verdict():
    report = check_layer(MaskReLU(), (3, 3, 2), batch=2, ties=False)
    assert report.verdicts == {"x": WRONG}
    assert report.input("x").cause == IGNORES_UPSTREAM


# --- two axes swapped, before "constant along an axis" ------------------------------------------
def test_height_and_width_swapped_in_a_pooling_backward_are_named():
    """At 2x4 the swapped gradient is constant along the width, where the true one varies:
    read as "constant along axis 2" before the swap was tried first."""
    x = {"x": np.random.default_rng(0).standard_normal((2, 2, 4, 3))}
    report = check_op(pool_forward, pool_backward_swapped, x, pool_reference)
    assert report.verdicts == {"x": WRONG}
    cause = (
        "the true gradient with two axes swapped: height and width (axes 1 and 2 of "
        "[N,H,W,C]), laid out as [2,4,2,3] and read back as [2,2,4,3]"
    )
    assert report.input("x").cause == cause
    assert causes(report) == [f"likely cause: x equals {cause}"]


def test_height_and_width_swapped_at_a_square_size_are_named():
    x = {"x": np.random.default_rng(1).standard_normal((2, 4, 4, 3))}
    report = check_op(pool_forward, pool_backward_swapped, x, pool_reference)
    assert report.verdicts == {"x": WRONG}
    assert report.input("x").cause == (
        "the true gradient with two axes swapped: height and width (axes 1 and 2 of [N,H,W,C])"
    )


def test_channels_and_positions_swapped_are_named():
    x = {"x": np.random.default_rng(2).standard_normal((2, 4, 2, 3))}
    report = check_op(pool_forward, pool_backward_channels_first, x, pool_reference)
    assert report.verdicts == {"x": WRONG}
    assert report.input("x").cause == (
        "the true gradient with two axes swapped: channels and positions (laid out "
        "[N,C,H,W], read as [N,H,W,C])"
    )


# --- correct code: no cause, and nothing run again ----------------------------------------------
def test_correct_code_has_no_cause_and_is_never_run_again():
    calls = []

    def make_inputs(batch):
        calls.append(batch)
        return affine_inputs(batch)

    def affine_backward(dout, cache):
        x, w = cache
        return {"x": dout @ w.T, "w": x.T @ dout, "b": dout.sum(axis=0, keepdims=True)}

    report = check_op(
        affine_forward, affine_backward, affine_inputs(4), affine_reference, make_inputs=make_inputs
    )
    assert report.ok and report.verdicts == {"x": MATCH, "w": MATCH, "b": MATCH}
    assert causes(report) == [] and calls == []
    layer = check_layer(Conv2D(3, 3), (5, 5, 2), batch=2)
    assert layer.ok and causes(layer) == []


def test_the_articles_bias_rule_is_still_confirmed_as_a_mean_over_the_positions():
    report = check_layer(Conv2D(2, 3, bias_grad="seed"), (6, 6, 1), batch=2, ties=False)
    assert report.input("b").verdict == f"{FACTOR} 1/16"
    assert report.input("b").cause == "1/16 = 1/Ho*Wo (4x4 output positions)"


def test_make_inputs_must_be_a_function():
    with pytest.raises(ValueError, match="make_inputs must be a function of a batch size"):
        check_op(affine_forward, affine_mean_bias, affine_inputs(4), make_inputs=3)


def test_a_factor_inherited_from_the_layer_above_is_not_put_down_to_the_layer_below():
    """dw1 inherits DoubledSigmoid's 2, which equals N only by the batch of 2."""
    net = Sequential([Flatten(), Dense(4), DoubledSigmoid(), Dense(3)], input_shape=(2, 2, 1))
    rng = np.random.default_rng(2)
    report = audit(net, rng.random((2, 2, 2, 1)), np.eye(3)[[0, 1]], fd_samples=4)
    verdicts = {t.name: t.verdict for t in report.tensors if not t.matches}
    assert verdicts == {"dw1": f"{FACTOR} 2", "db1": f"{FACTOR} 2", "dz1": f"{FACTOR} 2"}
    inherited = (
        "2: equals N (the batch of 2); unconfirmed: its layer's own backward is not off by "
        "it (fed the true upstream gradient), so it comes from the layers above"
    )
    own = (
        "2 at every shape tried (also x [3,4], where N changes): a constant, not a count of "
        "the layer (a number written into the code)"
    )
    assert causes(report) == [
        f"likely cause: dw1 is off by {inherited}",
        f"likely cause: db1 is off by {inherited}",
        f"likely cause: dz1 is off by {own}",
        f"  likely cause: layer 2 dx is off by {own}",
    ]


def test_a_factor_that_moves_with_no_count_is_unconfirmed():
    from tfhybrid.audit.causes import layer_quantities
    from tfhybrid.audit.confirm import SecondShape, confirmed_factor

    here = layer_quantities((2, 4, 4, 1), (2, 3, 3, 2))  # N*Ho*Wo = 18
    there = SecondShape({"b": 1 / 30}, layer_quantities((3, 8, 8, 1), (3, 7, 7, 2)), "x [3,8,8,1]")
    assert confirmed_factor("b", 1 / 18, here, there) == (
        "1/18: equals 1/N*Ho*Wo (2x3x3); unconfirmed: at x [3,8,8,1] it is 1/30, which none "
        "of them follows"
    )
    assert confirmed_factor("b", 1 / 5, here, there) is None  # no count: no cause
