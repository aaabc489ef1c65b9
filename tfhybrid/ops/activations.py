"""Element-wise activations, forward and hand-written backward, in NumPy.

Each backward is its formula (the training step runs :mod:`tfhybrid.fast.activations`,
the same numbers computed in place)."""

from __future__ import annotations

import numpy as np


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
    """dL/dz = dL/ds * s (1 - s), from the cached output s; same shape as ``dout``.

    sigma'(z) = sigma(z) (1 - sigma(z)) (source 000: ``ds1 * s1 * (1 - s1)``)."""
    s = cache
    return dout * (s * (1 - s))


def relu_forward(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Any shape -> (max(z, 0), cache = the mask z > 0)."""
    mask = z > 0
    # np.maximum, not np.where(mask, z, 0): the same values (and NaN where TensorFlow's
    # relu gives NaN), ten times faster on a large feature map.
    return np.maximum(z, np.zeros((), dtype=z.dtype)), mask


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dout where z > 0, else 0 (the subgradient 0 at z = 0, as TensorFlow);
    ``cache`` is the mask z > 0."""
    mask = cache
    return dout * mask


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Any shape -> (tanh(x), cache = the output)."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dout * (1 - tanh(x)^2), from the cached output; same shape as ``dout``.

    tanh'(x) = 1 - tanh(x)^2: the derivative written with the forward's output, as Deep
    Learning from Scratch ch. 5 writes the sigmoid's, s (1 - s).
    """
    out = cache
    return dout * (1 - out**2)


def leaky_relu_forward(x: np.ndarray, alpha: float) -> tuple[np.ndarray, tuple[np.ndarray, float]]:
    """Any shape -> (x where x > 0 else alpha * x, cache = (the mask x > 0, alpha)).

    Leaky ReLU (Maas, Hannun & Ng 2013), as tf.nn.leaky_relu.
    """
    positive = x > 0
    out = np.where(positive, x, np.asarray(alpha, dtype=x.dtype) * x)
    return out, (positive, alpha)


def leaky_relu_backward(dout: np.ndarray, cache: tuple[np.ndarray, float]) -> np.ndarray:
    """dL/dx = dL/dout where x > 0, else alpha * dL/dout (alpha at x = 0, as TensorFlow)."""
    positive, alpha = cache
    return np.where(positive, dout, np.asarray(alpha, dtype=dout.dtype) * dout)
