"""Step 3 of the judge: judge the manual gradient at the sampled kinks.

Where the function has no derivative (ReLU at 0, tied maxima) a backward may return any
valid subgradient, which need not be TensorFlow's; the one-sided and directional tests of
:mod:`tfhybrid.audit.kinks` (after Clarke, 1983) say whether it is one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.compare import MATCH, WRONG, Comparison
from tfhybrid.audit.judge_case import Case
from tfhybrid.audit.judge_samples import Index, Samples
from tfhybrid.audit.judge_tape import TapeCheck
from tfhybrid.audit.kinks import KinkCheck, check_kinks


@dataclasses.dataclass(frozen=True)
class KinkVerdict:
    """``judged``: the manual gradient's comparison as the verdict stands after the kinks
    (None: nothing could be compared, every sampled coordinate sits on a kink or a jump
    without one-sided slopes). ``check``: the kink tests as the record keeps them;
    ``departures``: coordinates where a valid subgradient departs from the tape's (with a
    tape) or sits on a kink (without one)."""

    judged: Comparison | None
    check: KinkCheck | None = None
    departures: int = 0


def judge_kinks(case: Case, tape: TapeCheck, samples: Samples) -> KinkVerdict:
    """Reads the tape's comparison and departing coordinates, the samples' kinks and
    their comparisons, and the ``probe`` to move the loss in pairs of coordinates.

    With a tape: where the manual departs from it only at kinks, and is a valid
    subgradient there, the departure is TensorFlow's convention, not a bug, and the tape
    comparison becomes a match. Without one: the kinks are judged beside the comparable
    coordinates, and a failed kink makes a match wrong.
    """
    if case.tape64 is None:
        return _without_tape(case, samples)
    judged = tape.manual
    if not tape.departing or judged.matches:
        return KinkVerdict(judged)
    away = set(tape.departing)
    smooth = [i for i in samples.kept if i in away]
    at_kinks = [k for k in samples.kinked if k[0] in away]
    if smooth or not at_kinks:  # a departure off the kinks is no subgradient's
        return KinkVerdict(judged)
    check = check_at_kinks(case, samples, at_kinks)
    if not check.valid:
        return KinkVerdict(judged, check)
    # A valid subgradient: it departs from TensorFlow's convention only.
    matched = dataclasses.replace(judged, verdict=MATCH)
    return KinkVerdict(matched, check, departures=len(tape.departing))


def _without_tape(case: Case, samples: Samples) -> KinkVerdict:
    """Every steady kink tested; the differences' comparison, made wrong by a failed one."""
    check = check_at_kinks(case, samples, samples.kinked)
    if not samples.kept and not check.checked:
        return KinkVerdict(None, check)
    judged = samples.alone
    if check.failed and judged.matches:
        judged = dataclasses.replace(judged, verdict=WRONG, worst_index=check.failed[0])
    if not check.checked:
        return KinkVerdict(judged)
    return KinkVerdict(judged, check, departures=check.checked if judged.matches else 0)


def check_at_kinks(
    case: Case, samples: Samples, kinked: list[tuple[Index, float, float]]
) -> KinkCheck:
    """:func:`tfhybrid.audit.kinks.check_kinks` at ``kinked`` (coordinate, left slope,
    right slope), at the larger of the one-sided slopes' tolerance and the differences'."""
    if not kinked:
        return KinkCheck(0, 0, (), 0.0)
    probe = case.probe
    return check_kinks(
        probe.loss_at,
        dict(probe.values),
        probe.key,
        case.manual,
        [k[0] for k in kinked],
        np.array([k[1] for k in kinked]),
        np.array([k[2] for k in kinked]),
        probe.step,
        max(tol.RTOL_ONE_SIDED, samples.rtol),
        samples.scale,
    )
