"""Learning-rate schedules: their values, the option where it enters, and the defaults."""

from __future__ import annotations

import math

import pytest

from tfhybrid.config import TrainConfig
from tfhybrid.errors import ConfigError
from tfhybrid.schedules import learning_rate


def test_cosine_falls_from_the_rate_to_zero_and_constant_stays():
    total = 100
    assert learning_rate("constant", 0.1, 57, total) == 0.1
    assert learning_rate("cosine", 0.1, 0, total) == 0.1
    assert learning_rate("cosine", 0.1, 50, total) == pytest.approx(0.05, rel=1e-12)
    assert learning_rate("cosine", 0.1, 25, total) == pytest.approx(
        0.05 * (1 + math.cos(math.pi / 4)), rel=1e-12
    )
    assert learning_rate("cosine", 0.1, total - 1, total) < 0.1 * 1e-3
    rates = [learning_rate("cosine", 0.1, step, total) for step in range(total)]
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    with pytest.raises(ValueError, match="schedule must be one of constant, cosine; got 'step'"):
        learning_rate("step", 0.1, 0, total)


def test_the_option_is_checked_and_each_model_has_its_default():
    assert TrainConfig.for_model("seed-cnn").lr_schedule == "constant"
    assert TrainConfig.for_model("resnet-mnist").lr_schedule == "cosine"
    assert TrainConfig.for_model("lenet5", lr_schedule="cosine").validated().lr_schedule == "cosine"
    with pytest.raises(ConfigError, match="--lr-schedule must be one of constant, cosine; got 'x'"):
        TrainConfig.for_model("seed-cnn", lr_schedule="x").validated()
