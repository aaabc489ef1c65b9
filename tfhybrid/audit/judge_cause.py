"""Step 5 of the judge: name the likely cause of a mismatch (:mod:`tfhybrid.audit.causes`),
tested where the check can run again (:mod:`tfhybrid.audit.confirm`)."""

from __future__ import annotations

import dataclasses

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.causes import as_quantities, candidate_cause, factor_cause, transform_cause
from tfhybrid.audit.compare import FACTOR, SIGN, WRONG, Comparison
from tfhybrid.audit.confirm import IGNORES_UPSTREAM
from tfhybrid.audit.judge_case import Case


@dataclasses.dataclass(frozen=True)
class Cause:
    """``text``: the likely cause, or None. ``equals``: it is a tensor the manual gradient
    equals (one of the caller's candidates), not a factor or transform of the true one.
    ``phrase``: it says what the gradient does as a whole phrase ("does not scale with
    dout: ..."), printed after the tensor's name as it is."""

    text: str | None = None
    equals: bool = False
    phrase: bool = False


def name_cause(case: Case, judged: Comparison, matches: bool) -> Cause:
    """Reads the verdict's comparison, ``counts``, ``rerun``, ``tape64``, ``candidates``
    and ``manual_rtol``.

    Decides nothing for a match. First, with a ``rerun``: a gradient that stays the same
    when dout doubles ignores its upstream gradient. A constant factor or a flipped sign
    is named after the layer's count it equals (a mean where a sum belongs: 1/400 =
    1/Ho*Wo), confirmed at a second shape by the ``rerun`` (or said to be unconfirmed);
    a wrong gradient after the transform of the true one it equals (rotated, two axes
    swapped, transposed, shifted, constant along an axis); failing both, after the
    caller's candidate it equals. Tensors are compared at the manual code's tolerance,
    or float32's if larger.
    """
    if matches:
        return Cause()
    rtol = max(case.manual_rtol, tol.RTOL_FLOAT32)
    rerun = case.rerun
    if rerun is not None and rerun.ignores_upstream(case.name, case.manual, rtol):
        return Cause(IGNORES_UPSTREAM, phrase=True)
    text = None
    if judged.verdict in (FACTOR, SIGN):
        if rerun is None:
            text = factor_cause(judged.scale, case.counts or {})
        else:
            text = rerun.factor_cause(case.name, judged.scale, as_quantities(case.counts))
    elif judged.verdict == WRONG and case.tape64 is not None:
        text = transform_cause(case.manual, case.tape64, rtol)
    if text is None and case.candidates and case.tape64 is not None:
        text = candidate_cause(case.manual, case.tape64, case.candidates, rtol)
        return Cause(text, equals=text is not None)
    return Cause(text)
