"""Fast variants of :mod:`tfhybrid.ops.pooling`'s average-pool backward: the same products
in the same order as the definition (so the same numbers bit for bit), with no loop where
the windows tile the input, and merged with the sigmoid's backward below it."""

from __future__ import annotations

import numpy as np

from tfhybrid.fast import buffers
from tfhybrid.ops import pooling as definition


def avg_pool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """:func:`tfhybrid.ops.pooling.avg_pool_backward`; where the windows tile the input, one
    broadcast copy into an aligned buffer instead of a pass per window position."""
    x_shape, size, stride = cache
    n, h, w, c = x_shape
    _, ho, wo, _ = dout.shape
    if not (size == stride and h == ho * size and w == wo * size):
        return definition.avg_pool_backward(dout, cache)
    share = dout * (1 / size**2)
    dx = buffers.empty(x_shape, dout.dtype)
    dx.reshape(n, ho, size, wo, size, c)[...] = share[:, :, None, :, None, :]
    return dx


def avg_pool_sigmoid_backward(dout: np.ndarray, cache: tuple, s: np.ndarray) -> np.ndarray | None:
    """The average pool's backward and the sigmoid's before it in one pass: dL/dz =
    (dout spread over its window, / size²) * s (1 - s), where s [N,H,W,C] is the
    sigmoid's output (its cache). The same products in the same order as
    :func:`tfhybrid.ops.pooling.avg_pool_backward` then
    :func:`tfhybrid.ops.activations.sigmoid_backward`, so the same numbers, bit for bit.

    Only where the windows tile the input exactly (size == stride, H = Ho * size); None
    otherwise (the caller runs the two backward passes in turn).
    """
    x_shape, size, stride = cache
    n, h, w, c = x_shape
    _, ho, wo, _ = dout.shape
    if not (size == stride and h == ho * size and w == wo * size) or s.shape != x_shape:
        return None
    grad = buffers.empty(s.shape, s.dtype)  # aligned: see buffers
    # dout / size², repeated along each window's columns: [N, Ho, Wo, size, C], so one
    # window row of the input is one contiguous run of Wo * size * C values.
    row = np.empty((n, ho, wo, size, c), dtype=dout.dtype)
    for part in buffers.blocks(s):  # a few samples at a time, each pass in L2
        m = len(row[part])
        np.multiply(dout[part, :, :, None, :], 1 / size**2, out=row[part])
        g = np.subtract(1, s[part], out=grad[part])
        g *= s[part]
        rows = g.reshape(m * ho, size, w * c)  # the window rows of each output row
        np.multiply(rows, row[part].reshape(m * ho, 1, w * c), out=rows)
    return grad
