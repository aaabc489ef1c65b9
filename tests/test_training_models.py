"""Every source's network through the same training loop, optimizers, iterations and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_reliability import assert_same_run, quiet
from tfhybrid.catalog import MODEL_NAMES, TRAINING_DEFAULTS
from tfhybrid.config import TrainConfig
from tfhybrid.training import train_and_evaluate

CHANCE = 0.1


@pytest.mark.parametrize("model", [m for m in MODEL_NAMES if m != "seed-cnn"])
def test_each_network_learns_with_its_source_settings(model, mnist_like_dir, tmp_path):
    source = TRAINING_DEFAULTS[model]
    config = TrainConfig.for_model(
        model,
        epochs=2,
        train_limit=600,
        test_limit=500,
        batch_size=min(source.batch_size, 20),
        data_dir=str(mnist_like_dir),
    )
    assert config.optimizer == source.optimizer and config.lr == source.lr
    metrics = train_and_evaluate(config, tmp_path, log=quiet)
    losses = [row["loss"] for row in metrics["epochs"]]
    assert losses[1] < losses[0], f"{model}: loss did not fall: {losses}"
    assert metrics["test_accuracy"] > 3 * CHANCE, metrics["test_accuracy"]
    assert metrics["test_images"] == 500
    assert json.loads((tmp_path / "metrics.json").read_text())["model"] == model


def test_iterations_end_in_a_partial_epoch(mnist_like_dir, tmp_path):
    config = TrainConfig.for_model(
        "two-layer-net", iterations=25, train_limit=200, batch_size=10, data_dir=str(mnist_like_dir)
    )
    metrics = train_and_evaluate(config, tmp_path, log=quiet)
    assert [row["steps"] for row in metrics["epochs"]] == [20, 5]


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_resume_restores_optimizer_state(optimizer, mnist_like_dir, tmp_path):
    """One epoch, then resume for a second, equals two epochs in one go, bit for bit."""
    base = dict(
        model="lenet5",
        train_limit=300,
        batch_size=30,
        optimizer=optimizer,
        lr=0.01,
        data_dir=str(mnist_like_dir),
    )
    train_and_evaluate(TrainConfig.for_model(**base, epochs=2), tmp_path / "whole", log=quiet)
    train_and_evaluate(TrainConfig.for_model(**base, epochs=1), tmp_path / "split", log=quiet)
    (tmp_path / "split" / "metrics.json").unlink()  # as if the first process had been killed
    train_and_evaluate(
        TrainConfig.for_model(**base, epochs=2), tmp_path / "split", log=quiet, resume=True
    )
    assert_same_run(tmp_path / "whole", tmp_path / "split")


def test_sources_tie_rule_reaches_the_model(mnist_like_dir, tmp_path):
    """The same run under each tie rule: the filters below the pooling train differently."""
    trained = {}
    for rule in ("first", "all"):
        config = TrainConfig.for_model(
            "conv8", pool_ties=rule, epochs=1, train_limit=50, data_dir=str(mnist_like_dir)
        )
        metrics = train_and_evaluate(config, tmp_path / rule, log=quiet)
        assert metrics["config"]["pool_ties"] == rule
        with np.load(tmp_path / rule / "params.npz", allow_pickle=False) as params:
            trained[rule] = {k: params[k] for k in params.files}
    assert np.isfinite(trained["all"]["w1"]).all()
    change = np.abs(trained["all"]["w1"] - trained["first"]["w1"]).max()
    assert change > 1e-3 * np.abs(trained["first"]["w1"]).max(), "the rule did not reach w1"
