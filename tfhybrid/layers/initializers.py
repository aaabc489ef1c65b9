"""Initial values of parameters, drawn in float64 from the network's one seeded generator.

An initializer is ``init(rng, shape) -> np.ndarray``. Zeros draw nothing, so a network's
later parameters get the same values whether or not earlier biases are drawn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Initializer = Callable[[np.random.Generator, tuple], np.ndarray]


def normal(scale: float) -> Initializer:
    """Standard normal x ``scale``."""
    return lambda rng, shape: rng.standard_normal(shape) * scale


def zeros(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return np.zeros(shape)


def he_normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Normal with variance 2 / fan-in (fan-in: every axis but the last)."""
    return rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[:-1])))


def scaled_by_fan_out(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Standard normal / sqrt(fan_out / 2), fan_out the last axis (doc 002's rule)."""
    return rng.standard_normal(shape) / np.sqrt(shape[-1] / 2)


BY_NAME = {"zeros": zeros, "he_normal": he_normal, "scaled_by_fan_out": scaled_by_fan_out}


def get(init: str | float | Initializer) -> Initializer:
    """An initializer from a callable, a name of :data:`BY_NAME`, or a number (normal x it)."""
    if callable(init):
        return init
    if isinstance(init, str):
        if init not in BY_NAME:
            raise ValueError(
                f"initializer must be one of {sorted(BY_NAME)}, a number or a "
                f"callable; got {init!r}"
            )
        return BY_NAME[init]
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        return normal(float(init))
    raise ValueError(f"initializer must be a name, a number or a callable; got {init!r}")
