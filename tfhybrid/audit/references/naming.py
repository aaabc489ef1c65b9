"""A reference's name, as its settings read: ``conv(stride=2, pad=1, layout='NCHW')``."""

from __future__ import annotations

from collections.abc import Callable


def named(function: Callable, name: str, **settings) -> Callable:
    """``function`` renamed ``name(setting=value, ...)``, so that a report or an error
    shows which reference, with which settings, it was."""
    text = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    function.__name__ = function.__qualname__ = f"{name}({text})"
    return function
