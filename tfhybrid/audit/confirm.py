"""Likely causes tested before they are printed: the check run again where it can.

A factor can equal a count of the layer by the shapes the check happened to use: a bias
added once per kernel tap is off by 1/18 = 1/(3x3x2), which is also N*Ho*Wo = 2x3x3 at a
batch of 2 and 3x3 outputs. So a factor-based cause is confirmed at a second shape (the
check run again on inputs of another batch and size): a count the factor follows there
(a mean over the batch: 1/N at both) is printed as it always was; one it does not follow
is dropped; and where the check could not vary the shapes, or the factor stays with a
count the check did not vary, the line says "unconfirmed" and lists every count the
factor equals. A backward that ignores its upstream gradient is caught by doubling dout.

The check is run again only when a cause asks for it (a mismatch whose factor equals a
count, or any mismatch for the doubled dout), once per check, and the second shape's check
itself names no cause that needs a third.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from tfhybrid.audit.causes import RTOL_FACTOR, Quantity, matching, named
from tfhybrid.audit.compare import FACTOR, MATCH, SIGN, compare, readable_factor

IGNORES_UPSTREAM = (
    "does not scale with dout: the backward ignores its upstream gradient (doubling dout "
    "leaves it unchanged; multiply by dout)"
)
COULD_NOT_VARY = "the check could not vary the shapes"
FAILED_ELSEWHERE = f"{COULD_NOT_VARY} (the code failed at every other shape tried)"
NO_LAYERS = f"{COULD_NOT_VARY} (its layer was not checked on its own)"
NOT_NAMED_BY_ITS_LAYER = "its layer's own check, off by the same factor, names no count"
NOT_ITS_LAYERS = (
    "its layer's own backward is not off by it (fed the true upstream gradient), so it "
    "comes from the layers above"
)


class SecondShape:
    """The check run again at another shape: each tensor's factor there (``scales``:
    1 for a match, None for no constant factor), the counts there, and ``where`` it ran
    ("x [3,10,10,2]")."""

    def __init__(self, scales: Mapping[str, float | None], counts, where: str):
        self.scales, self.counts, self.where = dict(scales), tuple(counts), where


class Rerun:
    """What a check can run again to test a likely cause, each at most once and only when
    a cause asks: ``doubled()``, the backward's gradients for dout doubled ({name:
    gradient}); ``second()``, the check at a second shape (a :class:`SecondShape`, or
    why there is none). ``why_not``: why, when there is no ``second``."""

    def __init__(
        self,
        doubled: Callable[[], Mapping[str, np.ndarray]] | None = None,
        second: Callable[[], SecondShape | str] | None = None,
        why_not: str = COULD_NOT_VARY,
    ):
        self._doubled, self._second, self.why_not = doubled, second, why_not
        self._found: dict[str, object] = {}

    def _once(self, what: str, run: Callable[[], object]) -> object:
        if what not in self._found:
            self._found[what] = run()
        return self._found[what]

    def ignores_upstream(self, name: str, manual: np.ndarray, rtol: float) -> bool:
        """Whether ``name``'s gradient stays the same when dout doubles (a correct one
        doubles: every gradient is linear in dout)."""
        if self._doubled is None or not np.abs(manual).max(initial=0) > 0:
            return False
        doubled = self._once("doubled", lambda: _quietly(self._doubled))
        if not isinstance(doubled, Mapping) or name not in doubled:
            return False
        again = np.asarray(doubled[name], dtype=np.float64)
        return again.shape == manual.shape and compare(again, manual, rtol).matches

    def factor_cause(self, name: str, scale: float, counts: tuple[Quantity, ...]) -> str | None:
        """The likely cause of ``name`` off by ``scale``: confirmed at the second shape
        (:func:`confirmed_factor`), else unconfirmed with every count it equals."""
        if not matching(scale, counts):
            return None  # no candidate: nothing to run again for
        second = self.why_not
        if self._second is not None:
            second = self._once("second", self._second)
        return confirmed_factor(name, scale, counts, second)


class Borrowed(Rerun):
    """A network tensor's causes, from its layer's own check (``record``: that layer's
    record of the same tensor, None when the layer was not checked on its own): the
    layer's own backward, fed the true upstream gradient, is where a factor is made."""

    def __init__(self, record, why_not: str = NO_LAYERS):
        super().__init__(why_not=why_not)
        self.record = record

    def ignores_upstream(self, name: str, manual: np.ndarray, rtol: float) -> bool:
        record = self.record
        return record is not None and not record.matches and record.cause == IGNORES_UPSTREAM

    def factor_cause(self, name: str, scale: float, counts: tuple[Quantity, ...]) -> str | None:
        matched = matching(scale, counts)
        if not matched:
            return None
        record = self.record
        if record is None:
            return unconfirmed(scale, matched, self.why_not)
        own = record.manual
        same = (
            own is not None
            and not record.matches
            and record.verdict.startswith((FACTOR, SIGN))
            and abs(own.scale / scale - 1) <= RTOL_FACTOR
        )
        if not same:
            return unconfirmed(scale, matched, NOT_ITS_LAYERS)
        if record.cause and not record.cause_equals and not record.cause_phrase:
            return record.cause  # the layer's own cause, confirmed there where it could be
        return unconfirmed(scale, matched, NOT_NAMED_BY_ITS_LAYER)


def confirmed_factor(
    name: str, scale: float, counts: tuple[Quantity, ...], second: SecondShape | str
) -> str | None:
    """The cause of ``name`` off by ``scale`` among ``counts``, told by ``second``.

    Printed as before ("1/400 = 1/Ho*Wo (20x20 output positions)"): the counts the
    factor follows to the second shape, where they changed. Unconfirmed, with every
    count it equals: no second shape (``second`` says why), or the factor stays with
    counts the check did not vary, or it moves in a way none follows. A factor that stays
    while every count it equals changed is a constant, not a count."""
    matched = matching(scale, counts)
    if not matched:
        return None
    if isinstance(second, str):
        return unconfirmed(scale, matched, second)
    there = {q.key: q for q in second.counts}
    other = second.scales.get(name)
    followed, fixed = [], []
    for q, inverse in matched:
        q2 = there.get(q.key)
        if other is None or q2 is None or not _equals(other, scale, q2.value, inverse):
            continue
        (followed if q2.value != q.value else fixed).append((q, inverse))
    if followed:
        sign = "the sign flipped and " if scale < 0 else ""
        return f"{sign}{readable_factor(scale)} = " + " or ".join(named(followed))
    moved = [q.key for q, _ in matched if q.key in there and there[q.key].value != q.value]
    if other is not None and np.sign(other) == np.sign(scale) and _close(other, scale):
        factor = readable_factor(scale)
        if fixed:  # it stays with counts the second shape did not change
            them = "it" if len(fixed) == 1 else "them"
            ruled = f"; {_listed(moved)} ruled out" if moved else ""
            reason = f"the check cannot vary {them} (it stays {factor} at {second.where}{ruled})"
            return unconfirmed(scale, fixed, reason)
        if not moved:  # the counts it equals are not the layer's there
            return unconfirmed(scale, matched, f"at {second.where} it stays {factor}")
        return (
            f"{factor} at every shape tried (also {second.where}, where {_listed(moved)} "
            f"change{'s' if len(moved) == 1 else ''}): a constant, not a count of the layer "
            "(a number written into the code)"
        )
    found = "no constant factor" if other is None else readable_factor(other)
    return unconfirmed(
        scale, matched, f"at {second.where} it is {found}, which none of them follows"
    )


def unconfirmed(scale: float, matched: list[tuple[Quantity, bool]], reason: str) -> str:
    """ "1/18: equals 1/N*Ho*Wo (2x3x3) and 1/kh*kw*C (...); unconfirmed: REASON"."""
    sign = "the sign flipped and " if scale < 0 else ""
    listed = _listed(named(matched))
    return f"{sign}{readable_factor(scale)}: equals {listed}; unconfirmed: {reason}"


def second_shape(
    points: Callable[[], Iterable[tuple[dict[str, np.ndarray], str]]],
    check: Callable[[dict[str, np.ndarray]], object],
    counts_at: Callable[[dict[str, np.ndarray]], tuple[Quantity, ...]],
) -> Callable[[], SecondShape | str]:
    """The check at the first of ``points`` (inputs at other shapes, each with how to name
    it) the code runs at: ``check(values)`` gives its report (an ``OpReport``),
    ``counts_at(values)`` its counts there. Run on the first call only: the checks of
    several points of one layer share it."""
    found: list[SecondShape | str] = []

    def run() -> SecondShape | str:
        if not found:
            found.append(_run())
        return found[0]

    def _run() -> SecondShape | str:
        try:
            tried = list(points())
        except Exception:  # the user's make_inputs: no second shape, said so
            return f"{COULD_NOT_VARY} (make_inputs failed)"
        for values, where in tried:
            try:
                report = check(values)
                counts = counts_at(values)
            except Exception:  # the code does not run at this shape: try the next
                continue
            return SecondShape({item.name: _factor(item) for item in report.inputs}, counts, where)
        return FAILED_ELSEWHERE

    return run


def other_shapes(x_shape: tuple[int, ...], channels: bool = True) -> list[tuple[int, ...]]:
    """Input shapes to confirm a cause at, for an input [N, ..., C], in the order tried:
    one more sample; every axis but the last halved (when even: cheaper) or doubled (the
    image size); with ``channels``, one more channel first, then the same without; then
    the batch alone. A layer that runs at none of them leaves its causes unconfirmed."""
    n, *rest = (int(d) for d in x_shape)
    if not rest:
        return [(n + 1,)]
    sizes = rest[:-1]
    spatial = [[d // 2 for d in sizes]] if all(d % 2 == 0 for d in sizes) else []
    spatial.append([2 * d for d in sizes])
    last = [rest[-1] + 1, rest[-1]] if channels else [rest[-1]]
    shapes = [(n + 1, *s, c) for c in last for s in spatial] + [(n + 1, *rest)]
    return list(dict.fromkeys(shapes))


def shape_text(values: Mapping[str, np.ndarray]) -> str:
    """ "x [3,10,10,2]": the input that names a second shape ("x", else the first)."""
    key = "x" if "x" in values else next(iter(values))
    return f"{key} [{','.join(map(str, np.shape(values[key])))}]"


def _factor(item) -> float | None:
    """A record's factor: its scale when off by one (or sign flipped), 1 for a match."""
    if item.manual is None:
        return None
    if item.verdict == MATCH:
        return 1.0
    if item.verdict.startswith((FACTOR, SIGN)):
        return float(item.manual.scale)
    return None


def _close(a: float, b: float) -> bool:
    return abs(a / b - 1) <= RTOL_FACTOR


def _equals(other: float, scale: float, value: float, inverse: bool) -> bool:
    """Whether the factor ``other`` is ``value`` there as ``scale`` was here (k or 1/k,
    the same sign)."""
    if np.sign(other) != np.sign(scale):
        return False
    size = abs(other)
    return abs(size * value - 1) <= RTOL_FACTOR if inverse else abs(size / value - 1) <= RTOL_FACTOR


def _listed(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]


def _quietly(run: Callable[[], object]) -> object:
    """``run()``, or None when the user's code fails on this second call."""
    try:
        return run()
    except Exception:
        return None
