"""The article's network in the layer framework against the old code path: the same
parameters after SGD steps.

No timing here (scripts/benchmark.py measures); only that speed changed no result.
The reference is the article's program as it was first written: the old initialisation
and the generic op pairs of tfhybrid/ops, one NumPy or TensorFlow call per layer.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid.data import one_hot
from tfhybrid.models.seed_cnn import seed_cnn
from tfhybrid.ops.activations import sigmoid_backward, sigmoid_forward
from tfhybrid.ops.conv import conv2d_backward, conv2d_forward
from tfhybrid.ops.dense import dense_backward, dense_forward
from tfhybrid.ops.losses import sigmoid_cross_entropy
from tfhybrid.ops.pooling import avg_pool_backward, avg_pool_forward
from tfhybrid.optimizers import SGD
from tfhybrid.training import train_step

LR = 0.1
STEPS = 6
RTOL = {np.float32: 2e-5, np.float64: 1e-11}
CONV_POSITIONS = 20 * 20  # output positions of the 9x9 VALID convolution on 28x28
PARAM_SHAPES = {"w1": (9, 9, 1, 20), "b1": (1, 20), "w2": (2000, 10), "b2": (1, 10)}


def init_params(seed: int, dtype) -> dict:
    """The old code path's initialisation: standard normal x 0.1, drawn w1, b1, w2, b2."""
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * 0.1).astype(dtype) for k, s in PARAM_SHAPES.items()}


def reference_gradients(params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """The article's backward pass from the generic op pairs (seed bias rule)."""
    z1, conv_cache = conv2d_forward(x, params["w1"], params["b1"])
    s1, _ = sigmoid_forward(z1)
    pooled, pool_cache = avg_pool_forward(s1, 2, 2)
    z2, dense_cache = dense_forward(pooled.reshape(len(x), -1), params["w2"], params["b2"])
    _, dz2 = sigmoid_cross_entropy(z2, y)
    dense = dense_backward(dz2, dense_cache)
    ds1 = avg_pool_backward(dense["dx"].reshape(pooled.shape), pool_cache)
    conv = conv2d_backward(sigmoid_backward(ds1, s1), conv_cache, need_dx=False)
    return {
        "w1": conv["dw"],
        "b1": conv["db"] / CONV_POSITIONS,
        "w2": dense["dw"],
        "b2": dense["db"],
    }


def batches(dtype, n=32, count=STEPS, seed=7):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield (rng.random((n, 28, 28, 1)).astype(dtype), one_hot(rng.integers(0, 10, n), dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_dw_modes_and_reference_reach_the_same_parameters(dtype):
    reference = init_params(11, dtype)
    optimizer = SGD(LR)
    models = {
        mode: seed_cnn(seed=11, dtype=dtype, dw_mode=mode) for mode in ("batched", "per-sample")
    }
    for model in models.values():  # the same initial weights as the old code path
        for key, value in init_params(11, dtype).items():
            np.testing.assert_array_equal(model.params[key], value)
    for x, y in batches(dtype):
        optimizer.update(reference, reference_gradients(reference, x, y))
        for model in models.values():
            loss = train_step(model, optimizer, x, y)["loss"]  # the training loop's own step
            assert np.isfinite(loss)
    for mode, model in models.items():
        for key, value in reference.items():
            assert model.params[key].dtype == dtype
            assert_close(f"{mode} {key} after {STEPS} steps", model.params[key], value, RTOL[dtype])
            assert not np.array_equal(value, init_params(11, dtype)[key]), "no step was taken"


def test_per_sample_filter_gradients_are_each_samples_own():
    x, y = next(batches(np.float64, n=5, count=1))
    model = seed_cnn(seed=2, dtype=np.float64, dw_mode="per-sample")
    result = model.loss_and_gradients(x, y, per_example=True)
    per_sample = result["per_example_grads"]["w1"]
    assert per_sample.shape == (5, 9, 9, 1, 20)
    assert_close("sum of per-sample dw1", per_sample.sum(axis=0), result["grads"]["w1"], 1e-12)
    for n in range(5):
        # The loss is a batch mean: sample n's share is its own gradient divided by N.
        alone = model.gradients(x[n : n + 1], y[n : n + 1])["w1"] / 5
        assert_close(f"dw1 of sample {n}", per_sample[n], alone, 1e-11)
    batched = seed_cnn(params=model.params, dtype=np.float64).loss_and_gradients(x, y)
    assert "per_example_grads" not in batched


def test_evaluation_logits_match_the_training_forward(rng):
    model = seed_cnn(seed=4)
    x = rng.random((23, 28, 28, 1), dtype=np.float32)
    z2, _ = model.forward(x)
    assert_close("logits in batches of 10", model.logits(x, batch_size=10), z2, 1e-6)
    assert model.logits(x[:0]).shape == (0, 10)


def test_runtime_tuning_is_applied_once_and_reported():
    from tfhybrid import runtime

    first = runtime.tune_for_training()
    assert runtime.tune_for_training() is first
    assert set(first) == {"blas_threads", "retain_freed_memory"}
