"""tfhybrid: CNN backpropagation written by hand, TensorFlow convolutions, NumPy gradients.

    import tfhybrid
    from tfhybrid.layers import Conv2D, Dense, Flatten, ReLU

    net = tfhybrid.Sequential([Conv2D(8, 3), ReLU(), Flatten(), Dense(10)], seed=0)
    net = tfhybrid.build_model("seed-cnn")          # a source's network by name

Importing the package is cheap; TensorFlow loads on first use of a network, so the
command lines can reject a bad option in a fraction of a second.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Sequential": "tfhybrid.models.sequential",
    "build_model": "tfhybrid.catalog",
    "TrainConfig": "tfhybrid.config",
    "train_and_evaluate": "tfhybrid.training",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfhybrid' has no attribute {name!r}")
