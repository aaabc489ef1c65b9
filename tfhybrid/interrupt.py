"""Turn Ctrl-C into a request the training loop honours at the next step boundary.

Raising KeyboardInterrupt in the middle of an update could leave w1 updated and b1
not; a flag checked between steps saves a consistent state instead. A second
Ctrl-C interrupts at once, for a loop that is stuck.
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """``with StopRequest() as stop: ... if stop.requested: save and leave``."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
