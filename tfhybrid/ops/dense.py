"""Fully-connected layer: ``out = x @ w + b``, in NumPy."""

from __future__ import annotations

import numpy as np


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """x [N,D], w [D,M], b [1,M] or [M] -> (out [N,M], cache)."""
    return x @ w + b, (x, w, np.shape(b))


def dense_backward(dout: np.ndarray, cache: tuple, need_dx: bool = True) -> dict[str, np.ndarray]:
    """dout [N,M] -> {"dx": [N,D], "dw": [D,M], "db": shape of b}.

    Gradients are summed over the batch: the loss's backward already divided by N.
    ``need_dx=False`` skips dx (a network's input needs no gradient).
    """
    x, w, b_shape = cache
    grads = {"dw": x.T @ dout, "db": dout.sum(axis=0).reshape(b_shape)}
    if need_dx:
        grads["dx"] = dout @ w.T
    return grads
