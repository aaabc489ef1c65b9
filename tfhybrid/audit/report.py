"""The audit's result as data: one record per tensor, the loss and update checks."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhybrid.audit.compare import Comparison
from tfhybrid.audit.update import UpdateCheck
from tfhybrid.audit.vote import Vote

PARAMETER = "parameter"
INTERMEDIATE = "intermediate"
MANUAL, TAPE32, TAPE64, FD64 = "manual", "tape32", "tape64", "fd64"


@dataclasses.dataclass(frozen=True)
class TensorAudit:
    """One gradient ("dw1", "dz2", ...) from its three sources.

    ``manual``: the manual gradient against the reference (tape64), the whole tensor.
    ``tape32``: the float32 tape against the reference. For parameters, ``fd_manual`` and
    ``fd_tape`` compare the manual and the reference with the finite differences on the
    sampled coordinates that are comparable (``fd_count`` sampled, ``fd_not_comparable``
    of them across a kink). The vote is among manual, tape64 and fd64 for a parameter,
    manual, tape32 and tape64 for an intermediate (no finite differences there) and for
    a parameter none of whose sampled coordinates is comparable.
    """

    name: str
    kind: str  # PARAMETER or INTERMEDIATE
    shape: tuple[int, ...]
    manual: Comparison
    tape32: Comparison
    vote: Vote
    fd_manual: Comparison | None = None
    fd_tape: Comparison | None = None
    fd_count: int = 0
    fd_not_comparable: int = 0

    @property
    def matches(self) -> bool:
        """True when the three sources agree."""
        return self.vote.unanimous

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "matches": self.matches,
            "verdict": self.manual.description,
            "manual_vs_tape64": self.manual.to_dict(),
            "tape32_vs_tape64": self.tape32.to_dict(),
            "vote": self.vote.to_dict(),
            "finite_differences": None,
        }
        if self.kind == PARAMETER:
            out["finite_differences"] = {
                "sampled": self.fd_count,
                "not_comparable": self.fd_not_comparable,
                "manual_vs_fd64": self.fd_manual.to_dict() if self.fd_manual else None,
                "tape64_vs_fd64": self.fd_tape.to_dict() if self.fd_tape else None,
            }
        return out


@dataclasses.dataclass(frozen=True)
class LossCheck:
    """The manual loss against the reference_forward loss (the tapes differentiate it)."""

    manual: float
    tape32: float
    tape64: float
    rel_error: float  # |manual - tape64| / (|manual| + |tape64|)
    rtol: float

    @property
    def matches(self) -> bool:
        return self.rel_error <= self.rtol

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "matches": self.matches}


@dataclasses.dataclass(frozen=True)
class AuditReport:
    """Everything the audit measured; ``to_dict()`` is what ``--json`` writes.

    Mismatch names: a tensor's name ("db1") when its sources disagree; "loss"; "update"
    when a stepped weight differs and its gradient is not itself an expected mismatch.
    """

    model: str
    settings: dict[str, str]
    batch: int
    tensors: list[TensorAudit]
    loss: LossCheck
    update: UpdateCheck
    tolerances: dict[str, float]
    notes: list[str]
    expected: tuple[str, ...] = ()
    # source ("manual", "tape32", "tape64") -> name ("dw1", ...) -> the whole gradient;
    # kept for plots, left out of to_dict() (which holds figures, not tensors).
    gradients: dict[str, dict[str, np.ndarray]] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )

    def tensor(self, name: str) -> TensorAudit:
        for item in self.tensors:
            if item.name == name:
                return item
        raise KeyError(f"no tensor {name!r} in the report; it has {self.names}")

    @property
    def names(self) -> list[str]:
        """Every name a mismatch can carry (what ``--expect`` accepts)."""
        return [t.name for t in self.tensors] + ["loss", "update"]

    @property
    def mismatches(self) -> list[str]:
        found = [t.name for t in self.tensors if not t.matches]
        if not self.loss.matches:
            found.append("loss")
        unexplained = [k for k in self.update.failing if f"d{k}" not in self.expected]
        if unexplained:
            found.append("update")
        return found

    @property
    def unexpected(self) -> list[str]:
        return [name for name in self.mismatches if name not in self.expected]

    @property
    def ok(self) -> bool:
        """Everything matches, or only the expected names do not."""
        return not self.unexpected

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "settings": self.settings,
            "batch": self.batch,
            "ok": self.ok,
            "expected": list(self.expected),
            "mismatches": self.mismatches,
            "unexpected": self.unexpected,
            "loss": self.loss.to_dict(),
            "update": self.update.to_dict(),
            "tolerances": self.tolerances,
            "notes": self.notes,
            "tensors": [t.to_dict() for t in self.tensors],
        }
