"""Step 2 of the judge: sample the finite differences and compare the manual gradient with
them.

Finite differences cost four losses a coordinate, so a tensor is sampled: its largest
reference element, its worst departure from the tape, the departing coordinates in
clusters (coordinates that share a kink sit side by side), then random ones. Each sampled
coordinate is either comparable (the loss is smooth over the stencil) or sits on a kink
(:mod:`tfhybrid.audit.finite_diff`); the kinks go on to :mod:`tfhybrid.audit.judge_kinks`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.compare import MATCH, Comparison, compare, with_atol
from tfhybrid.audit.finite_diff import FiniteDifferences, central_differences, sample_indices
from tfhybrid.audit.judge_case import Case, Probe
from tfhybrid.audit.judge_tape import TapeCheck
from tfhybrid.audit.kinks import MAX_KINK_COORDINATES

TRY_HARDER = 4  # when too little was comparable, sample this many times more coordinates
CLUSTER = 8  # departing coordinates sampled around each seed (a tie group's neighbours)

Index = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Samples:
    """The finite differences at ``indices`` (``fd``), split into the comparable
    coordinates ``kept`` and the kinks ``kinked``: (coordinate, left slope, right slope)
    where both one-sided slopes are steady. ``scale``: twice the reference's largest
    magnitude (the relative error's floor); ``rtol``: the differences' own tolerance.
    ``manual``/``tape``: the manual gradient and the float64 tape against the differences
    at ``kept`` (``tape`` None without a tape). ``alone``: without a tape, the manual
    against the differences as the only reference, its worst index in the whole tensor."""

    indices: list[Index]
    fd: FiniteDifferences
    kept: list[Index]
    kinked: list[tuple[Index, float, float]]
    scale: float
    rtol: float
    manual: Comparison
    tape: Comparison | None = None
    alone: Comparison | None = None


def sample_differences(case: Case, tape: TapeCheck) -> Samples:
    """Reads ``probe``, ``rng``, ``fd_samples``, the tapes and the tolerances, and the
    tape's departing coordinates.

    Decides which coordinates to sample (with a tape: its largest element, the worst
    departure and clusters of departing ones; without one, more coordinates when too few
    were comparable and the neighbours of each kink, so that a tie group is judged
    together), and whether the manual gradient matches the differences at the larger of
    ``manual_rtol`` and their own tolerance (:func:`tfhybrid.audit.tolerances.fd_rtol`).
    """
    basis = case.tape64 if case.tape64 is not None else case.manual
    scale = 2 * float(np.abs(basis).max(initial=0))
    measure = functools.partial(_measure, case.probe, case.shape, case.rng, scale=scale)
    must = _must(case, tape, basis)
    fd, indices = measure(case.fd_samples, must)
    if case.tape64 is None:
        fd, indices = _widen(case, fd, indices, must, measure)
    return _split(case, fd, indices, scale)


def _must(case: Case, tape: TapeCheck, basis: np.ndarray) -> list[Index]:
    """The coordinates sampled first: where the reference is largest, where the manual
    departs most (or is largest, without a tape), and clusters of departing ones."""
    must = []
    if basis.size:
        must.append(np.unravel_index(int(np.abs(basis).argmax()), case.shape))
        must.append(
            tape.manual.worst_index
            if tape.manual is not None
            else np.unravel_index(int(np.abs(case.manual).argmax()), case.shape)
        )
    if tape.departing:  # some of them sampled: at a kink they may be a valid subgradient
        room = min(MAX_KINK_COORDINATES, max(case.fd_samples - len(must), 0))
        must += clustered(list(tape.departing), case.rng, room)
    return must


def _widen(case: Case, fd, indices, must, measure) -> tuple[FiniteDifferences, list[Index]]:
    """Without a tape: more coordinates when too few were comparable, then each kink's
    neighbours (the tape would have said where the manual departs; here nothing does)."""
    size = case.manual.size
    if fd.comparable.sum() < min(tol.MIN_COMPARED, size):
        # Try harder before judging on too little: more coordinates.
        more = min(size, TRY_HARDER * case.fd_samples)
        if more > len(indices):
            fd, indices = measure(more, must)
    if (~fd.comparable).any() and len(indices) < size:
        # Coordinates sharing a kink (a tie group) are judged together by the
        # directional test, so the neighbours of each kink are sampled too.
        kinks_at = [i for i, ok in zip(indices, fd.comparable, strict=True) if not ok]
        near = neighbours(kinks_at, case.shape, case.rng, MAX_KINK_COORDINATES)
        sampled = set(indices)
        extra = [i for i in near if i not in sampled]
        if extra:
            fd, indices = measure(len(indices) + len(extra), [*indices, *extra])
    return fd, indices


def _split(case: Case, fd: FiniteDifferences, indices: list[Index], scale: float) -> Samples:
    """The comparable coordinates and the kinks, and the comparisons on the former."""
    probe = case.probe
    kept = [i for i, ok in zip(indices, fd.comparable, strict=True) if ok]
    kinked = [  # kinks: one-sided slopes that do not depend on the step (a jump's do)
        (i, a, b)
        for i, ok, a, b, a2, b2 in zip(
            indices, fd.comparable, fd.left, fd.right, fd.left2, fd.right2, strict=True
        )
        if not ok and steady(a, a2, scale) and steady(b, b2, scale)
    ]
    values = fd.values[fd.comparable]
    loss = probe.loss if probe.loss_scale is None else probe.loss_scale
    rtol = tol.fd_rtol(loss, scale, probe.dtype, probe.step)
    picked = np.array([case.manual[i] for i in kept], dtype=np.float64)
    manual = with_atol(
        compare(picked, values, max(case.manual_rtol, rtol), floor_scale=scale), case.atol
    )
    common = dict(indices=indices, fd=fd, kept=kept, kinked=kinked, scale=scale, rtol=rtol)
    if case.tape64 is not None:
        tape = np.array([case.tape64[i] for i in kept])
        return Samples(**common, manual=manual, tape=compare(tape, values, rtol, floor_scale=scale))
    alone = manual
    if case.fd_only_rtol is not None:
        alone = with_atol(
            compare(picked, values, float(case.fd_only_rtol), floor_scale=scale), case.atol
        )
    if kept:  # name the worst coordinate in the tensor, not in the sample
        alone = dataclasses.replace(alone, worst_index=kept[alone.worst_index[0]])
    else:
        alone = Comparison(0.0, 0.0, 1.0, 1.0, (), MATCH, 0)
    return Samples(**common, manual=manual, alone=alone)


def _measure(probe: Probe, shape, rng, count, must, *, scale) -> tuple[FiniteDifferences, list]:
    """Central differences at ``count`` coordinates, ``must`` first."""
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


def clustered(departing: list[Index], rng: np.random.Generator, room: int) -> list[Index]:
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


def neighbours(
    seeds: list[Index], shape: tuple[int, ...], rng: np.random.Generator, room: int
) -> list[Index]:
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


def steady(slope: float, wider: float, scale: float) -> bool:
    """A one-sided slope measured over h and 2h is the same slope (not a jump over h)."""
    return abs(slope - wider) <= 0.1 * max(abs(slope) + abs(wider), tol.REL_ERROR_FLOOR * scale)
