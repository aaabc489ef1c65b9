"""Flatten: NHWC feature maps to rows, and the gradient back to feature maps."""

from __future__ import annotations

import numpy as np


def flatten_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C] (any rank) -> (out [N,H*W*C] in (row, column, channel) order, cache)."""
    return x.reshape(len(x), -1), x.shape


def flatten_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dout [N,D] -> dx of the input's shape (a reshape: the gradient of a reshape)."""
    return dout.reshape(cache)
