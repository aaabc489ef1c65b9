"""The per-epoch progress bar: tqdm's, so it shows in a terminal and in Jupyter alike.

Drawn only where someone watches: tqdm leaves it off when stderr is not a terminal (a log
file, CI), and ``tqdm.auto`` draws a widget in a notebook.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

REDRAW_SECONDS = 0.1  # redrawing every step would cost more than a step of the small models


class ProgressBar:
    """``with ProgressBar(total, label) as bar: bar.update(step, **stats)``; ``step`` is the
    number of steps done (a resumed epoch starts past 0)."""

    def __init__(self, total: int, label: str, stream=None):
        self._bar = tqdm(
            total=total,
            desc=label,
            file=stream or sys.stderr,
            leave=False,
            mininterval=REDRAW_SECONDS,
            disable=None,
            dynamic_ncols=True,
        )

    def __enter__(self) -> ProgressBar:
        return self

    def update(self, done: int, **stats: float) -> None:
        if self._bar.disable:
            return
        if stats:
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in stats.items()}, refresh=False)
        self._bar.update(done - self._bar.n)

    def __exit__(self, *exc) -> None:
        self._bar.close()  # leave=False: the epoch's summary line takes its place
