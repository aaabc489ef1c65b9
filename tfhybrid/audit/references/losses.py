"""References of the classification losses: softmax cross-entropy and the multiclass
SVM (hinge) loss, each ``reference(x)`` of the scores ``x``, the labels held fixed.

Labels are integer class ids (CS231n: ``y`` [N]) or one-hot rows (Deep Learning from
Scratch: ``t`` [N, C]); ``reduction="mean"`` divides by the number of scored items (N
for scores [N, C]), as both sources do, ``"sum"`` does not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.audit.references.naming import named

REDUCTIONS = ("mean", "sum")


def _labels(y: object) -> np.ndarray:
    labels = np.asarray(y)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"y must hold class ids or one-hot rows, got dtype {labels.dtype}")
    return labels


def _reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return str(reduction)


def targets(labels: np.ndarray, x: tf.Tensor, axis: int) -> tf.Tensor:
    """The one-hot targets of ``labels`` along ``axis`` of ``x``, in ``x``'s dtype:
    class ids of x's shape without that axis, or rows of x's own shape. Raises
    ValueError when the labels fit neither."""
    shape = [int(d) for d in x.shape]
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is not an axis of x {shape}")
    axis %= len(shape)
    depth, without = shape[axis], shape[:axis] + shape[axis + 1 :]
    if np.issubdtype(labels.dtype, np.integer) and list(labels.shape) == without:
        if labels.size and (labels.min() < 0 or labels.max() >= depth):
            raise ValueError(f"y holds class ids outside 0..{depth - 1}")
        return tf.one_hot(labels, depth, axis=axis, dtype=x.dtype)
    if list(labels.shape) == shape:
        return tf.constant(labels, dtype=x.dtype)
    raise ValueError(
        f"y has shape {list(labels.shape)}; for scores x {shape} (classes on axis {axis}) "
        f"it must be class ids {without} or one-hot rows {shape}"
    )


def _reduce(total: tf.Tensor, x: tf.Tensor, axis: int, reduction: str) -> tf.Tensor:
    if reduction == "sum":
        return total
    items = int(np.prod(x.shape)) // int(x.shape[axis])
    return total / items


def softmax_loss(y: object, *, axis: int = -1, reduction: str = "mean") -> Callable:
    """``reference(x)``: the cross-entropy of softmax(x) along ``axis`` (the classes)
    against the labels ``y``: -sum(onehot(y) * log softmax(x)), divided by the number of
    items for ``"mean"``. Source: CS231n's ``softmax_loss``, Deep Learning from
    Scratch's ``SoftmaxWithLoss``. Raises ValueError for labels that do not fit x."""
    labels, reduction = _labels(y), _reduction(reduction)

    def reference(x):
        total = -tf.reduce_sum(targets(labels, x, axis) * tf.nn.log_softmax(x, axis=axis))
        return _reduce(total, x, axis, reduction)

    return named(reference, "softmax_loss", axis=axis, reduction=reduction)


def svm_loss(y: object, *, delta: float = 1.0, reduction: str = "mean") -> Callable:
    """``reference(x)`` of scores [N, C]: the multiclass hinge loss
    sum over i and j != y_i of max(0, x[i, j] - x[i, y_i] + delta), divided by N for
    ``"mean"``. Source: CS231n assignment 1's ``svm_loss``. Its gradient at a margin of
    exactly 0 is TensorFlow's (0). Raises ValueError for labels that do not fit x."""
    labels, reduction = _labels(y), _reduction(reduction)
    if isinstance(delta, bool) or not isinstance(delta, (int, float)):
        raise ValueError(f"delta must be a number (the margin), got {delta!r}")

    def reference(x):
        onehot = targets(labels, x, -1)
        correct = tf.reduce_sum(x * onehot, axis=-1, keepdims=True)
        margins = tf.nn.relu(x - correct + delta) * (1 - onehot)
        return _reduce(tf.reduce_sum(margins), x, -1, reduction)

    return named(reference, "svm_loss", delta=delta, reduction=reduction)
