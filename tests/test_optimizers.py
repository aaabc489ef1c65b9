"""Each update rule against its formula written out by hand, and against keras.optimizers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.optimizers import (
    EPS,
    OPTIMIZER_NAMES,
    AdaGrad,
    Adam,
    Momentum,
    RMSprop,
    build_optimizer,
)

STEPS = 6
RTOL = 1e-12


def gradient_sequence(rng, shapes, steps=STEPS):
    """Random gradients, one dict per step, never zero, with changing signs and scales."""
    return [
        {k: rng.standard_normal(s) * (1 + step) for k, s in shapes.items()} for step in range(steps)
    ]


def start_params(rng):
    return {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal((1, 3))}


def run(optimizer, params, grad_steps):
    params = {k: v.copy() for k, v in params.items()}
    for grads in grad_steps:
        optimizer.update(params, grads)
    return params


def by_formula(name, p, grad_steps, lr, **hp):
    """The rule of the optimizers module docstring, one line per formula, for one array."""
    p = p.copy()
    v = h = m = np.zeros_like(p)
    for t, g in enumerate(grad_steps, start=1):
        if name == "sgd":
            p = p - lr * g
        elif name == "momentum":
            v = hp["momentum"] * v - lr * g
            p = p + v
        elif name == "adagrad":
            h = h + g**2
            p = p - lr * g / (np.sqrt(h) + EPS)
        elif name == "rmsprop":
            h = hp["decay"] * h + (1 - hp["decay"]) * g**2
            p = p - lr * g / (np.sqrt(h) + EPS)
        elif name == "adam":
            m = m + (1 - hp["beta1"]) * (g - m)
            v = v + (1 - hp["beta2"]) * (g**2 - v)
            lr_t = lr * np.sqrt(1 - hp["beta2"] ** t) / (1 - hp["beta1"] ** t)
            p = p - lr_t * m / (np.sqrt(v) + EPS)
    return p


HYPER = {
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "adagrad": {},
    "rmsprop": {"decay": 0.99},
    "adam": {"beta1": 0.9, "beta2": 0.999},
}


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_update_follows_formula(rng, name):
    params = start_params(rng)
    grad_steps = gradient_sequence(rng, {k: v.shape for k, v in params.items()})
    lr = 0.05
    mine = run(build_optimizer(name, lr, **HYPER[name]), params, grad_steps)
    for key in params:
        expected = by_formula(name, params[key], [g[key] for g in grad_steps], lr, **HYPER[name])
        assert_close(f"{name} {key} after {STEPS} steps", mine[key], expected, RTOL)


def keras_run(optimizer, params, grad_steps):
    variables = {k: keras.Variable(v, dtype="float64") for k, v in params.items()}
    for grads in grad_steps:
        optimizer.apply_gradients([(tf.constant(grads[k]), variables[k]) for k in params])
    return {k: v.numpy() for k, v in variables.items()}


# name -> (our options, the Keras optimizer that follows the same definition). Keras keeps
# some hyper-parameters in float32: use values that float32 represents exactly.
BETA1, BETA2 = 0.875, 1 - 2.0**-10
KERAS_TWINS = {
    "sgd": ({}, lambda lr: keras.optimizers.SGD(learning_rate=lr)),
    "momentum": (
        {"momentum": 0.875},
        lambda lr: keras.optimizers.SGD(learning_rate=lr, momentum=0.875),
    ),
    "adam": (
        {"beta1": BETA1, "beta2": BETA2},
        lambda lr: keras.optimizers.Adam(learning_rate=lr, beta_1=BETA1, beta_2=BETA2, epsilon=EPS),
    ),
    # Keras puts epsilon inside the root and starts AdaGrad's accumulator at 0.1; with
    # both at zero (and our eps at zero) the definitions coincide.
    "adagrad": (
        {"eps": 0.0},
        lambda lr: keras.optimizers.Adagrad(
            learning_rate=lr, initial_accumulator_value=0.0, epsilon=0.0
        ),
    ),
    "rmsprop": (
        {"decay": 0.984375, "eps": 0.0},
        lambda lr: keras.optimizers.RMSprop(learning_rate=lr, rho=0.984375, epsilon=0.0),
    ),
}


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_update_matches_keras(rng, name):
    params = start_params(rng)
    grad_steps = gradient_sequence(rng, {k: v.shape for k, v in params.items()})
    options, make_keras = KERAS_TWINS[name]
    lr = 2.0**-4  # Keras keeps the learning rate in a float32 variable: use an exact one
    mine = run(build_optimizer(name, lr, **options), params, grad_steps)
    theirs = keras_run(make_keras(lr), params, grad_steps)
    for key in params:
        assert_close(f"{name} vs keras {key}", mine[key], theirs[key], 1e-10)


@pytest.mark.parametrize("cls", [AdaGrad, RMSprop])
def test_epsilon_placement_differs_from_keras_as_documented(rng, cls):
    """Ours: g / (sqrt(h) + eps); Keras: g / sqrt(h + eps). Same first step up to that."""
    g = rng.standard_normal((5,)) * 1e-4  # small gradients make the difference visible
    p = np.zeros(5)
    cls(0.1, eps=1e-7).update({"p": p}, {"p": g})
    h = g**2 if cls is AdaGrad else 0.01 * g**2
    assert_close("ours", p, -0.1 * g / (np.sqrt(h) + 1e-7), RTOL)
    keras_rule = -0.1 * g / np.sqrt(h + 1e-7)
    assert np.abs(p - keras_rule).max() > 0.1 * np.abs(keras_rule).max()


def test_adam_equals_paper_rule_with_scaled_epsilon(rng):
    """Kingma & Ba's Algorithm 1 with eps' = eps / sqrt(1 - beta2^t) equals our step t."""
    g = rng.standard_normal(6) * 1e-6
    p = np.zeros(6)
    Adam(0.001).update({"p": p}, {"p": g})
    m_hat, v_hat = (0.1 * g) / 0.1, (0.001 * g**2) / 0.001
    paper = -0.001 * m_hat / (np.sqrt(v_hat) + EPS / np.sqrt(1 - 0.999))
    assert_close("adam vs paper (eps hat)", p, paper, 1e-10)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_state_dict_round_trip_resumes_exactly(rng, name, tmp_path):
    params = start_params(rng)
    grad_steps = gradient_sequence(rng, {k: v.shape for k, v in params.items()})
    straight = run(build_optimizer(name, 0.05), params, grad_steps)
    first = build_optimizer(name, 0.05)
    halfway = run(first, params, grad_steps[:3])
    np.savez(tmp_path / "state.npz", **first.state_dict())
    with np.load(tmp_path / "state.npz") as saved:
        state = dict(saved)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    second = build_optimizer(name, 0.05)
    second.load_state_dict(state)
    resumed = run(second, halfway, grad_steps[3:])
    for key in params:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=f"{name} {key}")


def test_state_dict_rejects_foreign_state():
    with pytest.raises(ValueError, match="unexpected entry"):
        Momentum(0.1).load_state_dict({"step": np.array(1), "m/w": np.zeros(2)})
    with pytest.raises(ValueError, match="step"):
        Adam(0.1).load_state_dict({})


def test_float32_params_stay_float32(rng):
    for name in OPTIMIZER_NAMES:
        params = {"w": rng.standard_normal(4).astype(np.float32)}
        build_optimizer(name, 0.1).update(params, {"w": rng.standard_normal(4)})
        assert params["w"].dtype == np.float32, name


def test_build_optimizer_rejects_unknown_names_and_bad_lr():
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer("lbfgs", 0.1)
    with pytest.raises(ValueError, match="learning rate"):
        build_optimizer("sgd", 0.0)


def test_an_optimizer_added_as_one_class_is_known_everywhere():
    """docs/development.md: a class with a name, a conventional rate and _apply."""
    from tfhybrid.catalog import default_lr
    from tfhybrid.config import TrainConfig
    from tfhybrid.optimizers import OPTIMIZERS, Optimizer, build_optimizer, optimizer_names

    class SignSGD(Optimizer):
        """p <- p - lr sign(g)."""

        name = "signsgd"
        conventional_lr = 0.001

        def _apply(self, key, param, grad):
            param -= self.lr * np.sign(grad)

    try:
        assert "signsgd" in optimizer_names()
        params = {"w": np.array([1.0, -2.0])}
        build_optimizer("signsgd", 0.5).update(params, {"w": np.array([3.0, -0.1])})
        np.testing.assert_array_equal(params["w"], [0.5, -1.5])
        assert default_lr("seed-cnn", "signsgd") == (0.001, "signsgd's conventional rate")
        config = TrainConfig.for_model("seed-cnn", optimizer="signsgd").validated()
        assert config.lr == 0.001
    finally:
        OPTIMIZERS.pop("signsgd", None)
    with pytest.raises(TypeError, match="must set conventional_lr"):

        class NoRate(Optimizer):  # noqa: F841
            name = "norate"

            def _apply(self, key, param, grad):
                pass
