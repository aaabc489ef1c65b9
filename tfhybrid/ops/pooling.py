"""Average pooling: forward in TensorFlow (as the source article), backward by hand."""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf


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
        dx = np.empty(x_shape, dtype=dout.dtype)
        dx.reshape(n, ho, size, wo, size, c)[...] = share[:, :, None, :, None, :]
        return dx
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(size):
        for j in range(size):
            dx[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :] += share
    return dx
