"""BatchNormalization, LayerNormalization, Dropout, Tanh and LeakyReLU as layers and inside
networks: check_layer and tf.GradientTape in both modes, running statistics, replayed
randomness, the audit of bn-cnn and dlfs-deep, planted batch-norm bugs named by layer, fresh
randomness refused, dropout's likely cause, and bad arguments. Float64, tiny shapes."""

from __future__ import annotations

import numpy as np
import pytest

import tfhybrid
from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.audit import audit, check_layer, check_op
from tfhybrid.audit.compare import FACTOR, MATCH
from tfhybrid.audit.judge import NOT_CHECKED
from tfhybrid.layers import (
    BatchNormalization,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LayerNormalization,
    LeakyReLU,
    ReLU,
    Tanh,
)
from tfhybrid.layers.base import call_options, layer_rng
from tfhybrid.models.sequential import Sequential
from tfhybrid.ops.dropout import dropout_mask
from tfhybrid.optimizers import Adam

RTOL = 1e-10  # float64, the same maths in another order
BATCHES = (1, 2, 7)
LAYOUTS = ("ND", "NHWC")
FD_SAMPLES = 6  # finite-difference coordinates per tensor: a few keep the file fast

LAYERS = {
    "batchnorm": lambda: BatchNormalization(momentum=0.8, epsilon=1e-3),
    "layernorm": lambda: LayerNormalization(epsilon=1e-3),
    "dropout-inverted": lambda: Dropout(0.3),
    "dropout-book": lambda: Dropout(0.3, rule="book"),
    "tanh": Tanh,
    "leaky-relu": lambda: LeakyReLU(0.1),
}
MODAL = ("batchnorm", "dropout-inverted", "dropout-book")  # the layers that take `training`
CASES = [(name, True) for name in LAYERS] + [(name, False) for name in MODAL]


def random_shape(batch: int, layout: str) -> tuple[int, ...]:
    """A tiny shape drawn from a generator seeded by the case: [batch, D] with D in 2..5, or
    [batch, H, W, C] with H, W in 1..3 and C in 2..4."""
    rng = np.random.default_rng((batch, LAYOUTS.index(layout)))
    if layout == "ND":
        return (batch, int(rng.integers(2, 6)))
    h, w = (int(v) for v in rng.integers(1, 4, size=2))
    return (batch, h, w, int(rng.integers(2, 5)))


def one_hot(labels, k: int = 3) -> np.ndarray:
    return np.eye(k)[np.asarray(labels)]


# --- 1. each layer: check_layer, and its backward against the tape of its reference -----------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name,training", CASES)
def test_check_layer_passes(name, training, batch, layout):
    layer = LAYERS[name]()
    shape = random_shape(batch, layout)
    report = check_layer(
        layer, shape[1:], batch=batch, training=training, fd_samples=FD_SAMPLES, seed=batch
    )
    assert report.ok, str(report)
    assert set(report.verdicts.values()) == {MATCH}, report.verdicts
    if name in MODAL:
        assert ("training mode" if training else "inference mode") in report.op


def options(layer, method: str, training: bool, state: dict, seed: int) -> dict:
    """What ``method`` takes of training, state (a copy) and rng (a fresh generator seeded
    ``seed``: forward and reference draw the same numbers)."""
    return call_options(
        getattr(layer, method),
        training=training,
        state={k: v.copy() for k, v in state.items()},
        rng=lambda: np.random.default_rng(seed),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name,training", CASES)
def test_backward_matches_the_tape_of_the_reference(rng, name, training, batch, layout):
    layer = LAYERS[name]()
    shape = random_shape(batch, layout)
    layer.input_shape = shape[1:]
    x = 2 * rng.standard_normal(shape) + 0.5
    params = {
        key: (1 + 0.5 * rng.standard_normal(s)) if key == "gamma" else rng.standard_normal(s)
        for key, s in layer.param_shapes(shape[1:]).items()
    }
    state = {  # running statistics away from their initial zeros and ones
        key: (0.5 + rng.random(s)) if key == "running_var" else rng.standard_normal(s)
        for key, s in layer.state_shapes(shape[1:]).items()
    }
    seed = int(rng.integers(1 << 30))

    out, cache = layer.forward(dict(params), x, **options(layer, "forward", training, state, seed))
    dout = rng.standard_normal(out.shape)
    variables = {k: tf.Variable(v) for k, v in {"x": x, **params}.items()}
    with tf.GradientTape() as tape:
        ref = layer.reference(
            {k: variables[k] for k in params},
            variables["x"],
            **options(layer, "reference", training, state, seed),
        )
        target = tf.reduce_sum(ref * dout)
    tape_grads = tape.gradient(target, variables)
    where = f"{name} ({'training' if training else 'inference'}) on {list(shape)}"
    assert_close(f"{where} out", out, np.asarray(ref), RTOL)
    dx, grads = layer.backward(dout, cache, True)
    assert set(grads) == set(params), f"{where}: gradients for {sorted(grads)}"
    assert_close(f"{where} dx", dx, tape_grads["x"].numpy(), RTOL)
    for key in params:
        assert_close(f"{where} d{key}", grads[key], tape_grads[key].numpy(), RTOL)
    if name.startswith("dropout") and training and x.size > 4:
        dropped = out == 0
        assert dropped.any() and not dropped.all(), f"{where}: the mask drops all or nothing"


# --- 2. running statistics ---------------------------------------------------------------------


def bn_net(momentum: float = 0.7, seed: int = 3) -> Sequential:
    return Sequential(
        [Flatten(), Dense(4), BatchNormalization(momentum=momentum), Dense(3)],
        input_shape=(2, 3, 1),
        seed=seed,
        dtype=np.float64,
    )


def test_running_statistics_follow_the_batch_statistics(rng):
    m = 0.7
    net = bn_net(m)
    assert set(net.state) == {"running_mean2", "running_var2"}
    assert not set(net.state) & set(net.params)
    optimizer = Adam(0.01)
    running_mean, running_var = np.zeros(4), np.ones(4)
    for k in range(3):
        x = (k + 1) * rng.standard_normal((5, 2, 3, 1)) + k
        y = one_hot(rng.integers(0, 3, 5))
        h = x  # the batch norm's input, by a manual forward of the layers below it
        for index in range(2):
            h, _ = net.layers[index].forward(net.layer_params(index), h)
        mean = h.mean(axis=0)
        var = ((h - mean) ** 2).mean(axis=0)  # biased
        running_mean = m * running_mean + (1 - m) * mean
        running_var = m * running_var + (1 - m) * var
        result = net.loss_and_gradients(x, y)
        assert_close(
            f"running_mean2 after step {k + 1}", net.state["running_mean2"], running_mean, 1e-12
        )
        assert_close(
            f"running_var2 after step {k + 1}", net.state["running_var2"], running_var, 1e-12
        )
        assert net.step == k + 1

        saved = {key: v.copy() for key, v in net.state.items()}
        logits = net.logits(x)  # inference: the running statistics, which it leaves alone
        gamma, beta = net.params["gamma2"], net.params["beta2"]
        normalized = (h - running_mean) / np.sqrt(running_var + 1e-5) * gamma + beta
        expected = normalized @ net.params["w3"] + net.params["b3"]
        assert_close(f"inference logits after step {k + 1}", logits, expected, 1e-12)
        for key in saved:
            np.testing.assert_array_equal(net.state[key], saved[key], err_msg=f"{key}: logits")
        assert net.step == k + 1, "an inference pass moved the step"

        assert not set(result["grads"]) & set(net.state), sorted(result["grads"])
        optimizer.update(net.params, result["grads"])
        for key in saved:
            np.testing.assert_array_equal(net.state[key], saved[key], err_msg=f"{key}: update")
        assert not any("running" in key for key in optimizer.state_dict()), sorted(
            optimizer.state_dict()
        )


# --- 3. randomness: one draw per seed, step and layer, replayed on demand ---------------------


def dropout_net(seed: int = 7, rule: str = "inverted") -> Sequential:
    return Sequential(
        [Flatten(), Dense(6), Dropout(0.5, rule=rule), Dense(3)],
        input_shape=(2, 3, 1),
        seed=seed,
        dtype=np.float64,
    )


def mask_of(net: Sequential, x: np.ndarray, **kwargs) -> np.ndarray:
    return net.forward(x, training=True, **kwargs)[1][2].mask


def test_the_same_seed_and_step_draw_the_same_mask(rng):
    x = rng.standard_normal((4, 2, 3, 1))
    first, second = dropout_net(), dropout_net()
    masks = [mask_of(first, x) for _ in range(3)]  # steps 0, 1, 2
    for step, mask in enumerate(masks):
        np.testing.assert_array_equal(mask, mask_of(second, x), err_msg=f"step {step}")
        expected = dropout_mask(layer_rng(7, step, 2), (4, 6), 0.5)
        np.testing.assert_array_equal(mask, expected, err_msg=f"step {step}: layer_rng")
    assert first.step == second.step == 3
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    np.testing.assert_array_equal(mask_of(first, x, step=1), masks[1])  # any step replays
    assert not np.array_equal(mask_of(dropout_net(seed=8), x), masks[0])  # another seed


def test_replaying_repeats_one_draw_and_keeps_step_and_state(rng):
    net = Sequential(
        [Flatten(), Dense(6), BatchNormalization(), Dropout(0.5), Dense(3)],
        input_shape=(2, 3, 1),
        seed=5,
        dtype=np.float64,
    )
    x, y = rng.standard_normal((4, 2, 3, 1)), one_hot([0, 1, 2, 1])
    net.loss_and_gradients(x, y)  # step 1, state moved off its initial values
    step, state = net.step, {k: v.copy() for k, v in net.state.items()}
    with net.replaying() as replayed:
        assert replayed == step
        results = [net.loss_and_gradients(x, y) for _ in range(2)]
    assert net.step == step
    for key in state:
        np.testing.assert_array_equal(net.state[key], state[key], err_msg=key)
    after = net.loss_and_gradients(x, y)  # the step replayed is the one drawn next
    assert net.step == step + 1
    for other in (results[1], after):
        assert other["loss"] == results[0]["loss"]
        np.testing.assert_array_equal(other["logits"], results[0]["logits"])
        for key, grad in results[0]["grads"].items():
            np.testing.assert_array_equal(other["grads"][key], grad, err_msg=f"d{key}")
    assert not np.array_equal(net.state["running_mean2"], state["running_mean2"])


def test_the_step_advances_once_per_training_pass_only(rng):
    net = dropout_net()
    x, y = rng.standard_normal((3, 2, 3, 1)), one_hot([0, 1, 2])
    assert net.step == 0
    net.forward(x, training=True)
    assert net.step == 1
    net.loss_and_gradients(x, y)
    assert net.step == 2
    net.logits(x)
    net.forward(x, training=False)
    net.accuracy(x, np.array([0, 1, 2]))
    assert net.step == 2


@pytest.mark.parametrize("rule,keep", [("book", 0.75), ("inverted", 1.0)])
def test_inference_draws_nothing(rng, monkeypatch, rule, keep):
    net = Sequential(
        [Dense(4), Dropout(0.25, rule=rule)], input_shape=(3,), seed=1, dtype=np.float64
    )
    x = rng.standard_normal((5, 3))

    def no_draw(*args, **kwargs):
        raise AssertionError("inference drew a dropout mask")

    monkeypatch.setattr("tfhybrid.layers.dropout.dropout_mask", no_draw)
    global_state = np.random.get_state()[1].copy()  # noqa: NPY002
    first, second = net.logits(x), net.logits(x)
    np.testing.assert_array_equal(first, second)
    expected = (x @ net.params["w1"] + net.params["b1"]) * keep
    assert_close(
        f"logits through Dropout(0.25, rule={rule!r}) at inference", first, expected, 1e-12
    )
    assert net.step == 0
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)  # noqa: NPY002


# --- 4. the audit of the catalog networks ------------------------------------------------------


@pytest.mark.parametrize("name", ["bn-cnn", "dlfs-deep"])
def test_audit_of_a_catalog_network(name):
    rng = np.random.default_rng(11)
    x, y = rng.random((2, 28, 28, 1)), one_hot([3, 7], 10)
    net = tfhybrid.build_model(name, dtype=np.float64, seed=0)
    net.loss_and_gradients(x, y)  # step 1, and bn-cnn's running statistics moved
    step, state = net.step, {k: v.copy() for k, v in net.state.items()}
    report = audit(net, x, y, fd_samples=4)
    assert report.ok, str(report)
    assert {t.name: t.verdict for t in report.tensors if t.verdict != MATCH} == {}
    assert report.loss.matches
    assert report.layer_at_fault is None
    assert net.step == step
    assert set(net.state) == set(state)
    for key in state:
        np.testing.assert_array_equal(net.state[key], state[key], err_msg=f"{key}: audit")
    if name == "dlfs-deep":
        assert any(f"training step {step}" in note for note in report.notes), report.notes


# --- 5. planted bugs in a batch norm of one's own ----------------------------------------------


class PlantedBatchNorm(BatchNormalization):
    """Batch norm whose training backward is written here, with one bug of ``kind``: "mean"
    drops the mean term (- sum dout), "variance" drops the variance term (- x_hat
    sum(dout x_hat)), "constants" treats the statistics as constants; None is correct."""

    def __init__(self, kind: str | None):
        super().__init__()
        self.kind = kind

    def backward(self, dout, cache, need_dx=True):
        mode, c = cache
        assert mode == "training", "the audit runs in training mode"
        axes = tuple(range(dout.ndim - 1))
        m = dout.size // dout.shape[-1]
        dbeta = dout.sum(axis=axes)
        dgamma = (dout * c.x_hat).sum(axis=axes)
        std = np.sqrt(c.var + c.epsilon)
        if self.kind == "mean":
            dx = c.gamma / (m * std) * (m * dout - c.x_hat * dgamma)
        elif self.kind == "variance":
            dx = c.gamma / (m * std) * (m * dout - dbeta)
        elif self.kind == "constants":
            dx = dout * c.gamma / std
        else:
            dx = c.gamma / (m * std) * (m * dout - dbeta - c.x_hat * dgamma)
        return dx, {"gamma": dgamma, "beta": dbeta}


def planted_net(kind: str | None) -> Sequential:
    return Sequential(
        [Flatten(), Dense(5), PlantedBatchNorm(kind), ReLU(), Dense(3)],
        input_shape=(2, 3, 1),
        seed=2,
        dtype=np.float64,
    )


PLANTED_X = np.random.default_rng(21).standard_normal((4, 2, 3, 1))
PLANTED_Y = one_hot([0, 1, 2, 0])


def test_a_correct_batch_norm_of_ones_own_passes():
    report = audit(planted_net(None), PLANTED_X, PLANTED_Y, fd_samples=4)
    assert report.ok, str(report)
    statuses = {v.index: v.status for v in report.layers}
    assert statuses[2] == statuses[4] == "ok", statuses


def test_a_bias_before_batch_norm_is_not_at_fault():
    """The bias of a Dense right before batch norm has a true gradient of zero (the mean
    takes it out again): a manual gradient equal to the float64 tape is no fault, whatever
    the float32 tape's rounding noise says."""
    net = Sequential(
        [Flatten(), Dense(5), BatchNormalization(), ReLU(), Dense(3)],
        input_shape=(2, 3, 1),
        seed=1,
        dtype=np.float64,
    )
    x = np.random.default_rng(1).standard_normal((4, 2, 3, 1))
    report = audit(net, x, PLANTED_Y, fd_samples=4)
    assert report.ok, str(report)
    dense = next(v for v in report.layers if v.index == 1)
    assert set(dense.own_verdicts.values()) == {MATCH}
    assert report.layer_at_fault is None, (
        f"report.ok, yet layer {dense.describe()} is {dense.status!r} with verdicts "
        f"{dense.own_verdicts}\n{dense.check}"
    )


@pytest.mark.parametrize("kind", ["mean", "variance", "constants"])
def test_a_planted_batch_norm_bug_names_its_layer(kind):
    report = audit(planted_net(kind), PLANTED_X, PLANTED_Y, fd_samples=4)
    assert not report.ok
    fault = report.layer_at_fault
    assert fault is not None, f"{kind}: no layer at fault\n{report}"
    assert (fault.index, fault.status, fault.layer) == (2, "at fault", "PlantedBatchNorm"), str(
        report
    )
    assert fault.own_verdicts["x"] != MATCH
    assert fault.own_verdicts["gamma"] == fault.own_verdicts["beta"] == MATCH
    assert [v.index for v in report.layers if v.status == "at fault"] == [2]


# --- 6. fresh randomness ------------------------------------------------------------------------

RATE = 0.5


def textbook_dropout_forward(x):
    """Deep Learning from Scratch's Dropout: the mask from NumPy's global generator."""
    mask = np.random.rand(*x.shape) > RATE  # noqa: NPY002
    return x * mask, mask


def textbook_dropout_backward(dout, mask):
    return {"x": dout * mask}


def textbook_dropout_reference(x):
    mask = np.random.rand(*x.shape) > RATE  # noqa: NPY002
    return x * tf.constant(mask, x.dtype)


@pytest.mark.parametrize("reference", [None, textbook_dropout_reference])
def test_fresh_randomness_is_not_checked(rng, reference):
    x = rng.standard_normal((3, 4))
    report = check_op(textbook_dropout_forward, textbook_dropout_backward, {"x": x}, reference)
    assert not report.ok
    assert "fresh random numbers" in report.problem
    assert all(v.startswith(NOT_CHECKED) for v in report.verdicts.values()), report.verdicts
    assert report.to_dict()["problem"] == report.problem


@pytest.mark.parametrize("reference", [None, textbook_dropout_reference])
def test_a_fresh_randomness_report_prints(rng, reference):
    x = rng.standard_normal((3, 4))
    report = check_op(textbook_dropout_forward, textbook_dropout_backward, {"x": x}, reference)
    text = str(report)  # what a user sees first
    assert "NOT CHECKED" in text and "fresh random numbers" in text, text


@pytest.mark.parametrize("reference", [None, textbook_dropout_reference])
def test_seed_global_checks_textbook_dropout(rng, reference):
    x = rng.standard_normal((3, 4))
    saved = np.random.get_state()[1].copy()  # noqa: NPY002
    report = check_op(
        textbook_dropout_forward,
        textbook_dropout_backward,
        {"x": x},
        reference,
        seed_global=True,
        fd_samples=FD_SAMPLES,
    )
    assert report.ok, str(report)
    assert report.verdicts == {"x": MATCH}
    np.testing.assert_array_equal(np.random.get_state()[1], saved)  # noqa: NPY002


def rng_dropout_forward(x, rng):
    mask = rng.random(x.shape) >= RATE
    return x * mask / (1 - RATE), mask


def rng_dropout_backward(dout, mask):
    return {"x": dout * mask / (1 - RATE)}


def rng_dropout_reference(x, rng):
    mask = rng.random(tuple(x.shape)) >= RATE
    return x * tf.constant(mask / (1 - RATE), x.dtype)


@pytest.mark.parametrize("reference", [None, rng_dropout_reference])
def test_an_op_taking_rng_is_replayed(rng, reference):
    x = rng.standard_normal((3, 4))
    report = check_op(
        rng_dropout_forward, rng_dropout_backward, {"x": x}, reference, fd_samples=FD_SAMPLES
    )
    assert report.ok, str(report)
    assert report.verdicts == {"x": MATCH}


class GlobalRandomDropout(Layer):
    """A user's dropout drawing from NumPy's global generator: no rng argument."""

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, params, x):
        mask = np.random.rand(*x.shape) > RATE  # noqa: NPY002
        return x * mask, mask

    def backward(self, dout, cache, need_dx=True):
        return dout * cache, {}

    def reference(self, params, x):
        return textbook_dropout_reference(x)


def global_random_report():
    net = Sequential(
        [Flatten(), Dense(5), GlobalRandomDropout(), Dense(3)],
        input_shape=(2, 3, 1),
        seed=4,
        dtype=np.float64,
    )
    return audit(net, PLANTED_X, PLANTED_Y, fd_samples=4)


def test_the_audit_of_a_layer_drawing_from_numpy_is_not_ok():
    report = global_random_report()
    assert not report.ok
    fault = report.layer_at_fault
    assert fault is not None and fault.index == 2
    assert "fresh random numbers" in fault.check.problem


def test_the_audit_of_a_layer_drawing_from_numpy_matches_no_gradient():
    """Manual, float64 tape and float32 tape each see another mask: no comparison of them
    means anything, so no tensor may read "match" (as check_op reads "not checked")."""
    report = global_random_report()
    matched = {t.name: (t.verdict, t.note) for t in report.tensors if t.matches}
    assert matched == {}, str(report)


# --- 7. the likely cause of a dropout backward without its scale -------------------------------


class UnscaledDropout(Dropout):
    """Inverted dropout whose training backward forgets the 1/(1 - rate) scale."""

    def backward(self, dout, cache, need_dx=True):
        if cache is None:
            return super().backward(dout, cache, need_dx)
        return dout * cache.mask, {}


@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_a_forgotten_dropout_scale_names_the_keep_probability(rate):
    report = check_layer(UnscaledDropout(rate), (4,), batch=3, fd_samples=FD_SAMPLES)
    assert not report.ok
    record = report.input("x")
    assert record.verdict.startswith(FACTOR), record.verdict
    assert abs(record.manual.scale - (1 - rate)) < 1e-9, record.manual.scale
    assert record.cause is not None and "keep probability" in record.cause, (
        f"rate {rate}: cause {record.cause!r}\n{report}"
    )


@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_a_forgotten_dropout_scale_in_a_network_names_the_keep_probability(rate):
    net = Sequential(
        [Flatten(), Dense(5), UnscaledDropout(rate), Dense(3)],
        input_shape=(2, 3, 1),
        seed=4,
        dtype=np.float64,
    )
    report = audit(net, PLANTED_X, PLANTED_Y, fd_samples=4)
    fault = report.layer_at_fault
    assert fault is not None and fault.index == 2, str(report)
    record = fault.check.input("x")
    assert record.verdict.startswith(FACTOR), record.verdict
    assert "keep probability" in (record.cause or ""), record.cause


# --- 8. bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,argument,received",
    [
        (lambda: Dropout(rate=1), "rate", "1"),
        (lambda: Dropout(-0.1), "rate", "-0.1"),
        (lambda: BatchNormalization(momentum=1), "momentum", "1"),
        (lambda: BatchNormalization(momentum=-0.1), "momentum", "-0.1"),
        (lambda: BatchNormalization(epsilon=-1), "epsilon", "-1"),
        (lambda: LeakyReLU(alpha=-1), "alpha", "-1"),
        (lambda: Dropout(0.5, rule="x"), "rule", "'x'"),
    ],
)
def test_bad_arguments_raise_naming_them(make, argument, received):
    with pytest.raises(ValueError) as error:
        make()
    message = str(error.value)
    assert argument in message and f"got {received}" in message, message


def test_per_example_gradients_with_batch_norm_raise_naming_the_layer(rng):
    net = bn_net()
    x, y = rng.standard_normal((3, 2, 3, 1)), one_hot([0, 1, 2])
    with pytest.raises(ValueError, match=r"layer 2 \(BatchNormalization\)"):
        net.loss_and_gradients(x, y, per_example=True)
    assert net.step == 0
    np.testing.assert_array_equal(net.state["running_mean2"], np.zeros(4))
