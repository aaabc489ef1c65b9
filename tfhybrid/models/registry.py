"""Every source's network by name, with the training settings its source used.

    model = build_model("lenet5", seed=0)
    settings = TRAINING_DEFAULTS["lenet5"]   # epochs, batch size, optimizer, lr, limits

A command line can offer ``--model NAME`` over :data:`MODEL_NAMES` and take each
unset option from :func:`training_defaults`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhybrid.models.networks import Conv8, LeNet5, NumpyCNN, TwoLayerNet
from tfhybrid.models.seed_cnn import SeedCNN

MODELS = {
    "seed-cnn": SeedCNN,
    "lenet5": LeNet5,
    "numpy-cnn": NumpyCNN,
    "conv8": Conv8,
    "two-layer-net": TwoLayerNet,
}
MODEL_NAMES = tuple(MODELS)


@dataclasses.dataclass(frozen=True)
class TrainingDefaults:
    """A source's training settings. Exactly one of ``epochs`` and ``iterations`` is set.

    ``train_limit`` / ``test_limit``: use only the first N training / test images (None:
    all). ``reported``: the test accuracy the source reports (None: none given), and
    ``source``: where the settings come from. Input scaling belongs to the model
    (``input_scale`` / ``input_shift``), so evaluation always sees the same inputs.
    """

    epochs: int | None
    iterations: int | None
    batch_size: int
    optimizer: str
    lr: float
    train_limit: int | None
    test_limit: int | None
    reported: float | None
    source: str

    def steps(self, train_size: int) -> int:
        """Number of updates: ``iterations``, or ``epochs`` passes of whole batches."""
        if self.iterations is not None:
            return self.iterations
        return self.epochs * max(train_size // self.batch_size, 1)


TRAINING_DEFAULTS = {
    "seed-cnn": TrainingDefaults(10, None, 100, "sgd", 0.1, None, None, 0.9695,
                                 "doc 000: the article's program"),
    "lenet5": TrainingDefaults(5, None, 100, "adam", 0.001, None, None, None,
                               "doc 000's TensorFlow sketch (no settings given: ours)"),
    "numpy-cnn": TrainingDefaults(15, None, 128, "sgd", 0.01, None, None, 0.97,
                                  "doc 002: epoch 15, lr 0.01, batch 128"),
    "conv8": TrainingDefaults(3, None, 1, "sgd", 0.005, 1000, 1000, 0.78,
                              "doc 003: 3 epochs, one image per step, first 1,000 images"),
    "two-layer-net": TrainingDefaults(None, 10_000, 100, "sgd", 0.1, None, None, 0.97,
                                      "doc 004: 10,000 iterations, batch 100, lr 0.1"),
}


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def build_model(name: str, *, seed: int = 0, dtype: type = np.float32, **options):
    """A fresh model by name, initialised from ``seed``; ``options`` go to its class
    (e.g. ``pool_ties="all"``, ``dw_mode="per-sample"``, ``hidden=100``, ``bias_grad``)."""
    _check_name(name)
    return MODELS[name](seed=seed, dtype=dtype, **options)


def training_defaults(name: str) -> TrainingDefaults:
    _check_name(name)
    return TRAINING_DEFAULTS[name]
