"""Step 1 of the judge: compare the manual gradient with the tape, over the whole tensor.

The float64 tape is the reference wherever there is one; the float32 tape beside it says
how large float32's rounding is for this tensor, which is what tells a gradient that is
zero up to rounding (a bias before batch norm) from a wrong one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.compare import MATCH, Comparison, compare, relative_errors, with_atol
from tfhybrid.audit.judge_case import Case

# A manual gradient within this many times the float32 tape's own rounding error of a
# reference that is zero up to rounding (a bias before batch norm) matches.
NOISE_FACTOR = 10


@dataclasses.dataclass(frozen=True)
class TapeCheck:
    """The manual gradient against the float64 tape (``manual``) and the float32 tape
    against the float64 one (``tape32``); None where that tape is missing. ``zero``: the
    true gradient is zero up to rounding and the manual one is as small (``manual`` is
    then a match). ``departing``: the coordinates where the manual gradient and the tape
    differ beyond tolerance (none when they match, and none listed without a probe)."""

    manual: Comparison | None
    tape32: Comparison | None
    zero: bool = False
    departing: tuple[tuple[int, ...], ...] = ()


def compare_with_tape(case: Case) -> TapeCheck:
    """Reads ``manual``, ``tape64``, ``tape32``, ``manual_rtol``, ``atol`` and whether
    there is a ``probe``.

    Decides whether the manual gradient matches the float64 tape at ``manual_rtol`` (the
    precision the manual code computed in; :mod:`tfhybrid.audit.tolerances`), and whether
    the reference is rounding noise only (:func:`zero_up_to_rounding`), in which case the
    manual gradient matches: there is no formula to compare, and each source's rounding
    noise agrees with the others'.
    """
    if case.tape64 is None:
        return TapeCheck(None, None)
    manual = with_atol(compare(case.manual, case.tape64, case.manual_rtol), case.atol)
    tape32 = (
        compare(case.tape32, case.tape64, tol.RTOL_FLOAT32) if case.tape32 is not None else None
    )
    if zero_up_to_rounding(manual, tape32, case.tape64):
        return TapeCheck(dataclasses.replace(manual, verdict=MATCH), tape32, zero=True)
    # Only steps 2 and 3 read the departures (to sample them, and to judge them at kinks):
    # without a probe, listing them one by one would cost a large intermediate dearly.
    # None depart from a match: the same errors at the same tolerance.
    if manual.matches or case.probe is None:
        return TapeCheck(manual, tape32)
    return TapeCheck(manual, tape32, departing=departures(case))


def zero_up_to_rounding(manual: Comparison, tape32: Comparison | None, tape64: np.ndarray) -> bool:
    """Whether the true gradient is below float32's resolution, so that the float32 tape
    is all rounding error against the float64 one (``tape32`` does not match), and the
    manual gradient is as small: either within NOISE_FACTOR of that rounding of the tape,
    or matching the float64 tape while the whole tape is within NOISE_FACTOR of it."""
    if tape32 is None or tape32.matches:
        return False
    noise = NOISE_FACTOR * tape32.max_abs_error
    if manual.matches:
        return float(np.abs(tape64).max(initial=0)) <= noise
    return manual.max_abs_error <= noise


def departures(case: Case) -> tuple[tuple[int, ...], ...]:
    """The coordinates where the manual gradient and the float64 tape differ beyond
    ``manual_rtol`` (the relative error of :mod:`tfhybrid.audit.compare`) and ``atol``."""
    rel = relative_errors(case.manual, case.tape64)
    bad = rel > case.manual_rtol
    if case.atol:
        bad &= np.abs(case.manual - case.tape64) > case.atol
    return tuple(tuple(int(i) for i in idx) for idx in np.argwhere(bad))
