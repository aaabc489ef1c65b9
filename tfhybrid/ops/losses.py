"""Losses with their gradient with respect to the logits, in NumPy.

Every loss is a mean over the batch, so its gradient carries the 1/N and the layers
below simply sum over the batch.
"""

from __future__ import annotations

import numpy as np

from tfhybrid.ops.activations import sigmoid


def sigmoid_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The source article's loss: independent sigmoid outputs, binary cross-entropy.

    z, y [N,K] -> (mean over N of sum over K of -y log s - (1-y) log(1-s), dL/dz = (s-y)/N).
    Written as max(z,0) - z y + log(1 + e^-|z|), which never overflows.
    """
    n = z.shape[0]
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return float(loss.sum() / n), (sigmoid(z) - y) / n


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of [N,K], shifted by the row max for stability."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """z logits [N,K], y one-hot (or soft) [N,K] -> (mean cross-entropy, dL/dz = (p-y)/N)."""
    n = z.shape[0]
    logp = log_softmax(z)
    return float(-(y * logp).sum() / n), (np.exp(logp) - y) / n
