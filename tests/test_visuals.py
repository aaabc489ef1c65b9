"""--plot writes readable PNGs; --tensorboard writes scalars, filter images and histograms."""

from __future__ import annotations

import numpy as np

from tfhybrid.config import TrainConfig
from tfhybrid.plots import filter_grid
from tfhybrid.training import train_and_evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_filter_grid_tiles_each_filter_scaled_to_unit_range():
    filters = np.arange(3 * 3 * 1 * 5, dtype=float).reshape(3, 3, 1, 5)
    grid = filter_grid(filters)
    assert grid.shape == (2 * 4 - 1, 3 * 4 - 1)  # 5 filters -> 2 rows x 3 columns
    first = grid[:3, :3]
    assert first.min() == 0.0 and first.max() == 1.0
    assert np.isnan(grid[3]).all()  # the separator row


def test_plot_and_tensorboard_outputs(mnist_like_dir, tmp_path):
    from tfhybrid._tf import tf

    config = TrainConfig(
        epochs=2, train_limit=500, data_dir=str(mnist_like_dir), plot=True, tensorboard=True
    )
    train_and_evaluate(config, tmp_path, log=lambda *_: None)
    for name in ("curves.png", "filters.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    tags = {}
    for record in tf.data.TFRecordDataset(str(events[0])):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            tags.setdefault(value.tag, set()).add(event.step)
    for tag in ("loss", "cost", "val_accuracy", "filters/w1", "grads/w1", "params/w2"):
        assert tags.get(tag) == {1, 2}, (tag, sorted(tags))
