"""Defaults a new user meets: each optimizer's own learning rate, comparisons only on the
source's dataset, the history written as it happens, and hints that name the command run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_reliability import quiet
from tfhybrid.catalog import CONVENTIONAL_LR, MODEL_NAMES, TRAINING_DEFAULTS, build_model
from tfhybrid.config import TrainConfig
from tfhybrid.optimizers import OPTIMIZER_NAMES, build_optimizer
from tfhybrid.training import fit, train_and_evaluate


def test_an_optimizer_without_lr_takes_its_own_rate():
    assert TrainConfig.for_model("two-layer-net", optimizer="rmsprop").lr == 0.001
    assert TrainConfig.for_model("seed-cnn", optimizer="adam").lr == CONVENTIONAL_LR["adam"]
    assert TrainConfig.for_model("lenet5", optimizer="adam").lr == 0.001  # its source's
    assert TrainConfig.for_model("seed-cnn", optimizer="sgd").lr == 0.1  # the article's
    assert TrainConfig.for_model("seed-cnn", optimizer="adam", lr=0.05).lr == 0.05
    assert TrainConfig.for_model("numpy-cnn", optimizer="momentum").lr == 0.001  # 0.01 / 10
    assert (
        TrainConfig.for_model("seed-cnn", optimizer="adam").lr_origin()
        == "adam's conventional rate"
    )
    assert TrainConfig.for_model("seed-cnn").lr_origin() == "seed-cnn's source rate for sgd"


@pytest.fixture(scope="module")
def images(mnist_like_dir):
    from tfhybrid.data import load_mnist

    splits = load_mnist(str(mnist_like_dir), train_limit=1000)
    return splits.x_train, splits.y_train


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_trains_with_every_optimizer_on_defaults(images, model):
    x, labels = images
    batch = min(TRAINING_DEFAULTS[model].batch_size, 50)
    for optimizer in OPTIMIZER_NAMES:
        config = TrainConfig.for_model(model, optimizer=optimizer)
        net = build_model(model, seed=0)
        losses = fit(
            net,
            build_optimizer(optimizer, config.lr),
            x,
            labels,
            batch_size=batch,
            iterations=40,
            seed=0,
        )
        assert np.isfinite(losses).all(), (model, optimizer)
        first, last = np.mean(losses[:5]), np.mean(losses[-5:])
        assert last < 1.5 * first, f"{model} with {optimizer} (lr {config.lr}): {first}->{last}"


def test_the_sources_figure_only_on_the_sources_dataset(mnist_like_dir, tmp_path, monkeypatch):
    from tfhybrid import training
    from tfhybrid.data import load_mnist

    # MNIST's pictures stand in for Fashion-MNIST's (not available offline).
    monkeypatch.setattr(
        training,
        "load_mnist",
        lambda directory, limit, dataset: load_mnist(str(mnist_like_dir), limit),
    )
    lines = []
    config = TrainConfig(dataset="fashion_mnist", epochs=1, train_limit=200, test_limit=100)
    metrics = train_and_evaluate(config, tmp_path, log=lines.append)
    final = next(line for line in lines if line.startswith("test accuracy"))
    assert "source" not in final and metrics["source"]["test_accuracy"] is None


def test_history_is_written_epoch_by_epoch_and_follows_the_checkpoint(mnist_like_dir, tmp_path):
    base = dict(train_limit=300, test_limit=100, data_dir=str(mnist_like_dir))
    train_and_evaluate(TrainConfig(epochs=2, **base), tmp_path, log=quiet)
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert rows == metrics["epochs"] and [r["epoch"] for r in rows] == [1, 2]
    # As if killed after writing epoch 3's row but before its checkpoint: resuming rewrites
    # the history from the checkpoint, then appends epoch 3 once.
    with open(tmp_path / "history.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": 3, "stale": True}) + "\n")
    (tmp_path / "metrics.json").unlink()
    train_and_evaluate(TrainConfig(epochs=3, **base), tmp_path, log=quiet, resume=True)
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and "stale" not in rows[-1]


def test_the_resume_hint_names_the_command_that_was_run(monkeypatch, tmp_path):
    from tfhybrid.cli import resume_command

    monkeypatch.setattr("sys.argv", ["/venv/bin/tfhybrid-train", "--epochs", "3"])
    assert resume_command(tmp_path) == f"tfhybrid-train --resume {tmp_path}"
    monkeypatch.setattr("sys.argv", ["scripts/train.py"])
    assert resume_command(tmp_path) == f"python scripts/train.py --resume {tmp_path}"
