"""Judging a gradient where the function has no derivative: one-sided and directional
differences.

At a kink (ReLU at 0, tied maxima in a pooling window) a backward pass may return any
valid subgradient: ReLU'(0) anywhere in [0, 1], a tie's gradient shared among the tied
inputs in non-negative parts that add up to the window's gradient. For a function made of
smooth pieces joined at kinks (max, ReLU, abs), a valid g satisfies, for every direction
v that stays inside one kink's coordinates, ``<g, v>`` between the one-sided directional
derivatives ``f'(x; v)`` and ``-f'(x; -v)`` (Clarke, *Optimization and Nonsmooth
Analysis*, 1983, 2.1; for f = max of smooth pieces the subgradients are the convex hull
of the pieces' gradients, and ``<g, v>`` then lies between the smallest and the largest
piece's slope, which are those two derivatives). Two tests follow:

- per coordinate i (v = e_i): g_i between the left and right slopes;
- per group of coordinates that share a kink (v = the group's all-ones vector): the sum
  of g over the group between the two one-sided slopes; for a whole tie group both
  slopes equal the window's gradient (moving every tied input together keeps the tie),
  so the parts must add up to it exactly.

Coordinates share a kink when moving them together is not the sum of moving each
alone (``f'(x; e_i + e_j) != f'(x; e_i) + f'(x; e_j)``); the groups are the connected
parts of that relation. Both tests are necessary conditions, so they never reject a
valid subgradient of such a function; a gradient that passes them is called a valid
subgradient, not proved one.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np

from tfhybrid.audit.tolerances import REL_ERROR_FLOOR

MAX_KINK_COORDINATES = 48  # coordinates judged here per tensor: pairs cost 2 losses each


@dataclasses.dataclass(frozen=True)
class KinkCheck:
    """How the manual gradient fares at coordinates that sit on a kink."""

    checked: int  # coordinates judged by one-sided slopes
    groups: int  # groups of coordinates sharing a kink (singletons included)
    failed: tuple[tuple[int, ...], ...]  # coordinates whose test failed (a group: each)
    worst: float  # the largest violation, relative to the tolerance's scale

    @property
    def valid(self) -> bool:
        return self.checked > 0 and not self.failed


def check_kinks(
    loss_at: Callable[[dict[str, np.ndarray]], float],
    values: dict[str, np.ndarray],
    name: str,
    manual: np.ndarray,
    coordinates: list[tuple[int, ...]],
    left: np.ndarray,
    right: np.ndarray,
    step: float,
    tolerance: float,
    scale: float,
) -> KinkCheck:
    """Test ``manual`` (the gradient of ``values[name]``) at kink ``coordinates``, whose
    one-sided slopes ``left``/``right`` the finite differences measured with ``step``.

    ``tolerance``: relative, on the scale max(|left| + |right|, REL_ERROR_FLOOR * scale).
    """
    coordinates = [tuple(int(i) for i in c) for c in coordinates][:MAX_KINK_COORDINATES]
    count = len(coordinates)
    left, right = np.asarray(left, float)[:count], np.asarray(right, float)[:count]
    if not count:
        return KinkCheck(0, 0, (), 0.0)
    base = {k: np.array(v, dtype=np.float64) for k, v in values.items()}

    def loss_moved(moves: list[tuple[tuple[int, ...], float]]) -> float:
        point = {k: v.copy() for k, v in base.items()}
        for index, amount in moves:
            point[name][index] += amount
        return float(loss_at(point))

    loss0 = loss_moved([])
    floor = REL_ERROR_FLOOR * scale
    failed: list[tuple[int, ...]] = []
    worst = 0.0

    def judge(value: float, a: float, b: float, members: list[tuple[int, ...]]) -> None:
        nonlocal worst
        allowed = tolerance * max(abs(a) + abs(b), floor, 1e-300)
        excess = max(min(a, b) - value, value - max(a, b), 0.0) / allowed
        worst = max(worst, excess)
        if excess > 1:
            failed.extend(m for m in members if m not in failed)

    for c, a, b in zip(coordinates, left, right, strict=True):
        judge(float(manual[c]), a, b, [c])

    # Groups: coordinates whose joint move is not the sum of their single moves.
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(count), 2):
        up = (loss_moved([(coordinates[i], step), (coordinates[j], step)]) - loss0) / step
        down = (loss0 - loss_moved([(coordinates[i], -step), (coordinates[j], -step)])) / step
        allowed = tolerance * max(
            abs(right[i]) + abs(right[j]) + abs(left[i]) + abs(left[j]), floor
        )
        if abs(up - right[i] - right[j]) > allowed or abs(down - left[i] - left[j]) > allowed:
            parent[root(i)] = root(j)

    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        cells = [coordinates[i] for i in members]
        up = (loss_moved([(c, step) for c in cells]) - loss0) / step
        down = (loss0 - loss_moved([(c, -step) for c in cells])) / step
        judge(float(sum(manual[c] for c in cells)), down, up, cells)
    return KinkCheck(count, len(groups), tuple(failed), worst)
