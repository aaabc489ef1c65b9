"""The source tutorials' networks: where each model class lives and how its source trained it.

Nothing here imports TensorFlow, so the command lines can check ``--model`` and fill
each unset option with the model's own default before any heavy import.
"""

from __future__ import annotations

import dataclasses
import importlib


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
    "lenet5": TrainingDefaults(10, None, 100, "adam", 0.001, None, None, None,
                               "doc 000's TensorFlow sketch (no settings given: ours)"),
    "numpy-cnn": TrainingDefaults(15, None, 128, "sgd", 0.01, None, None, 0.97,
                                  "doc 002: epoch 15, lr 0.01, batch 128"),
    "conv8": TrainingDefaults(3, None, 1, "sgd", 0.005, 1000, 1000, 0.78,
                              "doc 003: 3 epochs, one image per step, first 1,000 images"),
    "two-layer-net": TrainingDefaults(None, 10_000, 100, "sgd", 0.1, None, None, 0.97,
                                      "doc 004: 10,000 iterations, batch 100, lr 0.1"),
}

# name -> "module:Class" of the model (imported only when a model is built).
MODEL_CLASSES = {
    "seed-cnn": "tfhybrid.models.seed_cnn:SeedCNN",
    "lenet5": "tfhybrid.models.networks:LeNet5",
    "numpy-cnn": "tfhybrid.models.networks:NumpyCNN",
    "conv8": "tfhybrid.models.networks:Conv8",
    "two-layer-net": "tfhybrid.models.networks:TwoLayerNet",
}
MODEL_NAMES = tuple(MODEL_CLASSES)
# The model options each network understands (the rest are training settings).
MODEL_OPTIONS = {
    "seed-cnn": ("dw_mode", "bias_grad"),
    "lenet5": ("dw_mode", "pool_ties"),
    "numpy-cnn": ("dw_mode", "pool_ties"),
    "conv8": ("dw_mode", "pool_ties"),
    "two-layer-net": (),
}


def model_class(name: str) -> type:
    """The class registered as ``name`` (imports TensorFlow)."""
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    module, _, cls = MODEL_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)
