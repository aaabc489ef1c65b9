"""References of the elementwise activations: ReLU, leaky ReLU, sigmoid, tanh.

Each factory returns ``reference(x)`` in TensorFlow ops; any layout, any shape.
(``reference=tf.nn.relu`` works as well: check_op passes the inputs positionally.)
"""

from __future__ import annotations

from collections.abc import Callable

from tfhybrid._tf import tf
from tfhybrid.audit.references.naming import named


def relu() -> Callable:
    """``reference(x) = max(x, 0)``; its gradient at 0 is TensorFlow's 0."""
    return named(lambda x: tf.nn.relu(x), "relu")


def leaky_relu(alpha: float = 0.01) -> Callable:
    """``reference(x) = x if x > 0 else alpha * x``. Written with ``tf.where``, not
    ``tf.nn.leaky_relu``, whose slope is a float32 attribute, 1e-9 off in float64.
    Raises ValueError for an ``alpha`` that is not a number."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"alpha must be a number (the slope below 0), got {alpha!r}")
    return named(lambda x: tf.where(x > 0, x, alpha * x), "leaky_relu", alpha=alpha)


def sigmoid() -> Callable:
    """``reference(x) = 1 / (1 + exp(-x))``."""
    return named(lambda x: tf.sigmoid(x), "sigmoid")


def tanh() -> Callable:
    """``reference(x) = tanh(x)``."""
    return named(lambda x: tf.tanh(x), "tanh")
