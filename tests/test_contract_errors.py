"""The layer contract's edges: bad steps, unknown builder arguments, NaN state, a
contradicting --model on resume, a mode-aware layer of one's own kept whole, and the
report of a network whose forward draws fresh random numbers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_train_script
from tests.test_cli import assert_one_line_error
from tfhybrid import Sequential, build_model
from tfhybrid.audit import audit
from tfhybrid.layers import BatchNormalization, Dense, Flatten, Layer


def small_batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 4, 4, 1)), np.eye(3)[rng.integers(0, 3, n)]


@pytest.mark.parametrize("step", [-1, 1.5, "x", None, True])
def test_a_step_must_be_a_whole_number(step):
    net = Sequential([Flatten(), Dense(3)], input_shape=(4, 4, 1))
    x, y = small_batch()
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        net.step = step
    if step is not None:
        with pytest.raises(ValueError, match="step must be an integer >= 0"):
            net.loss_and_gradients(x, y, step=step)


def test_a_misspelt_builder_argument_is_refused():
    with pytest.raises(ValueError, match="takes no argument droput_rule"):
        build_model("dlfs-deep", droput_rule="inverted")
    with pytest.raises(ValueError, match="takes no argument foo"):
        build_model("two-layer-net", foo=1)


def test_state_must_be_finite():
    net = Sequential([Flatten(), BatchNormalization(), Dense(3)], input_shape=(4, 4, 1))
    bad = dict(net.state, running_var1=np.full(16, np.nan))
    with pytest.raises(ValueError, match="running_var1 holds NaN"):
        net.state = bad


class Statistics(Layer):
    """A batch norm without scale of one's own that does not declare couples_batch."""

    def forward(self, params, x, *, training, state):
        mean, var = (x.mean(0), x.var(0)) if training else (state["mean"], state["var"])
        if training:
            state["mean"], state["var"] = mean, var
        return (x - mean) / np.sqrt(var + 1e-5), (x, mean, var, training)

    def backward(self, dout, cache, need_dx=True):
        x, mean, var, training = cache
        std = np.sqrt(var + 1e-5)
        xhat = (x - mean) / std
        if not training:
            return dout / std, {}
        return (dout - dout.mean(0) - xhat * (dout * xhat).mean(0)) / std, {}

    def state_shapes(self, input_shape):
        return {"mean": input_shape, "var": input_shape}

    def reference(self, params, x, *, training, state):
        from tfhybrid._tf import tf

        if training:
            mean, var = tf.nn.moments(x, [0])
        else:
            mean, var = tf.constant(state["mean"]), tf.constant(state["var"])
        return (x - mean) / tf.sqrt(var + 1e-5)


def test_a_layer_with_a_mode_sees_the_whole_batch_however_large():
    net = Sequential(
        [Flatten(), Dense(5), Statistics(), Dense(3)], input_shape=(4, 4, 1), dtype=np.float64
    )
    net.chunk_size = 4  # larger batches would be worked through in pieces
    x, y = small_batch(10)
    from tfhybrid._tf import tf

    variables = {k: tf.Variable(v) for k, v in net.params.items()}
    with tf.GradientTape() as tape:
        loss, _ = net.reference_forward(variables, x, y)
    true = tape.gradient(loss, variables)
    result = net.loss_and_gradients(x, y)
    assert abs(result["loss"] - float(loss)) < 1e-12
    for key, grad in true.items():
        np.testing.assert_allclose(result["grads"][key], grad.numpy(), rtol=1e-9, atol=1e-14)


class NoisyDropout(Layer):
    """Draws its mask from NumPy's global generator: not a function of its input."""

    def forward(self, params, x):
        mask = np.random.rand(*x.shape) > 0.5  # noqa: NPY002  (the bug shown)
        return x * mask, mask

    def backward(self, dout, cache, need_dx=True):
        return dout * cache, {}

    def reference(self, params, x):
        from tfhybrid._tf import tf

        return x * tf.constant(np.random.rand(*x.shape) > 0.5, x.dtype)  # noqa: NPY002


def test_a_network_drawing_fresh_numbers_is_reported_not_checked_and_nothing_else():
    net = Sequential(
        [Flatten(), Dense(5), NoisyDropout(), Dense(3)], input_shape=(4, 4, 1), dtype=np.float64
    )
    x, y = small_batch()
    report = audit(net, x, y, fd_samples=2)
    text = str(report)
    assert not report.ok and report.problem
    assert all(t.verdict == "not checked: fresh random numbers" for t in report.tensors)
    assert "result: NOT CHECKED: the network's forward draws fresh random numbers" in text
    assert "loss:" not in text and "update check" not in text and "zero up to rounding" not in text
    assert "layer at fault: 2 (NoisyDropout" in text


def test_resume_with_another_model_names_the_contradiction(mnist_like_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--train-limit", "100", "--batch-size", "50", "--epochs", "1", "--test-limit", "50"]
    first = run_train_script(
        "--model", "two-layer-net", *args, "--data-dir", str(mnist_like_dir), "--out", str(out)
    )
    assert first.returncode == 0, first.stderr
    resumed = run_train_script(
        "--resume", str(out), "--model", "dlfs-deep", "--data-dir", str(mnist_like_dir)
    )
    assert_one_line_error(resumed, "--model dlfs-deep contradicts", "--model two-layer-net")


def test_the_per_example_audit_of_a_dropout_network_keeps_the_batch_whole():
    from tfhybrid.layers import Dropout

    net = Sequential(
        [Flatten(), Dense(6), Dropout(0.5), Dense(3)], input_shape=(4, 4, 1), dtype=np.float64
    )
    x, y = small_batch(4)
    report = audit(net, x, y, per_example=True, fd_samples=4)
    assert report.ok, report.mismatches
    assert {t.name for t in report.per_example} >= {"dw1:per-example", "dw2:sum"}


class Rolled(Dense):
    """Each sample's own gradient handed to its neighbour: the batch sum stays right."""

    def backward_per_example(self, dout, cache, need_dx=True):
        dx, grads = super().backward_per_example(dout, cache, need_dx)
        return dx, {k: np.roll(v, 1, axis=0) for k, v in grads.items()}


def test_a_per_example_bug_under_dropout_is_found():
    from tfhybrid.layers import Dropout

    net = Sequential(
        [Flatten(), Rolled(6), Dropout(0.5), Dense(3)], input_shape=(4, 4, 1), dtype=np.float64
    )
    x, y = small_batch(4)
    report = audit(net, x, y, per_example=True, fd_samples=4)
    assert "dw1:per-example" in report.mismatches and "dw1:sum" not in report.mismatches


def test_the_per_example_audit_under_dropout_needs_a_loss_linear_in_the_labels():
    from tfhybrid.layers import Dropout

    net = Sequential(
        [Flatten(), Dense(6), Dropout(0.5), Dense(3)],
        input_shape=(4, 4, 1),
        dtype=np.float64,
        loss="sigmoid_cross_entropy",
    )
    x, y = small_batch(4)
    with pytest.raises(ValueError, match="needs the softmax cross-entropy"):
        audit(net, x, y, per_example=True)
