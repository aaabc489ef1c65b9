"""The update check: one SGD step with the manual gradients against the same step
taken with the tape's gradients, both from the same weights."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhybrid.optimizers import SGD


@dataclasses.dataclass(frozen=True)
class UpdateCheck:
    """Per parameter: the largest difference between the two stepped weights, and the
    difference allowed (rtol x the step's size, plus two float spacings of the weight)."""

    lr: float
    max_difference: dict[str, float]
    allowed: dict[str, float]
    settings: dict[str, str]  # the model settings the step was taken with

    @property
    def failing(self) -> list[str]:
        return [k for k, diff in self.max_difference.items() if not diff <= self.allowed[k]]

    @property
    def passed(self) -> bool:
        return not self.failing

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "failing": self.failing, "passed": self.passed}


def update_check(
    model,
    x: np.ndarray,
    y: np.ndarray,
    tape_grads: dict[str, np.ndarray],
    lr: float,
    rtol: float,
    settings: dict[str, str],
    rounding_only: frozenset[str] = frozenset(),
) -> UpdateCheck:
    """Step ``model`` as training does (loss_and_gradients, then SGD.update on its params),
    read the weights and put the old ones back; step a copy with ``tape_grads``; compare.

    The step works on copies of the weights, so arrays shared with another model (or
    the caller) are never changed. ``rounding_only``: parameters whose true gradient is
    zero up to rounding (a bias before batch norm): both steps are rounding noise, and
    differ by up to lr x the two gradients' sizes.
    """
    before = model.params
    optimizer = SGD(lr)
    model.params = {k: np.array(v, copy=True) for k, v in before.items()}
    try:
        optimizer.update(model.params, model.loss_and_gradients(x, y)["grads"])
        manual = {k: np.array(v, copy=True) for k, v in model.params.items()}
    finally:
        model.params = before
    taped = {k: np.array(v, copy=True) for k, v in before.items()}
    optimizer.update(taped, tape_grads)
    max_difference, allowed = {}, {}
    for key, weights in taped.items():
        diff = np.abs(manual[key].astype(np.float64) - weights.astype(np.float64))
        step = lr * float(np.abs(tape_grads[key]).max(initial=0))
        spacing = float(np.spacing(np.abs(weights).max(initial=0).astype(weights.dtype)))
        max_difference[key] = float(diff.max(initial=0))
        allowed[key] = rtol * step + 2 * spacing
        if key in rounding_only:
            moved = np.abs(manual[key].astype(np.float64) - before[key].astype(np.float64))
            allowed[key] += step + float(moved.max(initial=0))
    return UpdateCheck(
        lr=lr, max_difference=max_difference, allowed=allowed, settings=dict(settings)
    )
