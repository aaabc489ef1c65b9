"""TensorBoard logging through ``tf.summary``: scalars, first-layer filters, gradient histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.plots import filter_grid, first_conv_filters


class TensorBoardLogger:
    """Writes one event file under ``folder``; view with ``tensorboard --logdir folder``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._writer = tf.summary.create_file_writer(str(self.folder))

    def epoch(
        self, row: dict, params: dict[str, np.ndarray], grads: dict[str, np.ndarray] | None
    ) -> None:
        """Log one epoch's figures; ``grads`` are the last step's gradients (or None).
        A row with an ``audit`` logs each tensor's relative error as ``audit/rel_error/NAME``."""
        step = int(row["epoch"])
        with self._writer.as_default(step=step):
            for key in ("loss", "cost", "val_accuracy", "seconds"):
                if key in row:
                    tf.summary.scalar(key, row[key])
            for name, item in row.get("audit", {}).items():
                tf.summary.scalar(f"audit/rel_error/{name}", item["rel_error"])
            found = first_conv_filters(params)
            if found is not None:
                name, filters = found
                grid = np.nan_to_num(filter_grid(filters), nan=1.0)
                tf.summary.image(f"filters/{name}", grid[None, :, :, None].astype(np.float32))
            for name, value in params.items():
                tf.summary.histogram(f"params/{name}", value)
            for name, value in (grads or {}).items():
                tf.summary.histogram(f"grads/{name}", value)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
