"""Every source's network by name, with the training settings its source used.

    model = build_model("lenet5", seed=0)
    settings = TRAINING_DEFAULTS["lenet5"]   # epochs, batch size, optimizer, lr, limits

A command line can offer ``--model NAME`` over :data:`MODEL_NAMES` and take each
unset option from :func:`training_defaults`.
"""

from __future__ import annotations

import numpy as np

from tfhybrid.sources import MODEL_NAMES, TRAINING_DEFAULTS, TrainingDefaults, model_class

__all__ = ["MODEL_NAMES", "TRAINING_DEFAULTS", "TrainingDefaults", "build_model",
           "training_defaults"]


def _check_name(name: str) -> None:
    if name not in TRAINING_DEFAULTS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def build_model(name: str, *, seed: int = 0, dtype: type = np.float32, **options):
    """A fresh model by name, initialised from ``seed``; ``options`` go to its class
    (e.g. ``pool_ties="all"``, ``dw_mode="per-sample"``, ``hidden=100``, ``bias_grad``)."""
    return model_class(name)(seed=seed, dtype=dtype, **options)


def training_defaults(name: str) -> TrainingDefaults:
    _check_name(name)
    return TRAINING_DEFAULTS[name]
