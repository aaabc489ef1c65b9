"""The likely cause of a wrong gradient: a factor that equals a quantity of the layer, or
a simple transform of the true gradient.

A learner's bug usually leaves a fingerprint. A mean where a sum belongs divides by the
number of terms averaged: the batch N, the Ho*Wo output positions (the article's db1 is
1/400 = 1/(20*20)), a pooling window's area, the channels; an input used twice and
overwritten loses a factor 2. A kernel gradient convolved the wrong way round comes out
rotated 180 degrees; an index off by one shifts it; a sum over the wrong axis leaves a
tensor constant along an axis where the true one varies. A fork's backward that drops a
path, or a shared layer's that keeps one use, gives a tensor the caller can compute: such
candidates are named by :func:`candidate_cause`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from tfhybrid.audit.compare import compare, readable_factor

RTOL_FACTOR = 1e-4  # how close c must be to k or 1/k to be named after k


def quantities(
    x_shape: tuple[int, ...] | None, out_shape: tuple[int, ...] | None, extra: Mapping | None = None
) -> dict[str, float]:
    """The counts a factor of a layer with input ``x_shape`` and output ``out_shape``
    (batch axis first, NHWC) can be made of, each with a description."""
    found: dict[str, int] = {}
    if out_shape:
        found[f"N (the batch of {out_shape[0]})"] = int(out_shape[0])
    if out_shape and len(out_shape) == 4:
        ho, wo, c = out_shape[1:]
        found[f"Ho*Wo ({ho}x{wo} output positions)"] = int(ho * wo)
        found[f"the {c} output channels"] = int(c)
        found[f"N*Ho*Wo ({out_shape[0]}x{ho}x{wo})"] = int(out_shape[0] * ho * wo)
    if x_shape and len(x_shape) == 4:
        found[f"the {x_shape[3]} input channels"] = int(x_shape[3])
        if out_shape and len(out_shape) == 4:
            area = x_shape[1] * x_shape[2] / max(out_shape[1] * out_shape[2], 1)
            if area == int(area) and area > 1:
                found[f"the pooling window's area ({int(area)})"] = int(area)
    found["2 (an input used twice, one gradient overwriting the other)"] = 2
    found = {k: v for k, v in found.items() if v > 1}
    # A layer's own quantities (``cause_counts``) may be fractions: dropout's keep
    # probability 1 - rate, whose inverse a wrong backward forgets or applies twice.
    found.update({str(k): float(v) for k, v in (extra or {}).items() if v > 0 and v != 1})
    return found


def factor_cause(scale: float, counts: Mapping[str, int]) -> str | None:
    """ "1/400 = 1/Ho*Wo (20x20 output positions)" when ``scale`` is k or 1/k for a count."""
    if not np.isfinite(scale) or scale == 0:
        return None
    size = abs(scale)
    names = []
    for name, k in counts.items():
        if abs(size * k - 1) <= RTOL_FACTOR:
            names.append(f"1/{name}")
        elif abs(size / k - 1) <= RTOL_FACTOR:
            names.append(name)
    if not names:
        return None
    sign = "the sign flipped and " if scale < 0 else ""
    return f"{sign}{readable_factor(scale)} = " + " or ".join(names)


def transform_cause(manual: np.ndarray, true: np.ndarray, rtol: float) -> str | None:
    """The simple transform of ``true`` that ``manual`` equals, if one does."""
    m = np.asarray(manual, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if m.shape != t.shape or m.size < 2:
        return None

    def same(candidate: np.ndarray) -> bool:
        return candidate.shape == m.shape and compare(m, candidate, rtol).matches

    for spatial in _spatial_axes(t):
        if min(t.shape[a] for a in spatial) >= 2 and same(np.flip(t, axis=spatial)):
            return (
                "the true gradient rotated 180 degrees (a kernel flipped: a convolution "
                "where a correlation belongs)"
            )
    for axes in itertools.permutations(range(t.ndim)):
        if list(axes) != sorted(axes) and same(np.transpose(t, axes)):
            return f"the true gradient with its axes transposed ({', '.join(map(str, axes))})"
    for axis in range(t.ndim):
        if t.shape[axis] < 2:
            continue
        for shift in (1, -1):
            if same(np.roll(t, shift, axis=axis)):
                what = "sample" if axis == 0 else "position"
                return (
                    f"the true gradient rolled by {shift:+d} along axis {axis} (each "
                    f"{what}'s gradient handed to its neighbour)"
                )
            if t.shape[axis] >= 3 and same(_shifted(t, shift, axis)):
                return (
                    f"the true gradient shifted by {shift:+d} along axis {axis} "
                    "(an index off by one)"
                )
    for axis in range(t.ndim):
        if m.shape[axis] < 2:
            continue
        varies = np.ptp(t, axis=axis).max() > 1e-6 * np.abs(t).max()
        constant = np.ptp(m, axis=axis).max() <= 1e-9 * max(np.abs(m).max(), 1e-300)
        if varies and constant and np.abs(m).max() > 0:
            return (
                f"constant along axis {axis}, where the true gradient varies "
                "(a sum or broadcast over the wrong axis)"
            )
    return None


def candidate_cause(
    manual: np.ndarray, true: np.ndarray, candidates: Mapping[str, np.ndarray], rtol: float
) -> str | None:
    """The description of the first candidate ``manual`` equals ({description: array},
    such as a fork's dx without one path's share). A candidate the true gradient equals
    is passed over: it could not tell a bug from rounding."""
    m = np.asarray(manual, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    for description, value in candidates.items():
        value = np.asarray(value, dtype=np.float64)
        if value.shape != m.shape or compare(value, t, rtol).matches:
            continue
        if compare(m, value, rtol).matches:
            return description
    return None


def _spatial_axes(t: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The axes a 180-degree rotation may flip: a kernel [kh,kw,ci,co]'s first two, an
    NHWC tensor's H and W, a matrix's both."""
    if t.ndim == 4:
        return ((0, 1), (1, 2))
    return ((0, 1),) if t.ndim == 2 else ()


def _shifted(t: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """``t`` moved by ``shift`` along ``axis``, zeros filling the vacated edge."""
    out = np.zeros_like(t)
    source = [slice(None)] * t.ndim
    target = [slice(None)] * t.ndim
    if shift > 0:
        source[axis], target[axis] = slice(0, -shift), slice(shift, None)
    else:
        source[axis], target[axis] = slice(-shift, None), slice(0, shift)
    out[tuple(target)] = t[tuple(source)]
    return out
