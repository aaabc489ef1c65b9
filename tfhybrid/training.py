"""The training loop: ``train_and_evaluate(config, workdir)``.

The source article's program: plain SGD over shuffled mini-batches, one line per
epoch, the test accuracy at the end. The loss minimised is the sigmoid
cross-entropy; the "cost" the article printed is the softmax cross-entropy of the
same logits, averaged over the epoch's batches, and is reported beside it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from tfhybrid.config import TrainConfig
from tfhybrid.data import load_mnist, one_hot
from tfhybrid.errors import CheckpointError, DivergenceError
from tfhybrid.optimizers import SGD
from tfhybrid.progress import ProgressBar

# The article's printed per-epoch Cost and final test accuracy, for comparison.
ARTICLE_COST = (0.7286, 0.3221, 0.2614, 0.2179, 0.1860, 0.1640, 0.1461, 0.1331, 0.1222, 0.1137)
ARTICLE_TEST_ACCURACY = 0.9695


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The shuffled sample order of one epoch: a function of (seed, epoch) only.

    Deriving it instead of drawing from a running generator means any epoch can be
    replayed on its own, which is what resuming a run needs.
    """
    return np.random.default_rng([seed, epoch]).permutation(size)


def sgd_step(model, optimizer, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """One training step on a batch: forward, hand-written backward, SGD update.

    Returns (loss, cost) computed before the update. The training loop and
    ``scripts/benchmark.py`` both call this, so the benchmark times the real step.
    """
    result = model.loss_and_gradients(x, y)
    if math.isfinite(result["loss"]):
        optimizer.update(model.params, result["grads"])
    return result["loss"], result["cost"]


def prepare_workdir(workdir: str | Path) -> Path:
    """Create the output folder and prove it is writable before any training."""
    path = Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise CheckpointError(f"cannot write to output folder {path} ({err.strerror}); "
                              "choose another folder with --out") from None
    return path


def train_and_evaluate(config: TrainConfig, workdir: str | Path, log=print) -> dict:
    """Train the article's CNN as ``config`` says; write metrics.json and params.npz.

    Returns the metrics dict that is written to ``workdir/metrics.json``.
    """
    config = config.validated()
    out = prepare_workdir(workdir)
    started = time.perf_counter()
    data = load_mnist(config.resolved_data_dir(), config.train_limit)
    load_seconds = time.perf_counter() - started
    from tfhybrid.models import SeedCNN  # imports TensorFlow: only once the data is known good
    from tfhybrid.runtime import tune_for_training

    tune_for_training()  # one BLAS thread, freed memory kept: see tfhybrid/runtime.py

    x_train, labels_train = data.x_train, data.y_train
    y_train = one_hot(labels_train)
    log(f"data: {len(x_train)} training, {len(data.x_val)} validation, "
        f"{len(data.x_test)} test images (loaded in {load_seconds:.1f}s)")

    model = SeedCNN(seed=config.seed, dw_mode=config.dw_mode, bias_grad=config.bias_grad)
    optimizer = SGD(config.lr)
    steps = len(x_train) // config.batch_size  # the last partial batch is dropped
    history = []
    log(f"{'epoch':>5} {'article cost':>12} {'cost':>8} {'loss':>8} {'val acc':>8} {'seconds':>8}")
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        order = epoch_order(config.seed, epoch, len(x_train))
        cost_sum = loss_sum = 0.0
        with ProgressBar(steps, f"epoch {epoch}") as bar:
            for step in range(steps):
                # Sorted indices gather rows in memory order; a batch's gradient is a sum,
                # so the order inside it does not matter.
                idx = np.sort(order[step * config.batch_size:(step + 1) * config.batch_size])
                loss, cost = sgd_step(model, optimizer, x_train[idx], y_train[idx])
                if not math.isfinite(loss):
                    raise DivergenceError(
                        f"training diverged at epoch {epoch}, step {step + 1}: the loss is "
                        f"{loss}; lower --lr (got {config.lr})")
                cost_sum += cost
                loss_sum += loss
                bar.update(step + 1, cost=cost_sum / (step + 1))
        row = {
            "epoch": epoch,
            "cost": cost_sum / steps,
            "loss": loss_sum / steps,
            "val_accuracy": model.accuracy(data.x_val, data.y_val),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        reference = f"{ARTICLE_COST[epoch - 1]:.4f}" if epoch <= len(ARTICLE_COST) else "-"
        log(f"{epoch:>5} {reference:>12} {row['cost']:>8.4f} {row['loss']:>8.4f} "
            f"{row['val_accuracy']:>8.4f} {row['seconds']:>8.1f}")

    test_accuracy = model.accuracy(data.x_test, data.y_test)
    log(f"test accuracy {test_accuracy:.4f} (article: {ARTICLE_TEST_ACCURACY})")
    metrics = {
        "config": config.to_dict(),
        "model": model.name,
        "epochs": history,
        "test_accuracy": test_accuracy,
        "data_seconds": load_seconds,
        "total_seconds": time.perf_counter() - started,
        "article": {"cost": list(ARTICLE_COST), "test_accuracy": ARTICLE_TEST_ACCURACY},
    }
    np.savez(out / "params.npz", **model.params)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log(f"saved {out / 'metrics.json'} and {out / 'params.npz'}")
    return metrics
