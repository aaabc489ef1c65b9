"""Comparison helpers whose failure messages name the tensor, its shape and the worst error."""

from __future__ import annotations

import numpy as np


def assert_close(name: str, actual, expected, rtol: float) -> None:
    """Max abs error, relative to the largest reference magnitude, must be <= rtol."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape} differs from reference {expected.shape}"
    )
    err = np.abs(actual - expected)
    scale = max(float(np.abs(expected).max()), 1e-30)
    worst = np.unravel_index(int(err.argmax()), err.shape) if err.size else ()
    rel = float(err.max()) / scale if err.size else 0.0
    assert rel <= rtol, (
        f"{name} {actual.shape}: worst error {float(err.max()):.3e} at index {worst} "
        f"(manual {actual[worst]:.6e}, reference {expected[worst]:.6e}); "
        f"relative to max |reference| {scale:.3e}: {rel:.3e} > tolerance {rtol:.1e}"
    )
