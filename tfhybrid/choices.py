"""The choices of the model options, in a module without TensorFlow or the catalog.

The ops and layers check their arguments against these where the arguments enter;
:mod:`tfhybrid.catalog` declares each model option (flag, default, help) with them.
"""

from __future__ import annotations

DW_MODES = ("batched", "per-sample")  # the filter gradient: one call per batch, or per sample
BIAS_GRAD_RULES = ("seed", "exact")  # the article's db1 (1/400 of the true one), or the true one
CONV_BACKENDS = ("tf", "numpy")  # who computes a convolution: TensorFlow's kernels, or NumPy
TIE_RULES = ("first", "all")  # max-pool ties: the first maximum (true), or every one
# Dropout's scaling: inverted (/ keep in training) or Deep Learning from Scratch's (x keep
# in inference). Both are the true gradient of their own forward.
DROPOUT_RULES = ("inverted", "book")


def check_number(name: str, value: object, low: float, high: float | None = None) -> float:
    """``value`` as a float if it is a finite real number in [low, high) (no upper bound
    when ``high`` is None); else ValueError naming ``name``, the range and what it got."""
    import math
    import numbers

    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and value >= low and (high is None or value < high)
    if not ok:
        wanted = (
            f"a number in [{low:g}, {high:g})"
            if high is not None
            else f"a finite number >= {low:g}"
        )
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return float(value)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``; else ValueError naming ``name`` and them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
