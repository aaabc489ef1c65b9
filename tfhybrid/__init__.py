"""tfhybrid: CNN backpropagation written by hand, TensorFlow convolutions, NumPy gradients.

Importing the package is cheap; TensorFlow loads on first use of a model, so the
command line can reject a bad option in a fraction of a second.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "SeedCNN": "tfhybrid.models.seed_cnn",
    "TrainConfig": "tfhybrid.config",
    "train_and_evaluate": "tfhybrid.training",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfhybrid' has no attribute {name!r}")
