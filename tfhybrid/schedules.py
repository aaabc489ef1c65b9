"""Learning-rate schedules: the rate of each update as a function of the step alone.

A schedule reads only the run's global step and its total, never state, so a resumed run
sets every update's rate exactly as the uninterrupted run did.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def learning_rate(schedule: str, base: float, step: int, total: int) -> float:
    """The rate of update ``step`` (0-based) of ``total``.

    ``constant``: ``base`` throughout. ``cosine``: ``base * (1 + cos(pi * step / total)) / 2``,
    from ``base`` at the first update down towards 0 at the last (cosine annealing,
    Loshchilov & Hutter 2017, "SGDR", without restarts). Raises ValueError for an unknown
    schedule.
    """
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
