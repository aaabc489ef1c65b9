"""A minimal training loop for any model and optimizer (the scripts' and the tests' helper).

The full command line (checkpoints, validation, run folders) is ``tfhybrid.training``;
this loop only draws batches, updates, and records the loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from tfhybrid.data import one_hot


def batch_indices(size: int, batch_size: int, steps: int, seed: int) -> Iterator[np.ndarray]:
    """``steps`` batches of indices into ``size`` examples: consecutive slices of a fresh
    permutation per pass (a pass's last partial batch is skipped), seeded by ``seed``."""
    if not 1 <= batch_size <= size:
        raise ValueError(f"batch size must be in [1, {size}], got {batch_size}")
    rng = np.random.default_rng(seed)
    per_pass = size // batch_size
    done = 0
    while done < steps:
        order = rng.permutation(size)
        for start in range(0, min(per_pass, steps - done) * batch_size, batch_size):
            yield order[start:start + batch_size]
        done += min(per_pass, steps - done)


def fit(model, optimizer, x: np.ndarray, labels: np.ndarray, *, batch_size: int,
        iterations: int, seed: int = 0, log_every: int = 0,
        log: Callable[[str], object] = print) -> list[float]:
    """Train ``model`` in place for ``iterations`` updates; returns the loss of each step
    (computed on the step's batch before its update). ``labels``: int [N]."""
    losses = []
    started = time.perf_counter()
    for step, index in enumerate(batch_indices(len(x), batch_size, iterations, seed), start=1):
        result = model.loss_and_gradients(x[index], one_hot(labels[index], model.dtype))
        if not np.isfinite(result["loss"]):
            raise FloatingPointError(f"loss became {result['loss']} at step {step}")
        optimizer.update(model.params, result["grads"])
        losses.append(result["loss"])
        if log_every and step % log_every == 0:
            recent = float(np.mean(losses[-log_every:]))
            log(f"step {step:6d}/{iterations}  loss {recent:.4f}  "
                f"{time.perf_counter() - started:7.1f}s")
    return losses
