"""Comparing one gradient with a reference: error figures and a verdict.

Relative error, per element, symmetric as in CS231n but with a floor::

    rel_i = |a_i - b_i| / max(|a_i| + |b_i|, floor),  floor = REL_ERROR_FLOOR * (max|a| + max|b|)

The tensor's relative error is the largest rel_i. The best-fit scale c minimises
||a - c b||^2 (least squares): c = <a, b> / <b, b>.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhybrid.audit.tolerances import MIN_FACTOR_ELEMENTS, REL_ERROR_FLOOR

MATCH = "match"
FACTOR = "off by a constant factor"
SIGN = "sign flipped"
WRONG = "wrong"
TINY = 1e-300  # keeps 0/0 away when both tensors are exactly zero
LARGEST_READABLE = 100_000  # print c as k or 1/k up to this k


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How ``actual`` compares with ``reference`` (both flattened to the same order)."""

    max_abs_error: float
    rel_error: float
    cosine: float
    scale: float
    worst_index: tuple[int, ...]
    verdict: str  # MATCH, FACTOR, SIGN or WRONG
    count: int  # elements compared

    @property
    def matches(self) -> bool:
        return self.verdict == MATCH

    @property
    def description(self) -> str:
        """The verdict as a reader wants it, with the factor: "off by a constant factor 1/400"."""
        if self.verdict == FACTOR:
            return f"{FACTOR} {readable_factor(self.scale)}"
        return self.verdict

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["worst_index"] = list(self.worst_index)
        out["scale_readable"] = readable_factor(self.scale)
        out["description"] = self.description
        return out


def relative_errors(
    actual: np.ndarray, reference: np.ndarray, scale: np.ndarray | None = None
) -> np.ndarray:
    """Element-wise symmetric relative error (module docstring).

    ``scale``: the tensors whose largest magnitudes set the floor (default: the two
    compared), so a sample of coordinates can be judged on its whole tensor's scale.
    """
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if scale is None:
        scale = np.abs(a).max(initial=0) + np.abs(b).max(initial=0)
    floor = max(REL_ERROR_FLOOR * float(scale), TINY)
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)


def compare(
    actual: np.ndarray, reference: np.ndarray, rtol: float, *, floor_scale: float | None = None
) -> Comparison:
    """Error figures of ``actual`` against ``reference`` and the verdict at ``rtol``.

    match: every rel_i <= rtol. sign flipped: ``-actual`` would match. Off by a constant
    factor c: ``actual`` matches ``c * reference`` (c the best-fit scale). Else wrong.
    A sign or factor needs MIN_FACTOR_ELEMENTS elements above the floor in both tensors
    (one number is always some multiple of another).
    """
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shape {a.shape} with reference shape {b.shape}")
    if a.size == 0:
        return Comparison(0.0, 0.0, 1.0, 1.0, (), MATCH, 0)
    rel = relative_errors(a, b, floor_scale)
    worst = np.unravel_index(int(rel.argmax()), a.shape)
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    dot = float(np.vdot(a, b))
    cosine = dot / (norm_a * norm_b) if norm_a and norm_b else float(norm_a == norm_b)
    scale = dot / norm_b**2 if norm_b else float("nan")
    # Elements that count as evidence of a factor: clear of each tensor's own floor.
    evidence = int(
        np.count_nonzero(
            (np.abs(a) > REL_ERROR_FLOOR * np.abs(a).max())
            & (np.abs(b) > REL_ERROR_FLOOR * np.abs(b).max())
        )
    )
    if rel.max() <= rtol:
        verdict = MATCH
    elif evidence < MIN_FACTOR_ELEMENTS:
        verdict = WRONG
    elif relative_errors(a, -b, floor_scale).max() <= rtol:
        verdict = SIGN
    elif (
        np.isfinite(scale)
        and scale != 0
        and (relative_errors(a, scale * b, floor_scale).max() <= rtol)
    ):
        verdict = FACTOR
    else:
        verdict = WRONG
    return Comparison(
        max_abs_error=float(np.abs(a - b).max()),
        rel_error=float(rel.max()),
        cosine=cosine,
        scale=scale,
        worst_index=tuple(int(i) for i in worst),
        verdict=verdict,
        count=a.size,
    )


def with_atol(item: Comparison, atol: float) -> Comparison:
    """``item``, made a match when every difference is within ``atol`` (the absolute
    tolerance a caller of ``check_op`` may set beside the relative one)."""
    if atol and item.verdict != MATCH and item.max_abs_error <= atol:
        return dataclasses.replace(item, verdict=MATCH)
    return item


def readable_factor(c: float, rtol: float = 1e-4) -> str:
    """c as "4", "1/400" or "-1/8" when within ``rtol`` of k or 1/k; else 6 significant digits."""
    if not np.isfinite(c) or c == 0:
        return f"{c:.6g}"
    sign = "-" if c < 0 else ""
    size = abs(c)
    whole = round(size)
    if 1 <= whole <= LARGEST_READABLE and abs(size / whole - 1) <= rtol:
        return f"{sign}{whole}"
    if size >= 1 / LARGEST_READABLE:
        inverse = round(1 / size)
        if 1 <= inverse <= LARGEST_READABLE and abs(size * inverse - 1) <= rtol:
            return f"{sign}1/{inverse}"
    return f"{c:.6g}"
