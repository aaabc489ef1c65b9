"""Each source network's manual gradient against tf.GradientTape of its reference_forward."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.catalog import MODEL_NAMES, TRAINING_DEFAULTS, build_model
from tfhybrid.data import one_hot

RTOL = 1e-10  # float64, same maths, another summation order
SEQUENTIAL = ["lenet5", "numpy-cnn", "conv8", "two-layer-net"]


def tape_gradients(model, x, y):
    """Loss, parameter gradients and intermediate gradients of reference_forward."""
    variables = {k: tf.Variable(v) for k, v in model.params.items()}
    x = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)  # so that layers before the first parameter (flatten) are recorded
        loss, inter = model.reference_forward(variables, x, tf.constant(y))
    grads = {k: g.numpy() for k, g in tape.gradient(loss, variables).items()}
    d_inter = {"d" + k: g.numpy() for k, g in tape.gradient(loss, inter).items()}
    return float(loss), grads, d_inter


def mnist_like(rng, n):
    """Digit-like images: a flat zero background (tie-heavy after pooling) and a bright blob."""
    x = np.zeros((n, 28, 28, 1))
    x[:, 6:22, 8:20] = rng.random((n, 16, 12, 1))
    x[:, 10:14, 10:14] = 1.0  # a saturated patch: ties inside the digit too
    return x


@pytest.mark.parametrize("name", SEQUENTIAL)
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("make_input", ["random", "mnist-like"])
def test_manual_gradients_match_tape(name, batch, make_input):
    rng = np.random.default_rng(batch)
    x = rng.random((batch, 28, 28, 1)) if make_input == "random" else mnist_like(rng, batch)
    y = one_hot(rng.integers(0, 10, batch), np.float64)
    model = build_model(name, seed=batch, dtype=np.float64)
    result = model.loss_and_gradients(x, y)
    tape_loss, tape_grads, tape_inter = tape_gradients(model, x, y)
    assert result["loss"] == pytest.approx(tape_loss, rel=RTOL)
    assert set(result["grads"]) == set(model.params)
    for key, grad in tape_grads.items():
        assert result["grads"][key].dtype == np.float64
        assert_close(f"{name} d{key}", result["grads"][key], grad, RTOL)
    # every layer output from the first layer with parameters on has its gradient reported
    first = model.first_parameter_layer()
    expected = {"d" + n for n in model.names[first:]}
    assert set(result["intermediates"]) == expected
    for key in expected:
        assert_close(f"{name} {key}", result["intermediates"][key], tape_inter[key], RTOL)


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_param_shapes_and_float32(name):
    model = build_model(name, seed=0)
    for key, shape in model.param_shapes.items():
        assert model.params[key].shape == tuple(shape) and model.params[key].dtype == np.float32
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    result = model.loss_and_gradients(x, one_hot(np.array([1, 2, 3])))
    assert result["logits"].shape == (3, 10)
    for key, grad in result["grads"].items():
        assert grad.dtype == np.float32 and grad.shape == model.params[key].shape, key


def test_all_ties_rule_only_changes_gradients_below_pooling():
    x = mnist_like(np.random.default_rng(0), 4)
    y = one_hot(np.arange(4), np.float64)
    first = build_model("conv8", seed=1, dtype=np.float64).gradients(x, y)
    every = build_model("conv8", seed=1, dtype=np.float64, pool_ties="all").gradients(x, y)
    np.testing.assert_array_equal(every["w2"], first["w2"])
    assert np.abs(every["w1"] - first["w1"]).max() > 1e-3 * np.abs(first["w1"]).max()


def test_registry_names_and_defaults():
    assert (
        set(MODEL_NAMES)
        == set(TRAINING_DEFAULTS)
        == {
            "seed-cnn",
            "lenet5",
            "numpy-cnn",
            "conv8",
            "two-layer-net",
            "dlfs-deep",
            "bn-cnn",
            "resnet-mnist",
        }  # fmt: skip
    )
    assert build_model("seed-cnn", seed=0).name == "seed-cnn"
    for name in MODEL_NAMES:
        assert build_model(name, seed=0).name == name
        defaults = TRAINING_DEFAULTS[name]
        assert (defaults.epochs is None) != (defaults.iterations is None), name
    assert TRAINING_DEFAULTS["conv8"].steps(1000) == 3000
    assert TRAINING_DEFAULTS["two-layer-net"].steps(55_000) == 10_000
    assert build_model("conv8", seed=0).layers[0].offset == -0.5  # its input scaling
    assert build_model("two-layer-net", seed=0, hidden=100).params["w1"].shape == (784, 100)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", seed=0)
    with pytest.raises(ValueError, match="pool_ties"):
        build_model("lenet5", seed=0, pool_ties="some")


def test_same_seed_same_params():
    a, b = build_model("lenet5", seed=3), build_model("lenet5", seed=3)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])


def test_models_built_from_one_dict_do_not_share_arrays():
    start = build_model("two-layer-net", seed=0).params
    a = build_model("two-layer-net", seed=1)
    a.params = start
    a.params["w1"] += 1.0
    assert not np.shares_memory(a.params["w1"], start["w1"])
    np.testing.assert_allclose(a.params["w1"] - start["w1"], 1.0, rtol=1e-5)
