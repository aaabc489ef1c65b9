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
    """The user pressed Ctrl-C; the state was saved and the message says how to resume."""

    exit_code = EXIT_INTERRUPTED


class DivergenceError(TfhybridError):
    """Training produced a non-finite loss or parameter."""

    exit_code = EXIT_DIVERGED
