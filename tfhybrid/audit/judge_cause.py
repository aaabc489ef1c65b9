"""Step 5 of the judge: name the likely cause of a mismatch (:mod:`tfhybrid.audit.causes`)."""

from __future__ import annotations

import dataclasses

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.causes import candidate_cause, factor_cause, transform_cause
from tfhybrid.audit.compare import FACTOR, SIGN, WRONG, Comparison
from tfhybrid.audit.judge_case import Case


@dataclasses.dataclass(frozen=True)
class Cause:
    """``text``: the likely cause, or None. ``equals``: it is a tensor the manual gradient
    equals (one of the caller's candidates), not a factor or transform of the true one."""

    text: str | None = None
    equals: bool = False


def name_cause(case: Case, judged: Comparison, matches: bool) -> Cause:
    """Reads the verdict's comparison, ``counts``, ``tape64``, ``candidates`` and
    ``manual_rtol``.

    Decides nothing for a match. A constant factor or a flipped sign is named after the
    layer's quantity it equals (a mean where a sum belongs: 1/400 = 1/Ho*Wo); a wrong
    gradient after the transform of the true one it equals (rotated, transposed, shifted);
    failing both, after the caller's candidate it equals. Tensors are compared at the
    manual code's tolerance, or float32's if larger.
    """
    if matches:
        return Cause()
    rtol = max(case.manual_rtol, tol.RTOL_FLOAT32)
    text = None
    if judged.verdict in (FACTOR, SIGN):
        text = factor_cause(judged.scale, case.counts or {})
    elif judged.verdict == WRONG and case.tape64 is not None:
        text = transform_cause(case.manual, case.tape64, rtol)
    if text is None and case.candidates and case.tape64 is not None:
        text = candidate_cause(case.manual, case.tape64, case.candidates, rtol)
        return Cause(text, equals=text is not None)
    return Cause(text)
