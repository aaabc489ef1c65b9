"""Errors a user can act on: each carries one line of advice and an exit code.

The command line prints ``str(error)`` on one line and exits with ``error.exit_code``,
so no traceback reaches the user for a problem they can fix themselves.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class TfhybridError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""

    exit_code = EXIT_USAGE


class ConfigError(TfhybridError):
    """An invalid option value (reported before any work starts)."""


class DataError(TfhybridError):
    """Missing, damaged or unreadable data files."""


class CheckpointError(TfhybridError):
    """A checkpoint or output folder that cannot be used."""


class Interrupted(TfhybridError):
    """The user pressed Ctrl-C; the state was saved in ``run_dir``.

    The message says how to resume from Python; a command line words the hint for what
    the user ran with :meth:`with_hint` (the library does not know how it was called).
    """

    exit_code = EXIT_INTERRUPTED

    def __init__(self, where: str, run_dir):
        self.where, self.run_dir = where, str(run_dir)
        super().__init__(
            f"{where}; resume with train_and_evaluate(config, {self.run_dir!r}, resume=True)"
        )

    def with_hint(self, hint: str) -> str:
        """The message with ``hint`` (a command, say) as the way to resume."""
        return f"{self.where}; resume with: {hint}"


class DivergenceError(TfhybridError):
    """Training produced a non-finite loss or parameter."""

    exit_code = EXIT_DIVERGED
