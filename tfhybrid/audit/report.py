"""The audit's result as data: one record per tensor, the loss and update checks."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tfhybrid.audit.judge import (
    FD64,
    INTERMEDIATE,
    MANUAL,
    PARAMETER,
    PER_EXAMPLE,
    TAPE32,
    TAPE64,
    TensorCheck,
)
from tfhybrid.audit.update import UpdateCheck

if TYPE_CHECKING:  # for the hints only: the page's modules load when a page is drawn
    from tfhybrid.audit.html import BackwardPage, Caps

__all__ = [
    "FD64",
    "INTERMEDIATE",
    "MANUAL",
    "PARAMETER",
    "PER_EXAMPLE",
    "TAPE32",
    "TAPE64",
    "AuditReport",
    "LossCheck",
    "TensorAudit",
]

# One gradient ("dw1", "dz2", ...) from its sources: the record every level shares.
TensorAudit = TensorCheck


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
    # Each layer's own backward and its status (tfhybrid.audit.layers.LayerVerdict).
    layers: list = dataclasses.field(default_factory=list)
    # Per-example records (audit(..., per_example=True)) and each sample's gradient norm
    # per parameter.
    per_example: list[TensorCheck] = dataclasses.field(default_factory=list)
    per_example_norms: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    # source ("manual", "tape32", "tape64") -> name ("dw1", ...) -> the whole gradient;
    # kept for plots, left out of to_dict() (which holds figures, not tensors).
    gradients: dict[str, dict[str, np.ndarray]] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )
    # Why no gradient could be judged (a forward that draws fresh random numbers).
    problem: str = ""
    # What the backward-pass page recomputes its pictures from (the network, the batch,
    # the weights, state and draw audited: tfhybrid.audit.page.source.PageSource); None
    # for a report built otherwise. Left out of to_dict(), like the gradients.
    source: object = dataclasses.field(default=None, repr=False, compare=False)

    def tensor(self, name: str) -> TensorCheck:
        for item in (*self.tensors, *self.per_example):
            if item.name == name:
                return item
        raise KeyError(f"no tensor {name!r} in the report; it has {self.names}")

    @property
    def names(self) -> list[str]:
        """Every name a mismatch can carry (what ``--expect`` accepts)."""
        return [t.name for t in (*self.tensors, *self.per_example)] + ["loss", "update"]

    @property
    def mismatches(self) -> list[str]:
        found = [t.name for t in (*self.tensors, *self.per_example) if not t.matches]
        if not self.loss.matches:
            found.append("loss")
        # A stepped weight differs from the tape's step where its gradient is expected, or
        # departs from the tape only as a valid subgradient or as rounding of a zero
        # gradient (it matches, with departures or a note saying why).
        accepted = {t.name for t in self.tensors if t.matches and (t.departures or t.note)}
        unexplained = [k for k in self.update.failing if f"d{k}" not in (*self.expected, *accepted)]
        if unexplained:
            found.append("update")
        return found

    @property
    def unexpected(self) -> list[str]:
        """Mismatches not expected; "db1:per-example" and "db1:sum" are expected with db1."""
        return [
            name
            for name in self.mismatches
            if name not in self.expected and name.split(":")[0] not in self.expected
        ]

    @property
    def ok(self) -> bool:
        """Everything matches, or only the expected names do not; never when nothing
        could be judged (``problem``)."""
        return not self.problem and not self.unexpected

    @property
    def layer_at_fault(self):
        """The first layer in backward order whose own backward is wrong, or None."""
        return next((v for v in self.layers if v.status == "at fault"), None)

    def to_html(
        self,
        path: str | os.PathLike | None = None,
        caps: Caps | None = None,
        title: str | None = None,
    ) -> str:
        """The backward-pass page of this audit as one self-contained HTML string, also
        written to ``path`` when given (:mod:`tfhybrid.audit.html`). ``caps``: a
        :class:`tfhybrid.audit.html.Caps` (samples, channels, matrix rows kept; default:
        as many as keep the page small); ``title``: the network's name on the page."""
        from tfhybrid.audit.html import render_html

        text = render_html(self, caps, title)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def page(self, caps: Caps | None = None) -> BackwardPage:
        """The backward-pass page, displayed inline when a notebook shows it (a
        :class:`tfhybrid.audit.html.BackwardPage`; ``.save(path)`` writes it)."""
        from tfhybrid.audit.html import BackwardPage

        return BackwardPage(self, caps)

    def __str__(self) -> str:
        from tfhybrid.audit.table import format_table

        return format_table(self)

    def to_dict(self) -> dict:
        fault = self.layer_at_fault
        return {
            "model": self.model,
            "settings": self.settings,
            "batch": self.batch,
            "ok": self.ok,
            "problem": self.problem or None,
            "expected": list(self.expected),
            "mismatches": self.mismatches,
            "unexpected": self.unexpected,
            "loss": self.loss.to_dict(),
            "update": self.update.to_dict(),
            "tolerances": self.tolerances,
            "notes": self.notes,
            "tensors": [t.to_dict() for t in self.tensors],
            "layer_at_fault": None if fault is None else fault.index,
            # where it is: "3 (Residual, output res3) > block > 1 (Conv2D)" inside a composite
            "layer_at_fault_where": None if fault is None else fault.describe(),
            "layers": [v.to_dict() for v in self.layers],
            "per_example": [t.to_dict() for t in self.per_example],
            "per_example_norms": self.per_example_norms,
        }
