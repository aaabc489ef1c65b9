"""fit, the training loop's short form: batches, determinism, and learning on real MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from tfhybrid.catalog import build_model
from tfhybrid.optimizers import build_optimizer
from tfhybrid.training import batch_indices, fit


def test_batch_indices_cover_each_pass_once():
    batches = list(batch_indices(10, 3, 7, seed=0))
    assert len(batches) == 7 and all(len(b) == 3 for b in batches)
    first_pass = np.concatenate(batches[:3])
    assert len(set(first_pass.tolist())) == 9  # 3 batches of 3 from one permutation
    again = list(batch_indices(10, 3, 7, seed=0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    with pytest.raises(ValueError, match="batch size"):
        next(batch_indices(10, 11, 1, seed=0))


@pytest.fixture(scope="module")
def small_mnist(mnist_like_dir):
    from tfhybrid.data import load_mnist

    splits = load_mnist(str(mnist_like_dir), train_limit=2000)
    return splits.x_train, splits.y_train, splits.x_test[:1000], splits.y_test[:1000]


@pytest.mark.parametrize(
    "name,optimizer,lr,steps",
    [
        ("two-layer-net", "adam", 0.001, 200),
        ("conv8", "sgd", 0.005, 300),
        ("lenet5", "adam", 0.001, 60),
    ],
)
def test_fit_learns_on_mnist(small_mnist, name, optimizer, lr, steps):
    x, y, x_test, y_test = small_mnist
    model = build_model(name, seed=0)
    batch = 1 if name == "conv8" else 50
    losses = fit(
        model, build_optimizer(optimizer, lr), x, y, batch_size=batch, iterations=steps, seed=0
    )
    assert len(losses) == steps
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    assert model.accuracy(x_test, y_test) > 0.5
