"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1  # redrawing every step would cost more than a step of this model


class ProgressBar:
    """``with ProgressBar(total, label) as bar: bar.update(step, **stats)``."""

    def __init__(self, total: int, label: str, stream=None):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def __enter__(self) -> ProgressBar:
        return self

    def update(self, done: int, **stats: float) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < REDRAW_SECONDS and done < self.total):
            return
        self._last = now
        filled = BAR_WIDTH * done // self.total
        extra = "  ".join(f"{k} {v:.4f}" for k, v in stats.items())
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                          f"{done}/{self.total}  {extra}")
        self.stream.flush()

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")  # clear the bar; the epoch summary line replaces it
            self.stream.flush()
