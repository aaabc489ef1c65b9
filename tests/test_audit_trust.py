"""The audit on code as learners write it: nothing compared is never a match, code that
writes into its arguments, float32 code, ties and zeros, one-element tensors, valid
subgradients, the layer at fault, the likely cause, per-example gradients."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import tfhybrid
from tfhybrid._tf import tf
from tfhybrid.audit import audit, check_layer, check_op
from tfhybrid.audit.compare import FACTOR, MATCH, WRONG
from tfhybrid.audit.judge import NOT_CHECKED
from tfhybrid.audit.vote import INCONSISTENT
from tfhybrid.layers import Dense, Flatten, Layer, MaxPool2D


def matmul_forward(x, w):
    """x [N,D] @ w [D,M]; the cache is (x, w)."""
    return x @ w, (x, w)


def max_pool_forward(x):
    """2x2 windows, stride 2, of x [N,H,W,C]."""
    n, h, w, c = x.shape
    windows = x.reshape(n, h // 2, 2, w // 2, 2, c)
    out = windows.max(axis=(2, 4))
    return out, (windows, out)


def _spread(dout, windows, weights):
    dx = weights * dout[:, :, None, :, None, :]
    return {"x": dx.reshape(windows.shape[0], windows.shape[1] * 2, windows.shape[3] * 2, -1)}


def every_tie(dout, cache):  # the whole gradient to every tied maximum: not a subgradient
    windows, out = cache
    return _spread(dout, windows, windows == out[:, :, None, :, None, :])


def shared_ties(dout, cache):  # equal shares among the tied maxima: a valid subgradient
    windows, out = cache
    hit = windows == out[:, :, None, :, None, :]
    return _spread(dout, windows, hit / hit.sum(axis=(2, 4), keepdims=True))


def tf_max_pool(x):
    return tf.nn.max_pool2d(x, 2, 2, "VALID")


ZEROS = {"x": np.zeros((1, 4, 4, 1))}


# --- 1. nothing compared is never a match; the check tries harder first ----------------
def test_ties_everywhere_without_a_reference_are_judged_not_waved_through():
    report = check_op(max_pool_forward, every_tie, ZEROS)
    assert report.verdicts == {"x": WRONG} and not report.ok, str(report)
    item = report.input("x")
    assert item.fd_not_comparable == item.fd_count == 16  # every coordinate is a kink
    assert item.kinks is not None and item.kinks.failed
    assert check_op(max_pool_forward, shared_ties, ZEROS).ok  # the valid rule passes


def test_a_tensor_with_nothing_compared_is_not_checked_and_not_ok():
    def forward(x):  # a jump at each point checked: no slope measures anything there
        return np.where(x >= 0, x + 1, x), None

    report = check_op(forward, lambda d, c: {"x": d}, {"x": np.zeros(2)})
    verdict = report.verdicts["x"]
    assert verdict.startswith(f"{NOT_CHECKED}: ") and not report.ok, str(report)
    assert report.mismatches == ["x"]


# --- 2. code that writes into its arguments --------------------------------------------
def test_a_forward_that_scales_its_input_in_place_gets_the_factor_it_deserves():
    def forward(x):
        x *= 3
        return x, None

    report = check_op(forward, lambda d, c: {"x": d}, {"x": np.array([1.0, 2.0])})
    assert report.verdicts == {"x": f"{FACTOR} 1/3"}, str(report)
    right = check_op(forward, lambda d, c: {"x": 3 * d}, {"x": np.array([1.0, 2.0])})
    assert right.ok, str(right)


class InPlaceReLU(Layer):
    """The textbook's ReLU: backward zeroes ``dout`` in place (``inverted``: the bug)."""

    prefix = "a"

    def __init__(self, inverted: bool = False):
        super().__init__()
        self.inverted = inverted

    def forward(self, params, x):
        mask = x <= 0
        x[mask] = 0  # writes into its input, too
        return x, mask

    def backward(self, dout, cache, need_dx=True):
        dout[~cache if self.inverted else cache] = 0
        return dout, {}

    def reference(self, params, x):
        return tf.nn.relu(x)


def small_net(relu: Layer, seed: int = 0) -> tfhybrid.Sequential:
    return tfhybrid.Sequential(
        [Flatten(), Dense(6), relu, Dense(3)], input_shape=(4, 4, 1), dtype=np.float64, seed=seed
    )


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 4, 4, 1))
    return x, np.eye(3)[rng.integers(0, 3, 4)]


def test_in_place_layers_pass_every_level_and_train(batch):
    x, y = batch
    assert check_layer(InPlaceReLU(), (3, 5)).ok
    kept = x.copy()
    report = audit(small_net(InPlaceReLU()), x, y)
    assert report.ok, str(report)
    assert np.array_equal(x, kept)  # the check's own points are untouched
    # Trains as the built-in ReLU does: the same weights after a few steps.
    nets = [small_net(InPlaceReLU()), small_net(tfhybrid.layers.ReLU())]
    for net in nets:
        for _ in range(3):
            grads = net.gradients(x, y)
            for key, grad in grads.items():
                net.params[key] -= 0.1 * grad
    for key in nets[0].params:
        np.testing.assert_allclose(nets[0].params[key], nets[1].params[key], rtol=1e-12)


# --- 3. float32 code -------------------------------------------------------------------
def _conv_pair(rotated: bool):
    def forward(x, w):
        xt, wt = tf.constant(x, tf.float32), tf.constant(w, tf.float32)
        return tf.nn.conv2d(xt, wt, 1, "VALID").numpy(), (xt, wt)

    def backward(dout, cache):
        xt, wt = cache
        d = tf.constant(dout, tf.float32)
        dw = tf.compat.v1.nn.conv2d_backprop_filter(xt, wt.shape, d, [1] * 4, "VALID").numpy()
        dx = tf.compat.v1.nn.conv2d_backprop_input(xt.shape, wt, d, [1] * 4, "VALID").numpy()
        return {"x": dx, "w": dw[::-1, ::-1] if rotated else dw}

    return forward, backward


@pytest.mark.parametrize("with_reference", [False, True])
def test_float32_code_is_judged_at_float32_tolerances(with_reference):
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal((2, 5, 5, 2)), "w": rng.standard_normal((3, 3, 2, 2))}
    reference = (lambda x, w: tf.nn.conv2d(x, w, 1, "VALID")) if with_reference else None
    right = check_op(*_conv_pair(False), values, reference)
    assert right.ok and right.precision == "float32", str(right)
    rotated = check_op(*_conv_pair(True), values, reference)
    assert rotated.verdicts == {"x": MATCH, "w": WRONG}, str(rotated)
    if with_reference:
        assert "rotated 180 degrees" in rotated.input("w").cause


# --- 4. check_layer sees ties and zeros -------------------------------------------------
def test_check_layer_tries_inputs_with_ties():
    assert check_layer(MaxPool2D(2), (4, 4, 2)).ok
    report = check_layer(MaxPool2D(2, ties="all"), (4, 4, 2))
    assert report.verdicts == {"x": WRONG}, str(report)
    assert "integer-valued" in report.input("x").point
    # The user's own input: a draw without ties cannot see the rule.
    distinct = np.random.default_rng(1).permutation(64).reshape(2, 4, 4, 2).astype(float)
    assert check_layer(MaxPool2D(2, ties="all"), (4, 4, 2), x=distinct, ties=False).ok
    with pytest.raises(ValueError, match=r"x must have shape \[N,4,4,2\]"):
        check_layer(MaxPool2D(2), (4, 4, 2), x=np.zeros((2, 3, 3, 2)))


# --- 5. one element is no evidence of a factor ------------------------------------------
def test_a_one_element_gradient_is_wrong_not_a_factor():
    x = np.random.default_rng(2).standard_normal((3, 4))

    def forward(x, alpha):
        return np.where(x > 0, x, alpha * x), (x, alpha)

    def backward(dout, cache):  # dalpha forgets the negative mask
        x, alpha = cache
        return {"x": np.where(x > 0, dout, alpha * dout), "alpha": np.array([np.sum(dout * x)])}

    def reference(x, alpha):
        return tf.where(x > 0, x, alpha * x)

    for ref in (None, reference):
        report = check_op(forward, backward, {"x": x, "alpha": np.array([0.25])}, ref)
        assert report.verdicts == {"x": MATCH, "alpha": WRONG}, str(report)


# --- 6. valid subgradients pass, invalid ones do not -----------------------------------
def test_relu_derivative_one_at_zero_is_a_valid_subgradient():
    x = np.array([[0.0, 1.3], [-0.4, 0.0]])

    def forward(x):
        return np.maximum(x, 0), x

    report = check_op(forward, lambda d, c: {"x": d * (c >= 0)}, {"x": x}, lambda x: tf.nn.relu(x))
    assert report.ok and report.input("x").departures == 2, str(report)
    assert "departs from TensorFlow's convention at 2" in str(report)
    doubled = check_op(
        forward, lambda d, c: {"x": 2 * d * (c >= 0)}, {"x": x}, lambda x: tf.nn.relu(x)
    )
    assert not doubled.ok


def test_tie_shares_pass_and_the_whole_gradient_to_every_tie_does_not():
    assert check_op(max_pool_forward, shared_ties, ZEROS, tf_max_pool).ok
    assert check_op(max_pool_forward, every_tie, ZEROS, tf_max_pool).verdicts == {"x": WRONG}


# --- 7, 8. printable reports; every label documented -----------------------------------
def test_every_report_prints_as_its_table(batch):
    x, y = batch
    text = str(audit(small_net(tfhybrid.layers.ReLU()), x, y))
    assert text.startswith("gradient audit:") and "AuditReport(" not in text
    assert "result: every gradient matches" in text


def test_every_label_the_reports_print_is_documented():
    from pathlib import Path

    docs = "".join(
        (Path(__file__).resolve().parent.parent / "docs" / name).read_text()
        for name in ("audit.md", "check-your-own.md")
    )
    for label in (
        INCONSISTENT,
        "odd one out",
        "no two agree",
        "all agree",
        NOT_CHECKED,
        "layer at fault",
        "inherits",
        "likely cause",
        "valid subgradient",
    ):
        assert label in docs, label


# --- the layer at fault and the likely cause --------------------------------------------
def test_the_layer_at_fault_and_the_layers_that_inherit(batch):
    x, y = batch
    report = audit(small_net(InPlaceReLU(inverted=True)), x, y)
    assert report.layer_at_fault.index == 2 and report.layer_at_fault.layer == "InPlaceReLU"
    assert "layer at fault: 2 (InPlaceReLU" in str(report)
    statuses = {v.index: v.status for v in report.layers}
    assert statuses == {3: "ok", 2: "at fault", 1: "inherits"}
    record = json.loads(json.dumps(report.to_dict()))
    assert record["layer_at_fault"] == 2


def test_a_bias_mean_is_at_fault_alone_with_its_cause():
    net = tfhybrid.build_model("seed-cnn", dtype=np.float64)
    rng = np.random.default_rng(3)
    x, y = rng.random((2, 28, 28, 1)), np.eye(10)[[1, 7]]
    report = audit(net, x, y)
    assert report.mismatches == ["db1", "update"] and report.layer_at_fault.index == 0
    assert [v.status for v in report.layers] == ["ok"] * 4 + ["at fault"]
    text = str(report)
    assert "1/400 = 1/Ho*Wo (20x20 output positions)" in text, text


@pytest.mark.parametrize(
    "change,needle",
    [
        # a literal 4 that equals N only by the shapes chosen: named, never confirmed
        (lambda g: g * 4, "4: equals N (the batch of 4); unconfirmed"),
        (lambda g: g[::-1, ::-1], "rotated 180"),
        (lambda g: np.roll(g, 1, axis=0) * (np.arange(len(g)) > 0)[:, None], "shifted by +1"),
        (lambda g: np.repeat(g.mean(axis=0, keepdims=True), len(g), axis=0), "constant along"),
    ],
)
def test_causes_are_named(change, needle):
    rng = np.random.default_rng(4)
    values = {"x": rng.standard_normal((4, 5)), "w": rng.standard_normal((5, 5))}

    def backward(dout, cache):
        x, w = cache
        return {"x": change(dout @ w.T), "w": x.T @ dout}

    report = check_op(matmul_forward, backward, values, lambda x, w: tf.matmul(x, w))
    assert needle in (report.input("x").cause or ""), str(report)


# --- per-example gradients --------------------------------------------------------------
class SwappedDense(Dense):
    """Per-example gradients handed to the wrong samples: their sum is still right."""

    def backward_per_example(self, dout, cache, need_dx=True):
        dx, grads = super().backward_per_example(dout, cache, need_dx)
        return dx, {k: np.roll(v, 1, axis=0) for k, v in grads.items()}


def test_per_example_gradients_are_audited(batch):
    x, y = batch
    net = tfhybrid.Sequential(
        [Flatten(), Dense(5), tfhybrid.layers.ReLU(), SwappedDense(3)],
        input_shape=(4, 4, 1),
        dtype=np.float64,
    )
    assert audit(net, x, y).ok  # the batch gradient is right
    report = audit(net, x, y, per_example=True)
    assert report.mismatches == ["dw2:per-example", "db2:per-example"], str(report)
    assert report.layer_at_fault.index == 3
    assert len(report.per_example_norms["w1"]) == len(x)
    assert "per-example gradient norms" in str(report)
    right = small_net(tfhybrid.layers.ReLU())
    assert audit(right, x, y, per_example=True).ok


# --- found by trying it as a new user ---------------------------------------------------
def test_the_whole_gradient_to_every_tie_is_wrong_on_a_large_flat_input():
    x = np.full((2, 26, 26, 2), -0.5)  # every window tied but one
    x[:, 0, 0, :] = 1.0
    assert check_layer(MaxPool2D(2, ties="all"), (26, 26, 2), x=x, ties=False).verdicts == {
        "x": WRONG
    }
    assert check_layer(MaxPool2D(2), (26, 26, 2), x=x, ties=False).ok
    assert check_op(max_pool_forward, every_tie, {"x": x}).verdicts == {"x": WRONG}
    assert check_op(max_pool_forward, shared_ties, {"x": x}).ok


class ReLUAtZeroOne(Layer):
    """ReLU whose derivative at 0 is 1: a valid subgradient, not TensorFlow's choice."""

    prefix = "a"

    def forward(self, params, x):
        return np.maximum(x, 0), x

    def backward(self, dout, cache, need_dx=True):
        return dout * (cache >= 0), {}

    def reference(self, params, x):
        return tf.nn.relu(x)


def test_a_valid_subgradient_inside_a_network_passes():
    from tfhybrid.layers import Conv2D

    x = np.zeros((2, 8, 8, 1))  # a blank background: pre-activations exactly 0
    x[:, 3:6, 3:6, 0] = np.random.default_rng(5).random((2, 3, 3))
    net = tfhybrid.Sequential(
        [Conv2D(2, 3), ReLUAtZeroOne(), Flatten(), Dense(3)],
        input_shape=(8, 8, 1),
        dtype=np.float64,
    )
    report = audit(net, x, np.eye(3)[[0, 2]])
    assert report.ok, str(report)
    assert "follows the valid subgradients of layer 1 (ReLUAtZeroOne)" in str(report)


class BatchNorm(Layer):
    """Batch norm over all axes but the channels, with its batch-statistics terms."""

    prefix = "bn"

    def param_shapes(self, input_shape):
        return {"g": (input_shape[-1],), "b": (input_shape[-1],)}

    def forward(self, params, x):
        axes = tuple(range(x.ndim - 1))
        var = x.var(axes)
        xhat = (x - x.mean(axes)) / np.sqrt(var + 1e-5)
        return params["g"] * xhat + params["b"], (xhat, params["g"], var, axes)

    def backward(self, dout, cache, need_dx=True):
        xhat, g, var, axes = cache
        m, dxhat = dout.size // dout.shape[-1], dout * g
        dx = (m * dxhat - dxhat.sum(axes) - xhat * (dxhat * xhat).sum(axes)) / (
            m * np.sqrt(var + 1e-5)
        )
        return dx, {"g": (dout * xhat).sum(axes), "b": dout.sum(axes)}

    def reference(self, params, x):
        mean, var = tf.nn.moments(x, list(range(len(x.shape) - 1)))
        return params["g"] * (x - mean) / tf.sqrt(var + 1e-5) + params["b"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_gradient_that_is_zero_up_to_rounding_matches(dtype):
    from tfhybrid.layers import Conv2D, ReLU

    rng = np.random.default_rng(0)
    net = tfhybrid.Sequential(
        [Conv2D(2, 3), BatchNorm(), ReLU(), Flatten(), Dense(4)],
        input_shape=(6, 6, 1),
        dtype=dtype,
    )
    report = audit(net, rng.random((3, 6, 6, 1)), np.eye(4)[[0, 1, 3]])
    assert report.ok, str(report)  # db1 is zero: batch norm removes the bias
    assert "zero up to rounding" in str(report)


class Float32Double(Layer):
    """2x, computed in float32 inside a float64 network."""

    def forward(self, params, x):
        return (2 * x).astype(np.float32), None

    def backward(self, dout, cache, need_dx=True):
        return 2 * dout, {}

    def reference(self, params, x):
        return 2 * x


def test_a_float32_layer_in_a_float64_network_is_judged_at_float32_tolerance():
    from tfhybrid.layers import Conv2D

    net = tfhybrid.Sequential(
        [Conv2D(2, 3), Float32Double(), Flatten(), Dense(3)],
        input_shape=(6, 6, 1),
        dtype=np.float64,
    )
    report = audit(net, np.random.default_rng(1).random((2, 6, 6, 1)), np.eye(3)[[0, 1]])
    assert report.ok and report.tolerances["manual"] == 1e-3, str(report)


@pytest.mark.parametrize(
    "reference,needle",
    [
        (lambda x, w: 2 * tf.matmul(x, w), "reference's output differs from forward's"),
        (lambda x, w: x.numpy() @ w.numpy(), "not a TensorFlow tensor"),
        (  # other names than the inputs': passed positionally, and one too many
            lambda a: tf.matmul(a, a),
            "reference failed on inputs x [3, 4], w [4, 2] (passed positionally: x, w)",
        ),
        (lambda x, w: tf.matmul(x, w)[:2], "reference=None"),  # the way out of a refusal
    ],
)
def test_a_reference_that_is_not_the_forward_is_one_clear_error(reference, needle):
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal((3, 4)), "w": rng.standard_normal((4, 2))}

    def backward(dout, cache):
        return {"x": dout @ cache[1].T, "w": cache[0].T @ dout}

    with pytest.raises(ValueError, match=re.escape(needle)):
        check_op(matmul_forward, backward, values, reference)


def test_nothing_to_compare_is_never_ok():
    empty = {"x": np.zeros((0, 4)), "w": np.ones((4, 2))}
    report = check_op(matmul_forward, lambda d, c: {"x": d @ c[1].T}, empty)
    assert report.verdicts["x"] == "not checked: the tensor is empty" and not report.ok
    silent = check_op(matmul_forward, lambda d, c: {}, {"x": np.ones((2, 4)), "w": np.ones((4, 2))})
    assert not silent.ok and "NOTHING CHECKED" in str(silent)
    with pytest.raises(ValueError, match="holds NaN or inf"):
        check_op(
            matmul_forward, lambda d, c: {}, {"x": np.full((2, 4), np.nan), "w": np.ones((4, 2))}
        )


def test_a_per_example_gradient_handed_to_the_neighbour_is_named(batch):
    x, y = batch
    net = tfhybrid.Sequential(
        [Flatten(), Dense(5), tfhybrid.layers.ReLU(), SwappedDense(3)],
        input_shape=(4, 4, 1),
        dtype=np.float64,
    )
    report = audit(net, x, y, per_example=True)
    assert "rolled by +1 along axis 0" in (report.tensor("dw2:per-example").cause or "")


def test_an_output_never_shares_a_parameters_name():
    class PReLU(Layer):
        prefix = "a"

        def param_shapes(self, input_shape):
            return {"a": (1,)}

        def forward(self, params, x):
            return np.where(x > 0, x, params["a"] * x), (x, params["a"])

        def backward(self, dout, cache, need_dx=True):
            x, a = cache
            return np.where(x > 0, dout, a * dout), {"a": np.array([np.sum(dout * x * (x <= 0))])}

        def reference(self, params, x):
            return tf.where(x > 0, x, params["a"] * x)

    net = tfhybrid.Sequential(
        [Flatten(), Dense(4), PReLU(), Dense(3)], input_shape=(2, 2, 1), dtype=np.float64
    )
    assert "a2" in net.param_shapes and "a2" not in net.names and "a2_" in net.names
    rng = np.random.default_rng(0)
    report = audit(net, rng.standard_normal((3, 2, 2, 1)), np.eye(3))
    assert report.ok and {"da2", "da2_"} <= set(report.names), str(report)
