"""Average pooling: forward in TensorFlow (as the source article), backward by hand."""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.ops import buffers


def avg_pool_forward(x: np.ndarray, size: int = 2, stride: int = 2) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C] -> (out [N,Ho,Wo,C], cache); VALID windows, Ho = (H - size)//stride + 1."""
    out = tf.nn.avg_pool2d(x, ksize=size, strides=stride, padding="VALID").numpy()
    return out, (x.shape, size, stride)


def avg_pool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dout [N,Ho,Wo,C] -> dx [N,H,W,C]: each window's gradient spread evenly, / size².

    Rows and columns no window reaches (when (H - size) is not a multiple of the
    stride) get zero gradient.
    """
    x_shape, size, stride = cache
    n, h, w, c = x_shape
    _, ho, wo, _ = dout.shape
    share = dout * (1.0 / (size * size))
    if size == stride and h == ho * size and w == wo * size:
        # Windows tile the input exactly: one broadcast copy, no loop (the common 2x2 case).
        dx = buffers.empty(x_shape, dout.dtype)
        dx.reshape(n, ho, size, wo, size, c)[...] = share[:, :, None, :, None, :]
        return dx
    dx = buffers.zeros(x_shape, dout.dtype)
    for i in range(size):
        for j in range(size):
            dx[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :] += share
    return dx


def avg_pool_sigmoid_backward(dout: np.ndarray, cache: tuple, s: np.ndarray) -> np.ndarray | None:
    """The average pool's backward and the sigmoid's before it in one pass: dL/dz =
    (dout spread over its window, / size²) * s (1 - s), where s [N,H,W,C] is the
    sigmoid's output (its cache). The same products in the same order as
    :func:`avg_pool_backward` then ``sigmoid_backward``, so the same numbers, bit for bit.

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
        np.multiply(dout[part, :, :, None, :], 1.0 / (size * size), out=row[part])
        g = np.subtract(1, s[part], out=grad[part])
        g *= s[part]
        rows = g.reshape(m * ho, size, w * c)  # the window rows of each output row
        np.multiply(rows, row[part].reshape(m * ho, 1, w * c), out=rows)
    return grad
