"""Pictures of a run: learning curves and the learned first-layer filters (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no screen is needed or assumed
    import matplotlib.pyplot as plt

    return plt


def first_conv_filters(params: dict[str, np.ndarray]) -> tuple[str, np.ndarray] | None:
    """The first 4-D parameter [kh,kw,C,F] in the model's order, with its name (None: no conv)."""
    for name, value in params.items():
        if np.ndim(value) == 4:
            return name, value
    return None


def filter_grid(filters: np.ndarray) -> np.ndarray:
    """[kh,kw,C,F] -> one [rows*(kh+1)-1, cols*(kw+1)-1] mosaic of the F filters (channel 0).

    Each filter is scaled to [0,1] on its own so its pattern shows whatever its magnitude;
    NaN separates the tiles.
    """
    kh, kw, _, count = filters.shape
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    grid = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
    for f in range(count):
        tile = filters[:, :, 0, f].astype(np.float64)
        span = tile.max() - tile.min()
        tile = (tile - tile.min()) / span if span > 0 else np.zeros_like(tile)
        r, c = divmod(f, cols)
        grid[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = tile
    return grid


def plot_history(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Loss (and the article's cost, when recorded) and validation accuracy per epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["loss"] for row in history], "o-", label="loss (minimised)")
    # The cost differs from the loss only where the loss is the article's sigmoid one; for a
    # softmax network it is the loss itself, and a second line would only hide the first.
    if all("cost" in row for row in history) and any(r["cost"] != r["loss"] for r in history):
        ax_loss.plot(epochs, [row["cost"] for row in history], "s--", label="article's cost")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("mean over the epoch's batches")
    ax_loss.legend()
    ax_acc.plot(epochs, [row["val_accuracy"] for row in history], "o-", color="tab:green")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_filters(params: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path | None:
    """The learned first-layer filters as one grey-scale mosaic; None when there is no conv."""
    found = first_conv_filters(params)
    if found is None:
        return None
    name, filters = found
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(filter_grid(filters), cmap="gray", interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{title} {name} {tuple(filters.shape)}".strip())
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
