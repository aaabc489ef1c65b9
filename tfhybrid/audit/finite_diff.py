"""Central finite differences in float64, with a model-agnostic kink test.

For a coordinate w of a parameter, the loss is evaluated at w + k h, k = -2..2. The
derivative is the central difference (L(w+h) - L(w-h)) / 2h. The four one-sided
slopes between those five points change from one interval to the next by h f''(w)
each, equally, while the loss is smooth there (up to h^2 f'''); a kink (a ReLU at 0,
a change of max in a pooling window) inside the stencil changes one of those steps by
the whole jump in slope. When the three changes differ by more than the tolerance
allows, the coordinate is "not comparable": its difference quotient does not measure
a derivative. Only loss values are used, so the test suits any model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from tfhybrid.audit.tolerances import FD_STEP, KINK_ROUNDOFF, REL_ERROR_FLOOR

STENCIL = (-2, -1, 1, 2)  # multiples of the step besides 0
FLOAT64_EPS = float(np.finfo(np.float64).eps)


@dataclasses.dataclass(frozen=True)
class FiniteDifferences:
    """Finite differences of one parameter at sampled coordinates."""

    indices: list[tuple[int, ...]]  # the coordinates, as indices into the parameter
    values: np.ndarray  # float64 [k]: the central differences
    comparable: np.ndarray  # bool [k]: False where the stencil crosses a kink
    curvature_spread: np.ndarray  # float64 [k]: how unequal the slope changes are
    # float64 [k]: the one-sided slopes (L(w) - L(w-h)) / h and (L(w+h) - L(w)) / h; at a
    # kink a valid subgradient lies between them (see :mod:`tfhybrid.audit.kinks`)
    left: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    right: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    # float64 [k]: the same slopes over twice the step. At a kink they equal the slopes
    # over one step (up to curvature); at a jump they halve: no slope exists there.
    left2: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    right2: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @property
    def not_comparable(self) -> int:
        return int((~self.comparable).sum())


def sample_indices(
    shape: tuple[int, ...],
    count: int,
    rng: np.random.Generator,
    must: tuple[tuple[int, ...], ...] = (),
) -> list[tuple[int, ...]]:
    """Every coordinate when the tensor has at most ``count``; else ``must`` plus random ones."""
    size = int(np.prod(shape))
    if size <= count:
        return [tuple(int(i) for i in np.unravel_index(k, shape)) for k in range(size)]
    chosen = list(dict.fromkeys(tuple(int(i) for i in idx) for idx in must))[:count]
    taken = {int(np.ravel_multi_index(idx, shape)) for idx in chosen}
    for flat in rng.permutation(size):
        if len(chosen) == count:
            break
        if int(flat) not in taken:
            chosen.append(tuple(int(i) for i in np.unravel_index(flat, shape)))
    return chosen


def central_differences(
    loss_at: Callable[[dict[str, np.ndarray]], float],
    params: dict[str, np.ndarray],
    name: str,
    indices: list[tuple[int, ...]],
    rtol: float,
    scale: float = 0.0,
    step: float = FD_STEP,
    eps: float = FLOAT64_EPS,
    loss_scale: float | None = None,
    fourth_order: bool = False,
) -> FiniteDifferences:
    """dL/d params[name] at ``indices`` by central differences, each tested for a kink.

    ``loss_at(params) -> float`` evaluates the loss at any parameters (it gets copies:
    code that writes into its arguments cannot move the check's points).
    ``scale``: the gradient's typical size (max|dL/dw| of a reference, doubled, as the
    relative error's floor): small slopes are judged against ``REL_ERROR_FLOOR * scale``.
    ``eps`` and ``loss_scale``: the machine epsilon the loss was computed in and the size
    of its rounding (default |L|): the kink test allows ``KINK_ROUNDOFF`` such roundings
    per step. ``fourth_order``: the five-point derivative (8(L1 - L-1) - (L2 - L-2)) / 12h,
    whose truncation error is O(h^4), for the larger step a float32 forward needs.
    """
    base = {k: np.array(v, dtype=np.float64) for k, v in params.items()}

    def evaluate(point: dict[str, np.ndarray]) -> float:
        return float(loss_at({k: v.copy() for k, v in point.items()}))

    loss0 = evaluate(base)
    rounding = eps * (abs(loss0) if loss_scale is None else float(loss_scale))
    values, spreads, comparable, lefts, rights, lefts2, rights2 = [], [], [], [], [], [], []
    for index in indices:
        original = base[name][index]
        points, losses = [], []
        for k in STENCIL:
            base[name][index] = original + k * step
            points.append(base[name][index])  # the value actually reached, after rounding
            losses.append(evaluate(base))
        base[name][index] = original
        (x_m2, x_m1, x_p1, x_p2), (l_m2, l_m1, l_p1, l_p2) = points, losses
        if fourth_order:
            values.append((8 * (l_p1 - l_m1) - (l_p2 - l_m2)) / (6 * (x_p1 - x_m1)))
        else:
            values.append((l_p1 - l_m1) / (x_p1 - x_m1))
        slopes = np.array(
            [
                (l_m1 - l_m2) / (x_m1 - x_m2),
                (loss0 - l_m1) / (original - x_m1),
                (l_p1 - loss0) / (x_p1 - original),
                (l_p2 - l_p1) / (x_p2 - x_p1),
            ]
        )
        changes = np.diff(slopes)
        spread = float(changes.max() - changes.min())
        centre = abs(slopes[1]) + abs(slopes[2])
        allowed = rtol * max(centre, REL_ERROR_FLOOR * scale) + KINK_ROUNDOFF * rounding / step
        spreads.append(spread)
        comparable.append(spread <= allowed)
        lefts.append(slopes[1])
        rights.append(slopes[2])
        lefts2.append((loss0 - l_m2) / (original - x_m2))
        rights2.append((l_p2 - loss0) / (x_p2 - original))
    return FiniteDifferences(
        indices=list(indices),
        values=np.array(values),
        comparable=np.array(comparable, dtype=bool),
        curvature_spread=np.array(spreads),
        left=np.array(lefts),
        right=np.array(rights),
        left2=np.array(lefts2),
        right2=np.array(rights2),
    )
