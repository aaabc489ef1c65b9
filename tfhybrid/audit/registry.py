"""Models the command line can audit, by name; nothing here imports TensorFlow.

A registered class takes ``(params=None, *, seed, bias_grad)`` (as ``SeedCNN``) and
implements ``loss_and_gradients`` and ``reference_forward``. ``tensors`` lists the
gradient names its report holds, so ``--expect`` is checked before any work starts.
"""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    module: str
    class_name: str
    tensors: tuple[str, ...]  # parameter gradients, then intermediate gradients

    def build(self, params=None, **options):
        """An instance of the model class (TensorFlow is imported here)."""
        cls = getattr(importlib.import_module(self.module), self.class_name)
        return cls(params, **options)


MODELS = {
    "seed-cnn": ModelEntry(
        name="seed-cnn", module="tfhybrid.models.seed_cnn", class_name="SeedCNN",
        tensors=("dw1", "db1", "dw2", "db2", "dz2", "dL1", "ds1", "dz1")),
}
CHECK_NAMES = ("loss", "update")  # mismatch names besides the tensors
