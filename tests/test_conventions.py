"""Textbook code audited as it is (tfhybrid.audit.conventions and .references).

Each convention gets a small example of its own written here: a layer object with state
(W, b -> dW, db on the object), a CS231n-style function pair returning tuples with a
param dict, a loss returning (loss, dx), and an in-place updater; the convolutions are
NCHW with (F, C, HH, WW) kernels, the updater's one image without a batch axis (CHW).
In each, five versions: correct, a mean for a sum, swapped H/W, an ignored dout, a
literal factor 2; the verdicts are asserted. Then the same code inside a Sequential, the
references against NumPy formulas in every layout, check_op's reference calling, and
bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import tfhybrid
from tfhybrid._tf import tf
from tfhybrid.audit import (
    audit,
    check_layer,
    check_op,
    function_pair,
    layer_object,
    loss_function,
    references,
)
from tfhybrid.audit.compare import FACTOR, MATCH, WRONG
from tfhybrid.audit.ops import TAPE64_ONLY
from tfhybrid.data import one_hot
from tfhybrid.layers import Dense, Flatten, ReLU
from tfhybrid.testing import assert_gradients_match

N, C, F, H, K = 2, 2, 3, 5, 3  # batch, channels, filters, height = width, kernel
PAD = 1  # so the output is H x H too
CORRECT, MEAN, SWAPPED, IGNORED, TWICE = (
    "correct",
    "mean for a sum",
    "swapped H/W",
    "ignored dout",
    "factor 2",
)
BUGS = (CORRECT, MEAN, SWAPPED, IGNORED, TWICE)
CONV = references.conv(pad=PAD, layout="NCHW")


# --- my own NCHW convolution, as the textbooks' loops, vectorized ---------------------
def padded(x: np.ndarray) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))


def correlate(xp: np.ndarray, w: np.ndarray) -> np.ndarray:
    """xp [N,C,H+2p,W+2p] with w [F,C,K,K], stride 1: out [N,F,H,W]."""
    windows = sliding_window_view(xp, w.shape[2:], axis=(2, 3))  # N,C,Ho,Wo,K,K
    return np.einsum("nchwij,fcij->nfhw", windows, w)


def conv_grads(dout, xp, w):
    """(dx, dw, db) of correlate(xp, w) + b for the upstream dout [N,F,Ho,Wo]."""
    windows = sliding_window_view(xp, w.shape[2:], axis=(2, 3))
    dw = np.einsum("nchwij,nfhw->fcij", windows, dout)
    db = dout.sum(axis=(0, 2, 3))
    dxp = np.zeros_like(xp)
    ho, wo = dout.shape[2:]
    for i in range(w.shape[2]):  # each kernel tap sends dout back to the inputs it read
        for j in range(w.shape[3]):
            dxp[:, :, i : i + ho, j : j + wo] += np.einsum("nfhw,fc->nchw", dout, w[:, :, i, j])
    return dxp[:, :, PAD:-PAD, PAD:-PAD], dw, db


def planted(bug: str, dout, xp, w):
    """conv_grads with ``bug`` in it."""
    dx, dw, db = conv_grads(dout, xp, w)
    if bug == MEAN:
        db = dout.mean(axis=(0, 2, 3))
    elif bug == SWAPPED:
        dw = dw.transpose(0, 1, 3, 2)  # kernel rows and columns exchanged
    elif bug == IGNORED:
        dx = conv_grads(np.ones_like(dout), xp, w)[0]  # as if dout were all ones
    elif bug == TWICE:
        dw = 2 * dw
    return dx, dw, db


def conv_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((N, C, H, H)),
        "w": rng.standard_normal((F, C, K, K)),
        "b": rng.standard_normal(F),
    }


# What each bug gives, for a batched convolution with output N x F x H x H.
EXPECTED = {
    CORRECT: {"x": MATCH, "w": MATCH, "b": MATCH},
    MEAN: {"x": MATCH, "w": MATCH, "b": f"{FACTOR} 1/{N * H * H}"},
    SWAPPED: {"x": MATCH, "w": WRONG, "b": MATCH},
    IGNORED: {"x": WRONG, "w": MATCH, "b": MATCH},
    TWICE: {"x": MATCH, "w": f"{FACTOR} 2", "b": MATCH},
}


# --- 1. a layer object with state ------------------------------------------------------
class Convolution:
    """Deep Learning from Scratch's convention: W, b attributes; dW, db left on self."""

    def __init__(self, W, b, bug=CORRECT):  # noqa: N803 (the textbook's name)
        self.W, self.b, self.bug = W, b, bug

    def forward(self, x):
        self.xp = padded(x)
        return correlate(self.xp, self.W) + self.b.reshape(1, -1, 1, 1)

    def backward(self, dout):
        dx, self.dW, self.db = planted(self.bug, dout, self.xp, self.W)
        return dx


def object_report(bug: str):
    values = conv_inputs()
    op = layer_object(Convolution(values["w"], values["b"], bug))
    return check_op(*op, op.inputs(values["x"]), reference=CONV)


@pytest.mark.parametrize("bug", BUGS)
def test_a_layer_object_is_checked_as_it_is(bug):
    report = object_report(bug)
    expected = {k.replace("w", "W"): v for k, v in EXPECTED[bug].items()}
    assert report.verdicts == expected, str(report)
    assert report.ok == (bug == CORRECT)
    assert report.op == "Convolution"


def test_the_object_is_left_as_it_was():
    values = conv_inputs()
    shared = {"W1": values["w"].copy()}  # a network's parameter dict, shared with the layer
    layer = Convolution(shared["W1"], values["b"].copy())
    op = layer_object(layer)
    check_op(*op, op.inputs(values["x"]), reference=CONV)
    assert set(vars(layer)) == {"W", "b", "bug"}  # no cache, no dW left behind
    assert layer.W is shared["W1"]
    np.testing.assert_array_equal(layer.W, values["w"])


# --- 2. a function pair returning tuples, with a param dict ----------------------------
def conv_forward(x, w, b, conv_param):
    """CS231n's convention: (out, cache); conv_param holds what is not differentiated."""
    assert conv_param == {"stride": 1, "pad": PAD}
    conv_param["seen"] = True  # code that writes into its param dict: each call gets a copy
    xp = padded(x)
    return correlate(xp, w) + b.reshape(1, -1, 1, 1), (xp, w)


def conv_backward_with(bug: str):
    def conv_backward(dout, cache):
        xp, w = cache
        return planted(bug, dout, xp, w)  # (dx, dw, db)

    return conv_backward


@pytest.mark.parametrize("bug", BUGS)
def test_a_function_pair_with_a_param_dict(bug):
    op = function_pair(
        conv_forward, conv_backward_with(bug), fixed={"conv_param": {"stride": 1, "pad": PAD}}
    )
    report = check_op(*op, conv_inputs(), reference=CONV)
    assert report.verdicts == EXPECTED[bug], str(report)


def test_assert_gradients_match_takes_the_adapters():
    op = function_pair(
        conv_forward, conv_backward_with(CORRECT), fixed={"conv_param": {"stride": 1, "pad": PAD}}
    )
    assert assert_gradients_match(*op, conv_inputs(), CONV).ok
    broken = layer_object(Convolution(*list(conv_inputs().values())[1:], bug=TWICE))
    with pytest.raises(AssertionError, match="gradients do not match: W"):
        assert_gradients_match(*broken, broken.inputs(conv_inputs()["x"]), CONV)


# --- 3. a loss returning (loss, dx); a loss layer object -------------------------------
def pixel_loss_and_dx(x, y, bug: str):
    """Softmax cross-entropy of every pixel of scores x [N,K,H,W] (classes on axis 1)
    against labels y [N,H,W], summed over the pixels and the batch."""
    shifted = x - x.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    target = np.moveaxis(np.eye(x.shape[1])[y], -1, 1)
    loss = -(target * np.log(p)).sum()
    dx = p - target
    if bug == MEAN:
        dx = dx / len(x)  # the batch averaged in the backward only
    elif bug == SWAPPED:
        dx = dx.transpose(0, 1, 3, 2)
    elif bug == TWICE:
        dx = 2 * dx
    return loss, dx


def labels(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, K, H, H)), rng.integers(0, K, (N, H, H))


LOSS_EXPECTED = {
    CORRECT: MATCH,
    MEAN: f"{FACTOR} 1/{N}",
    SWAPPED: WRONG,
    TWICE: f"{FACTOR} 2",
}


@pytest.mark.parametrize("bug", list(LOSS_EXPECTED))
def test_a_loss_returning_loss_and_dx(bug):
    scores, y = labels()

    def pixel_softmax_loss(x, y):
        return pixel_loss_and_dx(x, y, bug)

    op = loss_function(pixel_softmax_loss, fixed={"y": y})
    reference = references.softmax_loss(y, axis=1, reduction="sum")
    report = check_op(*op, {"x": scores}, reference=reference)
    assert report.verdicts == {"x": LOSS_EXPECTED[bug]}, str(report)


class PixelSoftmaxLoss:
    """Deep Learning from Scratch's loss layer: forward(x, t) -> loss, backward(dout=1)."""

    def __init__(self, bug=CORRECT):
        self.bug = bug

    def forward(self, x, t):
        self.loss, self.dx = pixel_loss_and_dx(x, t, self.bug)
        return self.loss

    def backward(self, dout=1):
        return self.dx if self.bug == IGNORED else dout * self.dx  # the bug: no * dout


@pytest.mark.parametrize("bug", BUGS)
def test_a_loss_layer_object(bug):
    scores, y = labels()
    op = layer_object(PixelSoftmaxLoss(bug), fixed={"t": y})
    reference = references.softmax_loss(y, axis=1, reduction="sum")
    report = check_op(*op, op.inputs(scores), reference=reference)
    verdict = report.verdicts["x"]
    if bug == IGNORED:  # dx is the true gradient over dout, the check's random number
        assert verdict.startswith(FACTOR), str(report)
    else:
        assert verdict == LOSS_EXPECTED[bug], str(report)


# --- 4. an in-place updater, one image without a batch axis (CHW) ----------------------
class ConvStep:
    """A NumPy CNN tutorial's convention: backward(dout, lr) applies its own update to
    its filters and returns dx; one image [C,H,W] at a time."""

    def __init__(self, filters, biases, bug=CORRECT):
        self.filters, self.biases, self.bug = filters, biases, bug

    def forward(self, image):
        self.xp = padded(image[None])
        return correlate(self.xp, self.filters)[0] + self.biases[:, None, None]

    def backward(self, dout, lr):
        dx, dw, db = planted(self.bug, dout[None], self.xp, self.filters)
        if self.bug == MEAN:
            db = dout.mean(axis=(1, 2))
        self.filters -= lr * dw  # dx above used the filters before the step
        self.biases -= lr * db
        return dx[0]


UPDATER_EXPECTED = {
    **EXPECTED,
    MEAN: {"x": MATCH, "filters": MATCH, "biases": f"{FACTOR} 1/{H * H}"},
}


@pytest.mark.parametrize("lr", [1.0, 0.01])
@pytest.mark.parametrize("bug", BUGS)
def test_an_in_place_updater_without_a_batch_axis(bug, lr):
    values = conv_inputs(4)
    step = ConvStep(values["w"], values["b"], bug)
    op = layer_object(step, params=("filters", "biases"), lr=lr)
    reference = references.conv(pad=PAD, layout="CHW")
    report = check_op(*op, op.inputs(values["x"][0]), reference=reference)
    names = {"x": "x", "w": "filters", "b": "biases"}
    expected = {names.get(k, k): v for k, v in UPDATER_EXPECTED[bug].items()}
    assert report.verdicts == expected, str(report)
    np.testing.assert_array_equal(step.filters, values["w"])  # the step was undone


def test_a_function_pair_that_updates_its_weights():
    def dense_forward(x, w):
        return x @ w, (x, w)

    def dense_step(dout, cache, lr):
        x, w = cache
        dx = dout @ w.T
        w -= lr * 2 * (x.T @ dout)  # the bug: a literal 2
        return dx

    rng = np.random.default_rng(5)
    op = function_pair(dense_forward, dense_step, updates=("w",), lr=0.5)
    report = check_op(
        *op,
        {"x": rng.standard_normal((3, 4)), "w": rng.standard_normal((4, 2))},
        reference=lambda x, w: x @ w,
    )
    assert report.verdicts == {"x": MATCH, "w": f"{FACTOR} 2"}, str(report)


# --- 5. the same code inside a Sequential (NCHW and CHW), audited ----------------------
def small_batch():
    rng = np.random.default_rng(0)
    return rng.random((3, H, H, C)).astype(np.float32), one_hot(rng.integers(0, 10, 3))


def network(first) -> tfhybrid.Sequential:
    return tfhybrid.Sequential([first, ReLU(), Flatten(), Dense(10)], input_shape=(H, H, C))


@pytest.mark.parametrize("bug", [CORRECT, TWICE])
def test_a_layer_object_in_nchw_inside_a_network(bug):
    values = conv_inputs()
    op = layer_object(Convolution(values["w"] * 0.3, values["b"], bug))
    net = network(op.layer(CONV, layout="NCHW"))
    assert net.param_shapes["W1"] == (F, C, K, K)  # the code's own kernel layout
    report = audit(net, *small_batch())
    if bug == CORRECT:
        assert report.ok, str(report)
    else:
        assert report.layer_at_fault.index == 0, str(report)
        assert report.mismatches[0] == "dW1"
        assert "0 (Convolution, output h1)" in str(report)


def test_a_function_pair_and_an_updater_inside_a_network():
    values = conv_inputs()
    fixed = {"conv_param": {"stride": 1, "pad": PAD}}
    op = function_pair(conv_forward, conv_backward_with(CORRECT), fixed=fixed)
    layer = op.layer(CONV, params={"w": values["w"] * 0.3, "b": values["b"]}, layout="NCHW")
    assert audit(network(layer), *small_batch()).ok

    step = ConvStep(values["w"] * 0.3, values["b"], MEAN)
    op = layer_object(step, params=("filters", "biases"), lr=1.0)
    layer = op.layer(references.conv(pad=PAD, layout="CHW"), layout="CHW")  # image by image
    report = audit(network(layer), *small_batch())
    assert report.layer_at_fault.index == 0, str(report)
    assert report.tensor("dbiases1").verdict == f"{FACTOR} 1/{H * H}", str(report)


def test_check_layer_checks_a_code_layer_in_the_network_layout():
    values = conv_inputs()
    op = layer_object(Convolution(values["w"], values["b"], SWAPPED))
    report = check_layer(op.layer(CONV, layout="NCHW"), (H, H, C))
    assert report.verdicts == {"x": MATCH, "W": WRONG, "b": MATCH}, str(report)


def test_a_training_mode_keyword_gets_the_networks_mode():
    seen = []

    class Gate:
        def __init__(self, W):  # noqa: N803
            self.W = W

        def forward(self, x, train_flg=True):
            seen.append(train_flg)
            self.x = x
            return x * self.W

        def backward(self, dout):
            self.dW = (dout * self.x).sum(axis=0)
            return dout * self.W

    layer = layer_object(Gate(np.ones(H * H * C))).layer(lambda x, W: x * W, training="train_flg")
    net = tfhybrid.Sequential([Flatten(), layer, Dense(10)], input_shape=(H, H, C))
    x, y = small_batch()
    net.logits(x)
    net.loss_and_gradients(x, y)
    assert seen == [False, True]


# --- check_op's references: positional, float64 only, sparse, another function --------
def test_a_tensorflow_callable_taking_its_input_positionally():
    x = np.random.default_rng(1).standard_normal((3, 4))
    report = check_op(
        lambda x: (np.maximum(x, 0), x > 0), lambda d, m: {"x": d * m}, {"x": x}, tf.nn.relu
    )
    assert report.verdicts == {"x": MATCH}

    def by_position(a, b):  # names that are not the inputs': the order decides
        return tf.matmul(a, b)

    values = {"x": x, "w": np.ones((4, 2))}
    report = check_op(
        lambda x, w: (x @ w, (x, w)),
        lambda d, c: {"x": d @ c[1].T, "w": c[0].T @ d},
        values,
        by_position,
    )
    assert report.ok, str(report)


def test_a_reference_holding_float64_numpy_constants():
    rng = np.random.default_rng(2)
    scale = rng.standard_normal((3, 4))  # float64

    def reference(x):
        return tf.constant(scale) * x  # float64 only: no float32 tape

    report = check_op(
        lambda x: (x * scale, None), lambda d, _: {"x": d * scale}, {"x": scale * 2}, reference
    )
    assert report.verdicts == {"x": MATCH} and report.reference == TAPE64_ONLY, str(report)
    assert report.input("x").tape32 is None


def embedding_forward(x, W):  # noqa: N803
    return W[x], (x, W.shape)


def embedding_backward(dout, cache):
    x, shape = cache
    dW = np.zeros(shape)  # noqa: N806
    np.add.at(dW, x, dout)  # a row used twice gets both gradients
    return dW


def test_an_embedding_with_integer_ids_and_a_sparse_tape_gradient():
    rng = np.random.default_rng(3)
    ids = np.array([[0, 2, 2], [3, 0, 1]])  # rows 0 and 2 used twice
    table = {"W": rng.standard_normal((5, 4))}
    op = function_pair(embedding_forward, embedding_backward, fixed={"x": ids})
    assert check_op(*op, table, reference=references.embedding(ids)).verdicts == {"W": MATCH}

    def overwriting(dout, cache):
        x, shape = cache
        dW = np.zeros(shape)  # noqa: N806
        dW[x] = dout  # the bug: a row used twice keeps one gradient
        return dW

    op = function_pair(embedding_forward, overwriting, fixed={"x": ids})
    assert check_op(*op, table, reference=references.embedding(ids)).verdicts == {"W": WRONG}


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm of x [N, D] in training mode; writes its running mean into bn_param."""
    mean, std = x.mean(axis=0), np.sqrt(x.var(axis=0) + bn_param["eps"])
    bn_param["running_mean"] = 0.9 * bn_param.get("running_mean", 0.0) + 0.1 * mean
    xhat = (x - mean) / std
    return gamma * xhat + beta, (xhat, gamma, std)


def batchnorm_backward_with(constant_statistics: bool):
    def batchnorm_backward(dout, cache):
        xhat, gamma, std = cache
        dxhat = dout * gamma
        dx = dxhat / std  # the bug, unless corrected below: mean and variance held constant
        if not constant_statistics:
            dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
        return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)

    return batchnorm_backward


@pytest.mark.parametrize("constant_statistics,verdict", [(False, MATCH), (True, WRONG)])
def test_batch_norm_with_a_param_dict_it_writes_into(constant_statistics, verdict):
    rng = np.random.default_rng(9)
    values = {
        "x": rng.standard_normal((5, 3)) * 2 + 1,
        "gamma": rng.standard_normal(3),
        "beta": rng.standard_normal(3),
    }
    op = function_pair(
        batchnorm_forward,
        batchnorm_backward_with(constant_statistics),
        fixed={"bn_param": {"mode": "train", "eps": 1e-5}},
    )
    report = check_op(*op, values, reference=references.batch_norm(eps=1e-5))
    assert report.verdicts == {"x": verdict, "gamma": MATCH, "beta": MATCH}, str(report)


def dropout_forward(x, dropout_param):
    """Inverted dropout, its mask drawn from the seed in dropout_param: kept with p, / p."""
    p = dropout_param["p"]
    mask = (np.random.default_rng(dropout_param["seed"]).random(x.shape) < p) / p
    return x * mask, mask


@pytest.mark.parametrize(
    "backward,verdict",
    [(lambda dout, mask: dout * mask, MATCH), (lambda dout, mask: dout * (mask > 0), "1/2")],
)
def test_dropout_checked_with_the_mask_its_forward_drew(backward, verdict):
    x = np.random.default_rng(10).standard_normal((4, 6))
    param = {"p": 0.5, "seed": 1}
    mask = dropout_forward(x, param)[1]  # the mask, from the forward's cache
    op = function_pair(dropout_forward, backward, fixed={"dropout_param": param})
    report = check_op(*op, {"x": x}, reference=references.dropout(mask))
    expected = verdict if verdict == MATCH else f"{FACTOR} {verdict}"  # the forgotten 1/p
    assert report.verdicts == {"x": expected}, str(report)


def test_a_reference_of_another_function_is_refused_with_the_way_out():
    op = loss_function(lambda x, y: pixel_loss_and_dx(x, y, CORRECT), fixed={"y": labels()[1]})
    mean = references.softmax_loss(labels()[1], axis=1)  # a mean, the code sums
    with pytest.raises(ValueError) as caught:
        check_op(*op, {"x": labels()[0]}, reference=mean)
    assert "same function" in str(caught.value) and "reference=None" in str(caught.value)
    assert check_op(*op, {"x": labels()[0]}).ok  # the way out: finite differences alone


def test_an_uncalled_factory_says_to_call_it():
    with pytest.raises(ValueError, match="must be called"):
        check_op(
            lambda x: (np.maximum(x, 0), x > 0),
            lambda d, m: {"x": d * m},
            {"x": np.ones((2, 2))},
            references.relu,
        )


# --- the references: their formulas, in every layout -----------------------------------
def nchw(x):
    return np.transpose(x, (0, 3, 1, 2))


def run(reference, *arrays):
    return reference(*[tf.constant(a) for a in arrays]).numpy()


def test_the_spatial_references_agree_across_layouts():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 6, 6, 3))
    w_hwcf = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal(4)
    base = run(references.conv(stride=2, pad=1), x, w_hwcf, b)
    w_fchw = np.transpose(w_hwcf, (3, 2, 0, 1))
    nchw_out = run(references.conv(stride=2, pad=1, layout="NCHW"), nchw(x), w_fchw, b)
    np.testing.assert_allclose(nchw_out, nchw(base), rtol=1e-12)
    one = run(references.conv(stride=2, pad=1, layout="CHW"), nchw(x)[0], w_fchw, b)
    np.testing.assert_allclose(one, nchw(base)[0], rtol=1e-12)
    w_fhwc = np.transpose(w_hwcf, (3, 0, 1, 2))
    hwc = run(references.conv(stride=2, pad=1, layout="HWC", kernel="FHWC"), x[1], w_fhwc, b)
    np.testing.assert_allclose(hwc, base[1], rtol=1e-12)
    # My own loops for one output: the cross-correlation of the padded image.
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    by_hand = (xp[0, 2:5, 4:7, :, None] * w_hwcf).sum(axis=(0, 1, 2)) + b
    np.testing.assert_allclose(base[0, 1, 2], by_hand, rtol=1e-12)
    for pool, reduce in ((references.max_pool, np.max), (references.avg_pool, np.mean)):
        out = run(pool(2, layout="NCHW"), nchw(x))
        by_hand = reduce(x.reshape(2, 3, 2, 3, 2, 3), axis=(2, 4))
        np.testing.assert_allclose(out, nchw(by_hand), rtol=1e-12)
        np.testing.assert_allclose(run(pool(2, layout="HWC"), x[0]), by_hand[0], rtol=1e-12)


def normalized(x, axes, eps=1e-5):
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


def test_the_normalization_references():
    rng = np.random.default_rng(7)
    x, gamma, beta = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(3)
    expected = gamma * normalized(x, 0) + beta
    np.testing.assert_allclose(run(references.batch_norm(), x, gamma, beta), expected)
    expected = gamma * normalized(x, 1) + beta
    np.testing.assert_allclose(run(references.layer_norm(), x, gamma, beta[None]), expected)
    images = rng.standard_normal((2, 3, 4, 4))  # NCHW
    g = gamma.reshape(1, 3, 1, 1)
    expected = g * normalized(images, (0, 2, 3)) + beta.reshape(1, 3, 1, 1)
    out = run(references.spatial_batch_norm(layout="NCHW"), images, gamma, beta)
    np.testing.assert_allclose(out, expected)
    expected = g * normalized(images, (1, 2, 3)) + beta.reshape(1, 3, 1, 1)
    out = run(references.layer_norm(layout="NCHW"), images, gamma, beta)
    np.testing.assert_allclose(out, expected)


def test_the_elementwise_loss_and_mask_references():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3))
    y = np.array([0, 2, 1, 2])
    np.testing.assert_allclose(run(references.relu(), x), np.maximum(x, 0))
    np.testing.assert_allclose(run(references.leaky_relu(0.1), x), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(run(references.sigmoid(), x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(run(references.tanh(), x), np.tanh(x))
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    cross_entropy = -np.log(p[np.arange(4), y]).mean()
    np.testing.assert_allclose(run(references.softmax_loss(y), x), cross_entropy)
    np.testing.assert_allclose(run(references.softmax_loss(np.eye(3)[y]), x), cross_entropy)
    margins = np.maximum(0, x - x[np.arange(4), y][:, None] + 1)
    margins[np.arange(4), y] = 0
    np.testing.assert_allclose(run(references.svm_loss(y), x), margins.sum() / 4)
    mask = rng.random((4, 3)) > 0.5
    np.testing.assert_allclose(run(references.dropout(mask, scale=2.0), x), x * mask * 2)
    w, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    np.testing.assert_allclose(run(references.affine(), x, w, b), x @ w + b)
    np.testing.assert_allclose(run(references.affine(batch=False), x[0], w, b), x[0] @ w + b)
    np.testing.assert_allclose(run(references.embedding(y), w), w[y])


def test_the_references_run_in_float32_too():
    x = tf.constant(np.ones((2, 3, 4, 4)), tf.float32)
    out = references.spatial_batch_norm(layout="NCHW")(x, tf.ones(3), tf.zeros(3))
    assert out.dtype == tf.float32
    assert references.dropout(np.ones((2, 3, 4, 4)))(x).dtype == tf.float32
    assert references.softmax_loss(np.zeros((2, 4, 4), int), axis=1)(x).dtype == tf.float32


# --- bad input: one ValueError that names the problem ----------------------------------
@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: references.conv(layout="NHCW"), "layout must be one of NHWC, NCHW"),
        (lambda: references.conv(kernel="OIHW"), "kernel must be one of HWCF"),
        (lambda: references.max_pool(0), "size and stride must be >= 1"),
        (lambda: references.softmax_loss([0, 1], reduction="avg"), "reduction must be one of"),
        (lambda: references.embedding([0.5]), "ids must be integers"),
        (
            lambda: run(
                references.conv(layout="NCHW"), np.ones((1, 4, 4, 2)), np.ones((3, 2, 2, 2))
            ),
            "x [1, 4, 4, 2] in NCHW has 4 channels, but w [3, 2, 2, 2] in FCHW takes 2",
        ),
        (
            lambda: run(references.softmax_loss(np.array([0, 1, 2])), np.ones((2, 3))),
            "y has shape [3]",
        ),
        (
            lambda: function_pair(conv_forward, conv_backward_with(CORRECT), fixed={"p": 1}),
            "fixed names ['p'], which conv_forward does not take",
        ),
        (
            lambda: check_op(
                *function_pair(
                    conv_forward,
                    lambda d, c: (d, d),
                    fixed={"conv_param": {"stride": 1, "pad": PAD}},
                ),
                conv_inputs(),
            ),
            "backward returned 2 gradient(s), for inputs ['x', 'w', 'b']",
        ),
        (lambda: layer_object(object()), "has no method 'forward'"),
        (
            lambda: layer_object(Convolution(np.ones(2), None), params=("W", "b")),
            "Convolution.b is NoneType, not a float array",
        ),
        (
            lambda: check_op(
                *layer_object(Convolution(*list(conv_inputs().values())[1:]), grads=("gW", "gb")),
                layer_object(Convolution(*list(conv_inputs().values())[1:])).inputs(
                    conv_inputs()["x"]
                ),
            ),
            "has no 'gW' (the gradient of 'W')",
        ),
        (
            lambda: loss_function(lambda x, y: (0.0, x)),
            "2 of its arguments are not fixed (x, y)",
        ),
        (
            lambda: loss_function(lambda x, y: (0.0, x), fixed={"y": 1}).layer(CONV),
            "a loss is not a layer",
        ),
        (
            lambda: layer_object(Convolution(np.ones((1, 1, 1, 1)), np.ones(1))).layer(None),
            "a network layer needs a reference",
        ),
        (
            lambda: function_pair(conv_forward, conv_backward_with(CORRECT)).layer(CONV),
            "give the function pair's initial parameters",
        ),
    ],
)
def test_bad_input_is_one_clear_value_error(make, needle):
    with pytest.raises(ValueError) as caught:
        make()
    assert needle in str(caught.value)
