"""Element-wise activations, forward and hand-written backward, in NumPy."""

from __future__ import annotations

import numpy as np

from tfhybrid.ops import buffers


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z), written as 0.5 (1 + tanh(z/2)) so no exp can overflow."""
    half = np.asarray(z) * 0.5
    out = np.tanh(half, out=np.empty_like(half))
    out += 1
    out *= 0.5
    return out


def sigmoid_forward(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Any shape -> (s, cache = s)."""
    s = sigmoid(z)
    return s, s


def sigmoid_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dL/dz = dL/ds * s (1 - s); same shape as ``dout``."""
    s = cache
    grad = np.subtract(1, s, out=buffers.empty(s.shape, s.dtype))  # aligned: see buffers
    grad *= s
    grad *= dout
    return grad


def relu_forward(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Any shape -> (max(z, 0), cache = the mask z > 0)."""
    mask = z > 0
    return np.where(mask, z, np.zeros((), dtype=z.dtype)), mask


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dout where z > 0, else 0 (the subgradient 0 at z = 0, as TensorFlow).

    A product with the bool mask: much cheaper than ``np.where`` with a 0-d fill value.
    """
    return np.multiply(dout, cache, out=buffers.empty(dout.shape, dout.dtype))
