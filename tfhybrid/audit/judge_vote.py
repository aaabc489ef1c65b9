"""Step 4 of the judge: the 2-of-3 vote among the gradient's sources.

With finite differences the sources are the manual gradient, the float64 tape and the
differences; without them (an intermediate, or every sampled step across a kink) the two
tapes stand in for the third source. Which pair disagrees points at the odd one out
(:mod:`tfhybrid.audit.vote`).
"""

from __future__ import annotations

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.compare import Comparison, compare
from tfhybrid.audit.judge_case import FD64, MANUAL, TAPE32, TAPE64, Case
from tfhybrid.audit.judge_kinks import KinkVerdict
from tfhybrid.audit.judge_samples import Samples
from tfhybrid.audit.judge_tape import TapeCheck
from tfhybrid.audit.vote import Vote, unanimous, vote


def vote_sources(
    case: Case,
    tape: TapeCheck,
    samples: Samples | None = None,
    kinks: KinkVerdict | None = None,
) -> Vote | None:
    """Reads the comparisons of the earlier steps (``samples`` and ``kinks`` None where
    no finite differences were taken) and ``manual_rtol``.

    Decides which pairs of sources agree. A gradient zero up to rounding is a unanimous
    vote; the differences alone, without a tape, are no vote (None). At kinks, the
    one-sided and directional tests speak for the differences, and a valid subgradient
    agrees with the float32 tape as it does with the float64 one.
    """
    if tape.zero:
        return unanimous((MANUAL, TAPE32, TAPE64))
    if case.tape64 is None:
        return None
    # The manual against the float64 tape as the kinks left it (a valid subgradient: a match).
    manual = kinks.judged if kinks is not None else tape.manual
    if samples is None or not samples.kept:
        if case.tape32 is None:  # a reference that runs in float64 only: no third source
            return None
        agree = tape_pairs(case, manual, tape)
        if kinks is not None and kinks.departures:
            agree[(MANUAL, TAPE32)] = True
        return vote((MANUAL, TAPE32, TAPE64), agree)
    check = kinks.check if kinks is not None else None
    agree = {
        (MANUAL, TAPE64): manual.matches,
        # at kinks the one-sided and directional differences speak for fd64
        (MANUAL, FD64): samples.manual.matches and (check is None or check.valid),
        (TAPE64, FD64): samples.tape.matches,
    }
    return vote((MANUAL, TAPE64, FD64), agree)


def tape_pairs(case: Case, manual: Comparison, tape: TapeCheck) -> dict[tuple[str, str], bool]:
    """The pairs of the vote among manual, tape32 and tape64 (no finite differences):
    ``manual`` is the manual against the float64 tape; against the float32 tape it is
    compared at float32's tolerance, or the manual code's if larger."""
    against32 = compare(case.manual, case.tape32, max(case.manual_rtol, tol.RTOL_FLOAT32))
    return {
        (MANUAL, TAPE64): manual.matches,
        (MANUAL, TAPE32): against32.matches,
        (TAPE32, TAPE64): tape.tape32.matches,
    }
