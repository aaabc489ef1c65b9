"""Average pooling: forward in TensorFlow (as the source article), backward by hand.

The backward is its formula (the training step runs :mod:`tfhybrid.fast.pooling`, the same
numbers without the loop, merged with a sigmoid's backward below it)."""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf


def avg_pool_forward(x: np.ndarray, size: int = 2, stride: int = 2) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C] -> (out [N,Ho,Wo,C], cache); VALID windows, Ho = (H - size)//stride + 1."""
    out = tf.nn.avg_pool2d(x, ksize=size, strides=stride, padding="VALID").numpy()
    return out, (x.shape, size, stride)


def avg_pool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dout [N,Ho,Wo,C] -> dx [N,H,W,C]: each output is the mean of its size x size window,
    so every input of the window gets dout / size², and overlapping windows add up.

    For 2x2 windows with stride 2 this is source 000's ``np.kron(dL1, np.ones([2, 2])) / 4``.
    Rows and columns no window reaches (when (H - size) is not a multiple of the stride)
    get zero gradient.
    """
    x_shape, size, stride = cache
    _, ho, wo, _ = dout.shape
    share = dout * (1 / size**2)
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(size):  # window position (i, j) of every window at once
        for j in range(size):
            dx[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :] += share
    return dx
