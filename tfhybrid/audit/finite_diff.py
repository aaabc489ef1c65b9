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


@dataclasses.dataclass(frozen=True)
class FiniteDifferences:
    """Finite differences of one parameter at sampled coordinates."""

    indices: list[tuple[int, ...]]  # the coordinates, as indices into the parameter
    values: np.ndarray  # float64 [k]: the central differences
    comparable: np.ndarray  # bool [k]: False where the stencil crosses a kink
    curvature_spread: np.ndarray  # float64 [k]: how unequal the slope changes are

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
) -> FiniteDifferences:
    """dL/d params[name] at ``indices`` by central differences, each tested for a kink.

    ``loss_at(params) -> float`` evaluates the loss (in float64) at any parameters.
    ``scale``: the gradient's typical size (max|dL/dw| of a reference, doubled, as the
    relative error's floor): small slopes are judged against ``REL_ERROR_FLOOR * scale``.
    """
    base = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    loss0 = loss_at(base)
    values, spreads, comparable = [], [], []
    for index in indices:
        original = base[name][index]
        points, losses = [], []
        for k in STENCIL:
            base[name][index] = original + k * step
            points.append(base[name][index])  # the value actually reached, after rounding
            losses.append(loss_at(base))
        base[name][index] = original
        (x_m2, x_m1, x_p1, x_p2), (l_m2, l_m1, l_p1, l_p2) = points, losses
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
        allowed = (
            rtol * max(centre, REL_ERROR_FLOOR * scale)
            + KINK_ROUNDOFF * np.finfo(np.float64).eps * abs(loss0) / step
        )
        spreads.append(spread)
        comparable.append(spread <= allowed)
    return FiniteDifferences(
        indices=list(indices),
        values=np.array(values),
        comparable=np.array(comparable, dtype=bool),
        curvature_spread=np.array(spreads),
    )
