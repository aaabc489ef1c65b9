"""Tolerances of the gradient audit, one per arithmetic, and why each has its size.

All of them bound the symmetric relative error of :mod:`tfhybrid.audit.compare`:
``|a - b| / max(|a| + |b|, floor)`` with ``floor = REL_ERROR_FLOOR * (max|a| + max|b|)``.
"""

from __future__ import annotations

import numpy as np

# Elements smaller than this fraction of the tensor's largest magnitude are judged on
# the tensor's scale, not their own: a sum that cancels to almost nothing keeps the
# rounding error of its large terms, which says nothing about the gradient's formula.
REL_ERROR_FLOOR = 1e-2

# A float32 result against the exact (float64) gradient: float32 keeps 24 bits
# (eps = 1.2e-7). An element that cancels down to the floor carries the rounding of its
# larger terms, and every layer adds its own: relative errors reach about 100 eps =
# 1.5e-5 in the article's two-layer CNN (measured: up to 1.7e-5), and 2.4e-4 in doc 002's
# five-layer network, whose logits are large (loss 20 to 55 at its initial weights),
# where TensorFlow's own float32 gradient is off by as much. A formula error (a lost
# factor, a wrong index, a gradient sent to a tied maximum) gives 1e-2 to 1.
RTOL_FLOAT32 = 1e-3
# Two float64 computations of the same formula differ only in summation order:
# about 100 eps = 2e-14 at the floor.
RTOL_FLOAT64 = 1e-9
# Central finite differences in float64 with step h = FD_STEP leave two errors:
# truncation h^2 |f'''| / 6 (below 1e-11 here) and the rounding of the loss divided by
# the step, about eps |L| / h = 5e-10 for a loss near 16. Relative to the floor that is
# up to 1e-8 on the smallest elements (measured: at most 2e-8 on MNIST).
RTOL_FINITE_DIFF = 1e-6
# ... unless the loss's own rounding over the step is larger: a loss L rounds to about
# eps |L|, so a difference quotient is uncertain by eps |L| / h in absolute terms. For a
# gradient that is small next to the loss (doc 003's filters: loss 2.3, dw1 near 1e-3)
# that is 3e-6 of the floor (measured: up to 2e-6). The tolerance is the larger of
# RTOL_FINITE_DIFF and FD_ROUNDOFF times that rounding over the floor.
FD_ROUNDOFF = 16

# A power of two: x + h is then exact for every weight of ordinary size.
FD_STEP = 2.0**-17  # 7.6e-6, near the optimum (3 eps |L| / |f'''|)^(1/3) for float64
# A forward that computes in float32 rounds its loss to about 1.2e-7 of its size: over
# FD_STEP that is noise of 1e-2 relative. Its differences take a step 2^11 times larger
# and the five-point formula (truncation O(h^4)), and their tolerance is that rounding
# over the step (fd_rtol with float32's eps), never below RTOL_FLOAT32.
FD_STEP_FLOAT32 = 2.0**-6
# A one-sided slope (L(w+h) - L(w)) / h, used at kinks, is off by h f''/2 (first
# order), well below this at float64's step.
RTOL_ONE_SIDED = 1e-4
# A constant factor (or a flipped sign) is evidence of a formula only when at least
# this many elements above the floor agree on it: any two one-element tensors differ
# by "a factor".
MIN_FACTOR_ELEMENTS = 2
# A tensor is judged only when at least this many of its coordinates (or all, if it has
# fewer) were compared; else the check samples more before it says "not checked".
MIN_COMPARED = 1
# Coordinates per tensor checked by finite differences; smaller tensors are done whole.
FD_SAMPLES = 48
# Kink test: a coordinate is "not comparable" when the one-sided slopes around it change
# by unequal amounts (smooth curvature changes them equally) by more than the
# finite-difference tolerance, plus this many float64 eps of the loss per step.
KINK_ROUNDOFF = 64

# The SGD step of the update check.
UPDATE_LR = 0.1


def fd_rtol(
    loss: float, scale: float, dtype: np.dtype | type = np.float64, step: float = FD_STEP
) -> float:
    """Tolerance of a finite difference of a loss of size ``loss`` computed in ``dtype``
    with ``step``, for a gradient whose relative-error floor is ``REL_ERROR_FLOOR * scale``
    (see ``FD_ROUNDOFF``); at least RTOL_FINITE_DIFF (float64) or RTOL_FLOAT32."""
    dtype = np.dtype(dtype)
    minimum = RTOL_FINITE_DIFF if dtype == np.float64 else RTOL_FLOAT32
    floor = REL_ERROR_FLOOR * scale
    if floor <= 0:
        return minimum
    rounding = FD_ROUNDOFF * float(np.finfo(dtype).eps) * abs(loss) / step
    return max(minimum, rounding / floor)


def rtol_for(dtype: np.dtype | type) -> float:
    """The tolerance for a result computed in ``dtype`` (float32 or float64)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return RTOL_FLOAT64
    if dtype == np.float32:
        return RTOL_FLOAT32
    raise ValueError(f"the audit knows tolerances for float32 and float64, got {dtype}")
