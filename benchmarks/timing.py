"""Step times: every method timed in turn, in short rounds, and their summaries.

Interleaving the methods of one network in one process means load from other processes
(2 shared cores) hits them alike, so their ratios hold on a busy machine even when the
absolute times do not.
"""

from __future__ import annotations

import time

import numpy as np


def time_calls(fn, repeats: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved_times(steps: dict, repeats: int, warmup: int, chunk: int = 10) -> dict:
    """Time every step function in turn, ``chunk`` steps at a time, until each has
    ``repeats`` timed steps; returns {name: [seconds per step]}."""
    for fn in steps.values():
        time_calls(fn, 0, warmup)
    times: dict[str, list[float]] = {name: [] for name in steps}
    while any(len(t) < repeats for t in times.values()):
        for name, fn in steps.items():
            times[name] += time_calls(fn, min(chunk, repeats - len(times[name])))
    return times


def summarise(times: list[float]) -> dict:
    """Median, 10th and 90th percentile in ms, the count, and every time (ms)."""
    ms = np.asarray(times) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "steps": len(ms),
        "times_ms": [round(float(t), 4) for t in ms],
    }
