"""One judge for every level: a manual gradient against the tape and finite differences.

``judge_tensor`` is the per-tensor step of :func:`~tfhybrid.audit.check_op`,
:func:`~tfhybrid.audit.check_layer`, :func:`~tfhybrid.audit.audit` (parameters and
intermediates), the per-example audit and the per-layer checks that find the layer at
fault. It returns a :class:`TensorCheck`, whose row :func:`row` formats for every table.

The judge is a pipeline (:func:`judge`) over one :class:`~tfhybrid.audit.judge_case.Case`,
each step in its own module and testable alone: compare with the tape (``judge_tape``),
sample the finite differences (``judge_samples``), judge the kinks (``judge_kinks``),
vote (``judge_vote``), name the cause (``judge_cause``).

Verdicts: ``match``, ``off by a constant factor C``, ``sign flipped``, ``wrong``,
``not checked`` (the backward returned no gradient for an input: it does not count), and
``not checked: WHY`` (nothing could be compared: never a match). At coordinates where the
function has no derivative, a valid subgradient that departs from TensorFlow's convention
passes (:mod:`tfhybrid.audit.kinks`); the record counts those coordinates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.causes import Quantity
from tfhybrid.audit.compare import FACTOR, SIGN, Comparison, readable_factor
from tfhybrid.audit.confirm import Rerun
from tfhybrid.audit.judge_case import FD64, MANUAL, TAPE32, TAPE64, Case, Probe
from tfhybrid.audit.judge_cause import Cause, name_cause
from tfhybrid.audit.judge_kinks import KinkVerdict, judge_kinks
from tfhybrid.audit.judge_samples import CLUSTER, TRY_HARDER, Samples, sample_differences
from tfhybrid.audit.judge_tape import NOISE_FACTOR, TapeCheck, compare_with_tape
from tfhybrid.audit.judge_vote import vote_sources
from tfhybrid.audit.kinks import KinkCheck
from tfhybrid.audit.vote import Vote

# What callers have always imported from here, wherever it is defined now.
__all__ = [
    "CLUSTER",
    "EMPTY",
    "FD64",
    "GAP",
    "HEADER",
    "INPUT",
    "INTERMEDIATE",
    "MANUAL",
    "NOISE_FACTOR",
    "NOT_CHECKED",
    "ON_KINKS",
    "PARAMETER",
    "PER_EXAMPLE",
    "PER_EXAMPLE_SUFFIX",
    "SUM_SUFFIX",
    "TAPE32",
    "TAPE64",
    "TRY_HARDER",
    "ZERO_NOTE",
    "Probe",
    "TensorCheck",
    "aligned",
    "cause_text",
    "judge",
    "judge_tensor",
    "left_out",
    "notes",
    "row",
]

PARAMETER, INTERMEDIATE, INPUT = "parameter", "intermediate", "input"
PER_EXAMPLE = "per-example"
# Names of the per-example records: "db1:per-example" (each sample's own, [N, *shape])
# and "db1:sum" (their sum over N against the batch gradient).
PER_EXAMPLE_SUFFIX, SUM_SUFFIX = ":per-example", ":sum"
NOT_CHECKED = "not checked"
ON_KINKS = (
    "every sampled coordinate sits on a kink or a jump, and none has one-sided slopes "
    "to judge it by"
)
EMPTY = "the tensor is empty"
ZERO_NOTE = "the true gradient is zero up to rounding, and the manual one is as small"
GAP = "  "  # between the columns of a table


@dataclasses.dataclass(frozen=True)
class TensorCheck:
    """One gradient ("dw1", "x", ...) judged against its references.

    ``manual``: the manual gradient against the reference: the float64 tape over the
    whole tensor, or without a tape the finite differences on the compared coordinates.
    ``tape32``: the float32 tape against the float64 one. ``fd_manual``/``fd_tape``: the
    manual and the tape against the finite differences on the ``fd_count`` sampled
    coordinates that are comparable (``fd_not_comparable`` of them across a kink).
    ``kinks``: the one-sided and directional tests at kink coordinates; ``departures``:
    coordinates where a valid subgradient differs from TensorFlow's. ``cause``: the
    likely cause of a mismatch; ``cause_equals``: the cause is a tensor the manual one
    equals (one of the caller's candidates), whatever the verdict; ``cause_phrase``: the
    cause is a whole phrase ("does not scale with dout: ..."). ``per_example_norms``:
    each sample's gradient norm.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    verdict: str
    matches: bool
    manual: Comparison | None = None
    tape32: Comparison | None = None
    vote: Vote | None = None
    fd_manual: Comparison | None = None
    fd_tape: Comparison | None = None
    fd_count: int = 0
    fd_not_comparable: int = 0
    kinks: KinkCheck | None = None
    departures: int = 0
    cause: str | None = None
    cause_equals: bool = False
    cause_phrase: bool = False
    per_example_norms: tuple[float, ...] = ()
    point: str = ""  # which input the check ran at, where it ran at several
    note: str = ""  # a line for the table's notes (why a departure from the tape matches)

    @property
    def label(self) -> str:
        return f"{self.name} @ {self.point}" if self.point else self.name

    @property
    def checked(self) -> bool:
        return self.manual is not None and not self.verdict.startswith(NOT_CHECKED)

    def to_dict(self) -> dict:
        def figures(item):
            return None if item is None else item.to_dict()

        out = {
            "name": self.name,
            "point": self.point or None,
            "kind": self.kind,
            "shape": list(self.shape),
            "matches": self.matches,
            "verdict": self.verdict,
            "cause": self.cause,
            "manual_vs_tape64": figures(self.manual),
            "manual_vs_reference": figures(self.manual),
            "tape32_vs_tape64": figures(self.tape32),
            "vote": None if self.vote is None else self.vote.to_dict(),
            "finite_differences": None,
            "kinks": None if self.kinks is None else dataclasses.asdict(self.kinks),
            "subgradient_departures": self.departures,
            "note": self.note or None,
        }
        if self.kind != INTERMEDIATE:
            out["finite_differences"] = {
                "sampled": self.fd_count,
                "not_comparable": self.fd_not_comparable,
                "manual_vs_fd64": figures(self.fd_manual),
                "tape64_vs_fd64": figures(self.fd_tape),
            }
        if self.per_example_norms:
            out["per_example_norms"] = list(self.per_example_norms)
        return out


def left_out(name: str, shape: tuple[int, ...], kind: str = INPUT) -> TensorCheck:
    """An input the backward returns no gradient for: shown, not counted."""
    return TensorCheck(name, kind, tuple(shape), NOT_CHECKED, True)


def judge_tensor(
    name: str,
    kind: str,
    manual: np.ndarray,
    *,
    tape64: np.ndarray | None = None,
    tape32: np.ndarray | None = None,
    probe: Probe | None = None,
    rng: np.random.Generator | None = None,
    fd_samples: int = tol.FD_SAMPLES,
    manual_rtol: float = tol.RTOL_FLOAT64,
    fd_only_rtol: float | None = None,
    atol: float = 0.0,
    counts: Mapping[str, float] | tuple[Quantity, ...] | None = None,
    candidates: Mapping[str, np.ndarray] | None = None,
    rerun: Rerun | None = None,
) -> TensorCheck:
    """Judge ``manual`` against ``tape64`` (whole tensor; ``tape32`` beside it) and
    finite differences of ``probe`` (sampled coordinates), or against the finite
    differences alone: :func:`judge` of the :class:`~tfhybrid.audit.judge_case.Case`
    these arguments make (its docstring says what each one is)."""
    case = Case(
        name,
        kind,
        manual,
        tape64=tape64,
        tape32=tape32,
        probe=probe,
        rng=rng,
        fd_samples=fd_samples,
        manual_rtol=manual_rtol,
        fd_only_rtol=fd_only_rtol,
        atol=atol,
        counts=counts,
        candidates=candidates,
        rerun=rerun,
    )
    return judge(case)


def judge(case: Case) -> TensorCheck:
    """The judge's steps in order; each reads the case and what the earlier ones found."""
    if case.manual.size == 0:
        return TensorCheck(case.name, case.kind, case.shape, f"{NOT_CHECKED}: {EMPTY}", False)
    tape = compare_with_tape(case)  # 1. the whole tensor against the tape
    samples = kinks = None
    if case.probe is not None and not tape.zero:
        samples = sample_differences(case, tape)  # 2. sampled finite differences
        kinks = judge_kinks(case, tape, samples)  # 3. valid subgradients at kinks
        if kinks.judged is None:
            return _on_kinks(case, samples, kinks)
    judged = kinks.judged if kinks is not None else tape.manual
    the_vote = vote_sources(case, tape, samples, kinks)  # 4. the 2-of-3 vote
    matches = the_vote.unanimous if the_vote is not None else judged.matches
    cause = name_cause(case, judged, matches)  # 5. the likely cause of a mismatch
    return _record(case, judged, matches, the_vote, cause, tape, samples, kinks)


def _record(
    case: Case,
    judged: Comparison,
    matches: bool,
    the_vote: Vote | None,
    cause: Cause,
    tape: TapeCheck,
    samples: Samples | None,
    kinks: KinkVerdict | None,
) -> TensorCheck:
    """What the steps found, as one record."""
    found = {}
    if samples is not None:
        found = dict(
            fd_manual=samples.manual,
            fd_tape=samples.tape,
            fd_count=len(samples.indices),
            fd_not_comparable=samples.fd.not_comparable,
            kinks=kinks.check,
            departures=kinks.departures,
        )
    return TensorCheck(
        case.name,
        case.kind,
        case.shape,
        judged.description,
        matches,
        manual=judged,
        tape32=tape.tape32,
        vote=the_vote,
        cause=cause.text,
        cause_equals=cause.equals,
        cause_phrase=cause.phrase,
        note=ZERO_NOTE if tape.zero else "",
        **found,
    )


def _on_kinks(case: Case, samples: Samples, kinks: KinkVerdict) -> TensorCheck:
    """Nothing compared: every sampled coordinate sits on a kink no test could judge."""
    return TensorCheck(
        case.name,
        case.kind,
        case.shape,
        f"{NOT_CHECKED}: {ON_KINKS}",
        False,
        fd_manual=samples.manual,
        fd_count=len(samples.indices),
        fd_not_comparable=samples.fd.not_comparable,
        kinks=kinks.check,
    )


# --- one row per tensor, for every table --------------------------------------------------
HEADER = (
    "tensor",
    "shape",
    "max abs err",
    "rel err",
    "cosine",
    "scale c",
    "worst index",
    "tape32",
    "fd64 (n/nc)",
    "vote",
    "verdict",
)


def row(item: TensorCheck) -> tuple[str, ...]:
    """The table row of one record: figures of the manual against its reference."""
    shape = "x".join(str(d) for d in item.shape) or "scalar"
    m = item.manual
    if m is None or not item.checked:
        fd = f"n/a {item.fd_count}/{item.fd_not_comparable}" if item.fd_count else "-"
        return (item.label, shape, *("-",) * 6, fd, "-", item.verdict)
    if item.kind == INTERMEDIATE or (item.fd_count == 0 and item.fd_manual is None):
        fd = "-"
    else:
        against = item.fd_tape if item.fd_tape is not None else item.fd_manual
        compared = against is not None and against.count
        fd = f"{against.rel_error:.1e}" if compared else "n/a"
        fd = f"{fd} {item.fd_count}/{item.fd_not_comparable}"
    # A gradient zero up to rounding has no direction or scale to compare: "~0" there,
    # where the ratios of two rounding noises would read as an alarm (rel err 1, c 3e6).
    zero = item.note == ZERO_NOTE
    return (
        item.label,
        shape,
        f"{m.max_abs_error:.2e}",
        "~0" if zero else f"{m.rel_error:.1e}",
        "~0" if zero else f"{m.cosine:.7f}",
        "~0" if zero else readable_factor(m.scale),
        str(m.worst_index),
        "-" if item.tape32 is None else f"{item.tape32.rel_error:.1e}",
        fd,
        "-" if item.vote is None else item.vote.summary,
        item.verdict,
    )


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """The rows as text lines, each column padded to its widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [GAP.join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def notes(items: list[TensorCheck]) -> list[str]:
    """Lines under a table: subgradients accepted at kinks, and likely causes."""
    lines = []
    for item in items:
        if item.note:
            lines.append(f"{item.label}: {item.note}")
        elif item.departures and item.kinks is not None and item.manual is not None:
            if item.vote is not None:
                lines.append(
                    f"{item.label}: a valid subgradient; departs from TensorFlow's convention "
                    f"at {item.departures} coordinate(s) where the function has no "
                    f"derivative (checked by one-sided and directional differences)"
                )
            else:
                lines.append(
                    f"{item.label}: {item.departures} coordinate(s) sit on a kink; judged by "
                    "one-sided and directional differences (a valid subgradient)"
                )
        if item.cause and not item.matches:
            lines.append(f"likely cause: {item.label} {cause_text(item)}")
    return lines


def cause_text(item: TensorCheck) -> str:
    """What follows a tensor's name on a "likely cause:" line: "is off by 1/400 = ..." (a
    factor), "equals the true gradient rotated ..." or a whole phrase ("does not scale
    with dout: ...")."""
    if item.cause_phrase:
        return str(item.cause)
    if item.verdict.startswith((FACTOR, SIGN)) and not item.cause_equals:
        return f"is off by {item.cause}"
    return f"equals {item.cause}"
