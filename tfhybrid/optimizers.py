"""Optimizers: ``update(params, grads)`` changes the params dict in place.

Kept apart from layers and models, so any model's gradient dict can be fed to any rule.
"""

from __future__ import annotations

import numpy as np


class SGD:
    """Plain stochastic gradient descent: p <- p - lr * g."""

    def __init__(self, lr: float = 0.1):
        self.lr = lr

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for key, grad in grads.items():
            params[key] -= np.asarray(self.lr * grad, dtype=params[key].dtype)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain SGD keeps no state between steps."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"SGD keeps no state, got keys {sorted(state)}")
