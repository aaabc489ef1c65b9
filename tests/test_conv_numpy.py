"""The NumPy convolution (tfhybrid.ops.conv_numpy, ``--conv numpy``) against TensorFlow in
float64: its forward against tf.nn.conv2d, its dx, dw and db against tf.GradientTape, on
random shapes, strides and paddings, and a network built on it against the TensorFlow one."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_train_script
from tests.helpers import assert_close
from tests.test_cli import assert_one_line_error
from tests.test_ops import RTOL, tape_vjp
from tfhybrid._tf import tf
from tfhybrid.audit import check_layer
from tfhybrid.catalog import build_model
from tfhybrid.layers import Conv2D
from tfhybrid.ops import conv_numpy

# (x shape, kernel, filters, stride, pad); several leave rows or columns no window reads.
CASES = [
    ((2, 7, 6, 3), 3, 4, 1, 0),
    ((3, 9, 8, 2), 3, 5, 2, 1),
    ((2, 6, 6, 1), 1, 3, 2, 0),
    ((2, 5, 7, 2), 4, 3, 3, 2),
    ((1, 8, 8, 2), 5, 2, 1, 2),
]


def tf_conv(stride, pad):
    def conv(x, w, b):
        padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return tf.nn.conv2d(padded, w, stride, "VALID") + tf.reshape(b, [-1])

    return conv


@pytest.mark.parametrize("shape,k,filters,stride,pad", CASES)
def test_numpy_convolution_matches_tape(rng, shape, k, filters, stride, pad):
    x = rng.standard_normal(shape)
    w = rng.standard_normal((k, k, shape[-1], filters))
    b = rng.standard_normal((1, filters))
    reference = tf_conv(stride, pad)
    out, cache = conv_numpy.conv2d_forward(x, w, b, stride, pad)
    assert_close("conv out", out, reference(x, w, b).numpy(), RTOL)
    dout = rng.standard_normal(out.shape)
    tape = tape_vjp(reference, {"x": x, "w": w, "b": b}, dout)
    grads = conv_numpy.conv2d_backward(dout, cache)
    for mine, theirs in (("dx", "x"), ("dw", "w"), ("db", "b")):
        assert grads[mine].shape == tape[theirs].shape, mine
        assert_close(f"conv {mine}", grads[mine], tape[theirs], RTOL)


@pytest.mark.parametrize("shape,k,filters,stride,pad", CASES[:3])
def test_each_samples_gradient_sums_to_the_batch_one(rng, shape, k, filters, stride, pad):
    x = rng.standard_normal(shape)
    w = rng.standard_normal((k, k, shape[-1], filters))
    out, cache = conv_numpy.conv2d_forward(x, w, np.zeros(filters), stride, pad)
    dout = rng.standard_normal(out.shape)
    whole = conv_numpy.conv2d_backward(dout, cache)
    each = conv_numpy.conv2d_backward(dout, cache, need_dx=False, per_example=True)
    assert "dx" not in each
    assert each["dw"].shape == (shape[0], *w.shape)
    assert_close("per-example dw, summed", each["dw"].sum(axis=0), whole["dw"], RTOL)
    assert_close("per-example db, summed", each["db"].sum(axis=0), whole["db"], RTOL)
    for n in range(shape[0]):  # sample n's own gradient is the batch gradient of sample n
        alone = conv_numpy.conv2d_backward(
            dout[n : n + 1], conv_numpy.conv2d_forward(x[n : n + 1], w, None, stride, pad)[1]
        )
        assert_close(f"dw of sample {n}", each["dw"][n], alone["dw"], RTOL)


def test_layer_on_the_numpy_backend_passes_the_audit():
    layer = Conv2D(3, 3, stride=2, padding=1, backend="numpy")
    assert not layer.fused and not layer.needs_tf  # NumPy runs its forward too
    assert check_layer(layer, (7, 7, 2)).ok


def test_layer_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="backend.*'torch'"):
        Conv2D(3, 3, backend="torch")


@pytest.mark.parametrize("model", ["lenet5", "bn-cnn"])
def test_a_network_on_numpy_convolutions_equals_the_tensorflow_one(rng, model):
    x = rng.random((3, 28, 28, 1))
    y = np.eye(10)[rng.integers(0, 10, 3)]
    results = {}
    for conv in ("tf", "numpy"):
        net = build_model(model, seed=3, dtype=np.float64, conv=conv)
        results[conv] = net.loss_and_gradients(x, y)
    tf_run, np_run = results["tf"], results["numpy"]
    assert np_run["loss"] == pytest.approx(tf_run["loss"], rel=1e-12)
    assert np_run["grads"].keys() == tf_run["grads"].keys()
    for name in tf_run["grads"]:  # atol: a gradient that is 0 in exact arithmetic (b5
        # before bn-cnn's batch normalization) is rounding noise in both
        np.testing.assert_allclose(
            np_run["grads"][name], tf_run["grads"][name], rtol=1e-10, atol=1e-12, err_msg=name
        )


def test_train_script_runs_on_numpy_convolutions(mnist_like_dir, tmp_path):
    result = run_train_script(
        "--model", "lenet5", "--conv", "numpy", "--iterations", "3", "--batch-size", "8",
        "--train-limit", "64", "--test-limit", "32",
        "--data-dir", str(mnist_like_dir), "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "convolutions in NumPy (--conv numpy)" in result.stdout
    assert (tmp_path / "run" / "params.npz").exists()


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--conv", "torch"], ["--conv", "torch", "numpy"]),
        (["--model", "two-layer-net", "--conv", "numpy"], ["--conv", "two-layer-net"]),
    ],
)
def test_bad_conv_option_gives_one_line(args, needles, tmp_path):
    result = run_train_script(*args, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, *needles)


def test_a_saved_run_may_be_audited_on_numpy_convolutions(mnist_like_dir, tmp_path):
    from tests.test_audit_cli import run_check

    run = tmp_path / "run"
    trained = run_train_script(
        "--iterations", "2", "--batch-size", "8", "--train-limit", "64", "--test-limit", "16",
        "--data-dir", str(mnist_like_dir), "--out", str(run),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    audited = run_check("--from", str(run), "--conv", "numpy", "--batch", "2", "--expect", "db1")
    assert audited.returncode == 0, audited.stdout + audited.stderr
    header = next(line for line in audited.stdout.splitlines() if "gradient audit" in line)
    assert "conv numpy" in header
