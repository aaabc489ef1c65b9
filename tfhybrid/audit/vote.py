"""The 2-of-3 vote: three sources of one gradient, which of them is the odd one out."""

from __future__ import annotations

import dataclasses
import itertools

ALL_AGREE = "all agree"
NONE_AGREE = "no two agree"
# Two pairs agree and the third does not (a ~ b, b ~ c, but not a ~ c): b sits between
# a and c, each within tolerance of it; no single source can be called wrong.
INCONSISTENT = "inconsistent"


@dataclasses.dataclass(frozen=True)
class Vote:
    """``agree[i]`` says whether the pair ``pairs[i]`` of ``sources`` matched."""

    sources: tuple[str, str, str]
    pairs: tuple[tuple[str, str], ...]
    agree: tuple[bool, ...]

    @property
    def odd_one_out(self) -> str | None:
        """The one source the other two outvote, if exactly one pair agrees."""
        agreeing = [pair for pair, ok in zip(self.pairs, self.agree, strict=True) if ok]
        if len(agreeing) != 1:
            return None
        return next(s for s in self.sources if s not in agreeing[0])

    @property
    def unanimous(self) -> bool:
        return all(self.agree)

    @property
    def summary(self) -> str:
        if self.unanimous:
            return ALL_AGREE
        if self.odd_one_out is not None:
            return f"odd one out: {self.odd_one_out}"
        return NONE_AGREE if not any(self.agree) else INCONSISTENT

    def to_dict(self) -> dict:
        return {
            "sources": list(self.sources),
            "agree": {f"{a} ~ {b}": ok for (a, b), ok in zip(self.pairs, self.agree, strict=True)},
            "odd_one_out": self.odd_one_out,
            "summary": self.summary,
        }


def vote(sources: tuple[str, str, str], agree: dict[tuple[str, str], bool]) -> Vote:
    """``agree`` maps each unordered pair of ``sources`` (in either order) to match or not."""
    pairs = tuple(itertools.combinations(sources, 2))
    flags = []
    for a, b in pairs:
        if (a, b) in agree:
            flags.append(bool(agree[(a, b)]))
        elif (b, a) in agree:
            flags.append(bool(agree[(b, a)]))
        else:
            raise ValueError(f"vote needs whether {a} and {b} agree; got pairs {sorted(agree)}")
    return Vote(sources=tuple(sources), pairs=pairs, agree=tuple(flags))


def unanimous(sources: tuple[str, str, str]) -> Vote:
    """The vote of three sources that all agree (where the audit has established it by
    other means: a gradient zero up to rounding, a valid subgradient)."""
    return vote(sources, {pair: True for pair in itertools.combinations(sources, 2)})
