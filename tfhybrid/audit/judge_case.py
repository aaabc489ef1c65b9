"""The tensor under judgement: what every step of the judge reads.

:func:`tfhybrid.audit.judge.judge_tensor` packs its arguments into one :class:`Case` and
hands it down the steps (``judge_tape``, ``judge_samples``, ``judge_kinks``,
``judge_vote``, ``judge_cause``), so that a setting is read where it is used, not passed
from function to function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from tfhybrid.audit import tolerances as tol

if TYPE_CHECKING:
    from tfhybrid.audit.causes import Quantity
    from tfhybrid.audit.confirm import Rerun

# The sources of one gradient that the vote weighs against each other.
MANUAL, TAPE32, TAPE64, FD64 = "manual", "tape32", "tape64", "fd64"


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


# eq=False: arrays have no single truth value, and no step compares two cases.
@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One gradient ("dw1", "x", ...) and what it is judged against.

    ``manual``: the gradient under judgement (held in float64). ``tape64``/``tape32``: the
    tape's gradients of the same tensor, if any. ``probe``: how to take finite
    differences (none for an intermediate, which only the tapes judge). ``rng``: draws the
    sampled coordinates (default: seeded with 0, so a report repeats). ``fd_samples``:
    coordinates to sample. ``manual_rtol``: the tolerance for the manual against the tape
    (the precision the manual code computed in); ``fd_only_rtol``: the tolerance when the
    differences are the only reference (default: their own accuracy); ``atol``:
    differences up to this match. ``counts``: the layer's quantities a factor may equal
    (:func:`tfhybrid.audit.causes.layer_quantities`, or {description: value}).
    ``candidates``: {description: array}, the gradients a known slip would give (a fork's
    dx without one path's share). ``rerun``: what the check can run again to test a cause
    (:class:`tfhybrid.audit.confirm.Rerun`: dout doubled, a second shape); without it a
    factor is named after the counts it equals, untested.
    """

    name: str
    kind: str
    manual: np.ndarray
    tape64: np.ndarray | None = None
    tape32: np.ndarray | None = None
    probe: Probe | None = None
    rng: np.random.Generator | None = None
    fd_samples: int = tol.FD_SAMPLES
    manual_rtol: float = tol.RTOL_FLOAT64
    fd_only_rtol: float | None = None
    atol: float = 0.0
    counts: Mapping[str, float] | tuple[Quantity, ...] | None = None
    candidates: Mapping[str, np.ndarray] | None = None
    rerun: Rerun | None = None

    def __post_init__(self) -> None:
        # Frozen: the normalised fields are set once, here, as the judge always did.
        object.__setattr__(self, "manual", np.asarray(self.manual, dtype=np.float64))
        if self.rng is None:
            object.__setattr__(self, "rng", np.random.default_rng(0))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.manual.shape)
