"""One judge for every level: a manual gradient against the tape and finite differences.

``judge_tensor`` is the per-tensor step of :func:`~tfhybrid.audit.check_op`,
:func:`~tfhybrid.audit.check_layer`, :func:`~tfhybrid.audit.audit` (parameters and
intermediates), the per-example audit and the per-layer checks that find the layer at
fault. It returns a :class:`TensorCheck`, whose row :func:`row` formats for every table.

Verdicts: ``match``, ``off by a constant factor C``, ``sign flipped``, ``wrong``,
``not checked`` (the backward returned no gradient for an input: it does not count), and
``not checked: WHY`` (nothing could be compared: never a match). At coordinates where the
function has no derivative, a valid subgradient that departs from TensorFlow's convention
passes (:mod:`tfhybrid.audit.kinks`); the record counts those coordinates.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.causes import candidate_cause, factor_cause, transform_cause
from tfhybrid.audit.compare import (
    FACTOR,
    MATCH,
    SIGN,
    WRONG,
    Comparison,
    compare,
    readable_factor,
    relative_errors,
)
from tfhybrid.audit.finite_diff import central_differences, sample_indices
from tfhybrid.audit.kinks import MAX_KINK_COORDINATES, KinkCheck, check_kinks
from tfhybrid.audit.vote import Vote, unanimous, vote

MANUAL, TAPE32, TAPE64, FD64 = "manual", "tape32", "tape64", "fd64"
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
TRY_HARDER = 4  # when too little was comparable, sample this many times more coordinates
EMPTY = "the tensor is empty"
CLUSTER = 8  # departing coordinates sampled around each seed (a tie group's neighbours)
# A manual gradient within this many times the float32 tape's own rounding error of a
# reference that is zero up to rounding (a bias before batch norm) matches.
NOISE_FACTOR = 10
ZERO_NOTE = "the true gradient is zero up to rounding, and the manual one is as small"
GAP = "  "  # between the columns of a table


@dataclasses.dataclass(frozen=True)
class Probe:
    """How to differentiate a tensor numerically: ``loss_at(values)`` at ``values`` with
    ``values[key]`` moved; the loss is computed in ``dtype`` (float32 code gets a larger
    step and the five-point formula); ``loss_scale``: the size of its rounding."""

    loss_at: Callable[[dict[str, np.ndarray]], float]
    values: Mapping[str, np.ndarray]
    key: str
    loss: float
    dtype: np.dtype = np.dtype(np.float64)
    loss_scale: float | None = None

    @property
    def step(self) -> float:
        return tol.FD_STEP if self.dtype == np.float64 else tol.FD_STEP_FLOAT32


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
    equals (one of the caller's candidates), whatever the verdict. ``per_example_norms``:
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
    counts: Mapping[str, int] | None = None,
    candidates: Mapping[str, np.ndarray] | None = None,
) -> TensorCheck:
    """Judge ``manual`` against ``tape64`` (whole tensor; ``tape32`` beside it) and
    finite differences of ``probe`` (sampled coordinates), or against the finite
    differences alone. ``manual_rtol``: the tolerance for the manual against the tape
    (the precision the manual code computed in); ``fd_only_rtol``: the tolerance when
    the differences are the only reference (default: their own accuracy); ``atol``:
    differences up to this match. ``counts``: the layer's quantities a factor may equal
    (:func:`tfhybrid.audit.causes.quantities`). ``candidates``: {description: array}, the
    gradients a known slip would give (a fork's dx without one path's share); the one a
    mismatching manual gradient equals is its likely cause when no factor or transform
    of the true gradient is."""
    manual = np.asarray(manual, dtype=np.float64)
    shape = tuple(manual.shape)
    if manual.size == 0:
        return TensorCheck(name, kind, shape, f"{NOT_CHECKED}: {EMPTY}", False)
    rng = rng if rng is not None else np.random.default_rng(0)
    vs_tape = (
        _judge_atol(compare(manual, tape64, manual_rtol), atol) if tape64 is not None else None
    )
    t32 = compare(tape32, tape64, tol.RTOL_FLOAT32) if tape32 is not None else None
    finish = functools.partial(
        _finish,
        name,
        kind,
        shape,
        manual=manual,
        tape64=tape64,
        rtol=manual_rtol,
        counts=counts,
        candidates=candidates,
    )
    if _zero_up_to_rounding(vs_tape, t32) or _float32_noise_only(vs_tape, t32, tape64):
        # The true gradient is zero up to rounding (the float32 tape is all rounding error
        # against the float64 one), and the manual one is as small: there is no formula to
        # compare, and each source's rounding noise agrees with the others'.
        judged = dataclasses.replace(vs_tape, verdict=MATCH)
        return finish(judged, t32, unanimous((MANUAL, TAPE32, TAPE64)), note=ZERO_NOTE)
    if probe is None:  # an intermediate: the two tapes vote
        agree = _tape_pairs(manual, tape32, vs_tape, t32, manual_rtol)
        return finish(vs_tape, t32, vote((MANUAL, TAPE32, TAPE64), agree))

    basis = tape64 if tape64 is not None else manual
    scale = 2 * float(np.abs(basis).max(initial=0))
    departing = _departures(manual, tape64, manual_rtol, atol) if tape64 is not None else []
    must = []
    if basis.size:
        must.append(np.unravel_index(int(np.abs(basis).argmax()), shape))
        must.append(
            vs_tape.worst_index
            if vs_tape is not None
            else np.unravel_index(int(np.abs(manual).argmax()), shape)
        )
    if departing:  # some of them sampled: at a kink they may be a valid subgradient
        room = min(MAX_KINK_COORDINATES, max(fd_samples - len(must), 0))
        must += _clustered(departing, rng, room)
    fd, indices = _differences(probe, shape, fd_samples, rng, must, scale)
    if tape64 is None and fd.comparable.sum() < min(tol.MIN_COMPARED, manual.size):
        # Try harder before judging on too little: more coordinates.
        more = min(manual.size, TRY_HARDER * fd_samples)
        if more > len(indices):
            fd, indices = _differences(probe, shape, more, rng, must, scale)
    if tape64 is None and (~fd.comparable).any() and len(indices) < manual.size:
        # Kinks found, and no tape to say where the manual gradient departs: test their
        # neighbours too, so that coordinates sharing a kink (a tie group) are judged
        # together by the directional test.
        kinks_at = [i for i, ok in zip(indices, fd.comparable, strict=True) if not ok]
        near = _neighbours(kinks_at, shape, rng, MAX_KINK_COORDINATES)
        sampled = set(indices)
        extra = [i for i in near if i not in sampled]
        if extra:
            fd, indices = _differences(
                probe, shape, len(indices) + len(extra), rng, [*indices, *extra], scale
            )
    kept = [i for i, ok in zip(indices, fd.comparable, strict=True) if ok]
    kinked = [  # kinks: one-sided slopes that do not depend on the step (a jump's do)
        (i, a, b)
        for i, ok, a, b, a2, b2 in zip(
            indices, fd.comparable, fd.left, fd.right, fd.left2, fd.right2, strict=True
        )
        if not ok and _steady(a, a2, scale) and _steady(b, b2, scale)
    ]
    fd_values = fd.values[fd.comparable]
    fd_rtol = tol.fd_rtol(
        probe.loss if probe.loss_scale is None else probe.loss_scale,
        scale,
        probe.dtype,
        probe.step,
    )
    picked = np.array([manual[i] for i in kept], dtype=np.float64)
    fd_manual = _judge_atol(
        compare(picked, fd_values, max(manual_rtol, fd_rtol), floor_scale=scale), atol
    )
    kink_rtol = max(tol.RTOL_ONE_SIDED, fd_rtol)
    common = dict(fd_count=len(indices), fd_not_comparable=fd.not_comparable)

    if tape64 is None:
        kinks = _kink_check(probe, manual, kinked, kink_rtol, scale)
        compared = len(kept) + kinks.checked
        if compared == 0:
            return TensorCheck(
                name,
                kind,
                shape,
                f"{NOT_CHECKED}: {ON_KINKS}",
                False,
                fd_manual=fd_manual,
                kinks=kinks,
                **common,
            )
        judged = fd_manual
        if fd_only_rtol is not None:
            judged = _judge_atol(
                compare(picked, fd_values, float(fd_only_rtol), floor_scale=scale), atol
            )
        if kept:  # name the worst coordinate in the tensor, not in the sample
            judged = dataclasses.replace(judged, worst_index=kept[judged.worst_index[0]])
        else:
            judged = Comparison(0.0, 0.0, 1.0, 1.0, (), MATCH, 0)
        if kinks.failed and judged.verdict == MATCH:
            judged = dataclasses.replace(judged, verdict=WRONG, worst_index=kinks.failed[0])
        matches = judged.verdict == MATCH
        return finish(
            judged,
            None,
            None,
            fd_manual=fd_manual,
            kinks=kinks if kinks.checked else None,
            departures=kinks.checked if matches and kinks.checked else 0,
            **common,
        )

    kinks = None
    departures = 0
    if departing and not vs_tape.matches:
        away = set(departing)
        smooth = [i for i in kept if i in away]
        at_kinks = [k for k in kinked if k[0] in away]
        if not smooth and at_kinks:
            kinks = _kink_check(probe, manual, at_kinks, kink_rtol, scale)
            if kinks.valid:  # a valid subgradient: departs from TF's convention only
                departures = len(departing)
                vs_tape = dataclasses.replace(vs_tape, verdict=MATCH)
    fd_tape = compare(np.array([tape64[i] for i in kept]), fd_values, fd_rtol, floor_scale=scale)
    if kept:
        sources = (MANUAL, TAPE64, FD64)
        agree = {
            (MANUAL, TAPE64): vs_tape.matches,
            # at kinks the one-sided and directional differences speak for fd64
            (MANUAL, FD64): fd_manual.matches and (kinks is None or kinks.valid),
            (TAPE64, FD64): fd_tape.matches,
        }
    else:  # every sampled step crosses a kink: the two tapes vote instead
        sources = (MANUAL, TAPE32, TAPE64)
        agree = _tape_pairs(manual, tape32, vs_tape, t32, manual_rtol)
        if departures:
            agree[(MANUAL, TAPE32)] = True
    return finish(
        vs_tape,
        t32,
        vote(sources, agree),
        fd_manual=fd_manual,
        fd_tape=fd_tape,
        kinks=kinks,
        departures=departures,
        **common,
    )


def _finish(
    name, kind, shape, judged, t32, the_vote, *, manual, tape64, rtol, counts, candidates, **extra
) -> TensorCheck:
    matches = the_vote.unanimous if the_vote is not None else judged.verdict == MATCH
    cause, equals = None, False
    if not matches:
        if judged.verdict in (FACTOR, SIGN):
            cause = factor_cause(judged.scale, counts or {})
        elif judged.verdict == WRONG and tape64 is not None:
            cause = transform_cause(manual, tape64, max(rtol, tol.RTOL_FLOAT32))
        if cause is None and candidates and tape64 is not None:
            cause = candidate_cause(manual, tape64, candidates, max(rtol, tol.RTOL_FLOAT32))
            equals = cause is not None
    return TensorCheck(
        name,
        kind,
        shape,
        judged.description,
        matches,
        manual=judged,
        tape32=t32,
        vote=the_vote,
        cause=cause,
        cause_equals=equals,
        **extra,
    )


def _differences(probe: Probe, shape, count, rng, must, scale):
    indices = sample_indices(shape, count, rng, must=tuple(must))
    fd = central_differences(
        probe.loss_at,
        dict(probe.values),
        probe.key,
        indices,
        tol.RTOL_FINITE_DIFF if probe.dtype == np.float64 else tol.RTOL_FLOAT32,
        scale=scale,
        step=probe.step,
        eps=float(np.finfo(probe.dtype).eps),
        loss_scale=probe.loss_scale,
        fourth_order=probe.dtype != np.float64,
    )
    return fd, indices


def _zero_up_to_rounding(vs_tape: Comparison | None, t32: Comparison | None) -> bool:
    """The reference is below float32's resolution (its float32 tape does not match its
    float64 tape) and the manual gradient is within NOISE_FACTOR of that rounding."""
    if vs_tape is None or t32 is None or vs_tape.matches or t32.matches:
        return False
    return vs_tape.max_abs_error <= NOISE_FACTOR * t32.max_abs_error


def _float32_noise_only(vs_tape, t32, tape64) -> bool:
    """The manual gradient matches the float64 tape, and the whole reference is below
    float32's resolution (a bias before batch norm, whose true gradient is 0): the float32
    tape is rounding noise only, and disagrees with both without saying anything."""
    if vs_tape is None or t32 is None or not vs_tape.matches or t32.matches:
        return False
    return float(np.abs(tape64).max(initial=0)) <= NOISE_FACTOR * t32.max_abs_error


def _clustered(departing: list, rng: np.random.Generator, room: int) -> list:
    """Up to ``room`` departing coordinates, in clusters: a random seed and its nearest
    departing neighbours (by index distance), then another seed. Coordinates that share a
    kink (the tied maxima of a window) sit side by side, and the directional test needs
    two or more of one group together; scattered picks would hardly ever hold two."""
    if len(departing) <= room:
        return list(departing)
    where = np.array(departing)
    chosen: dict[tuple, None] = {}
    for seed in rng.permutation(len(departing)):
        if len(chosen) >= room:
            break
        distance = np.abs(where - where[seed]).sum(axis=1)
        for k in np.argsort(distance, kind="stable")[:CLUSTER]:
            chosen.setdefault(tuple(int(v) for v in where[k]), None)
            if len(chosen) >= room:
                break
    return list(chosen)


def _neighbours(seeds: list, shape: tuple, rng: np.random.Generator, room: int) -> list:
    """Up to ``room`` coordinates: each seed with its CLUSTER nearest neighbours (±1 along
    each axis, nearest first), seeds in random order."""
    steps = sorted(itertools.product((-1, 0, 1), repeat=len(shape)), key=lambda d: sum(map(abs, d)))
    chosen: dict[tuple, None] = {}
    for k in rng.permutation(len(seeds)):
        taken = 0
        for step in steps:
            cell = tuple(int(a + b) for a, b in zip(seeds[k], step, strict=True))
            if all(0 <= c < n for c, n in zip(cell, shape, strict=True)):
                chosen.setdefault(cell, None)
                taken += 1
            if taken >= CLUSTER or len(chosen) >= room:
                break
        if len(chosen) >= room:
            break
    return list(chosen)


def _steady(slope: float, wider: float, scale: float) -> bool:
    """A one-sided slope measured over h and 2h is the same slope (not a jump over h)."""
    return abs(slope - wider) <= 0.1 * max(abs(slope) + abs(wider), tol.REL_ERROR_FLOOR * scale)


def _kink_check(probe: Probe, manual, kinked, rtol, scale) -> KinkCheck:
    if not kinked:
        return KinkCheck(0, 0, (), 0.0)
    coords = [k[0] for k in kinked]
    left = np.array([k[1] for k in kinked])
    right = np.array([k[2] for k in kinked])
    return check_kinks(
        probe.loss_at,
        dict(probe.values),
        probe.key,
        manual,
        coords,
        left,
        right,
        probe.step,
        rtol,
        scale,
    )


def _departures(manual, tape64, rtol, atol) -> list[tuple[int, ...]]:
    """Coordinates where the manual gradient and the tape differ beyond tolerance."""
    rel = relative_errors(manual, tape64)
    bad = rel > rtol
    if atol:
        bad &= np.abs(manual - tape64) > atol
    return [tuple(int(i) for i in idx) for idx in np.argwhere(bad)]


def _judge_atol(item: Comparison, atol: float) -> Comparison:
    """A comparison whose every difference is within ``atol`` matches."""
    if atol and item.verdict != MATCH and item.max_abs_error <= atol:
        return dataclasses.replace(item, verdict=MATCH)
    return item


def _tape_pairs(manual, ref32, vs_tape, t32, rtol) -> dict:
    """The pairs of the vote among manual, tape32 and tape64 (no finite differences)."""
    return {
        (MANUAL, TAPE64): vs_tape.matches,
        (MANUAL, TAPE32): compare(manual, ref32, max(rtol, tol.RTOL_FLOAT32)).matches,
        (TAPE32, TAPE64): t32.matches,
    }


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
    factor) or "equals the true gradient rotated ..."."""
    if item.verdict.startswith((FACTOR, SIGN)) and not item.cause_equals:
        return f"is off by {item.cause}"
    return f"equals {item.cause}"
