"""``audit(model, x, y)``: the manual gradients against the tape and finite differences."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.compare import TINY, compare
from tfhybrid.audit.finite_diff import central_differences, sample_indices
from tfhybrid.audit.reference import TapeResult, loss_function, tape_gradients
from tfhybrid.audit.report import (
    FD64,
    INTERMEDIATE,
    MANUAL,
    PARAMETER,
    TAPE32,
    TAPE64,
    AuditReport,
    LossCheck,
    TensorAudit,
)
from tfhybrid.audit.update import update_check
from tfhybrid.audit.vote import vote

SETTINGS = ("dtype", "bias_grad", "pool_ties", "dw_mode")  # model attributes recorded when present
FD_NOTE = (
    "finite differences perturb parameters only: intermediates are checked against "
    "the tape in float64 and float32"
)


def audit(
    model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    expect: Iterable[str] = (),
    seed: int = 0,
    fd_samples: int = tol.FD_SAMPLES,
    update_model=None,
    lr: float = tol.UPDATE_LR,
) -> AuditReport:
    """Audit ``model``'s manual gradients on the batch x, one-hot y.

    ``model`` needs ``params`` (dict of NumPy arrays), ``loss_and_gradients(x, y)`` (its
    own training code) and ``reference_forward`` (see :mod:`tfhybrid.audit.reference`).
    ``expect``: names whose mismatch is known (``report.ok`` ignores them). ``seed``
    picks the finite-difference coordinates; ``fd_samples`` how many per parameter.
    ``update_model``: the model whose SGD step (rate ``lr``) is compared with the tape's
    step, with the same weights as ``model`` (default: ``model`` itself).
    """
    params = model.params
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"audit needs a batch x [N,...] and one-hot y [N,K] with N >= 1, "
            f"got x {x.shape} and y {y.shape}"
        )
    if not isinstance(fd_samples, int) or fd_samples < 1:
        raise ValueError(f"fd_samples must be an integer >= 1, got {fd_samples!r}")
    manual = model.loss_and_gradients(x, y)
    dtype = np.result_type(*params.values())
    rtol = tol.rtol_for(dtype)
    tape64 = tape_gradients(model, params, x, y, np.float64)
    tape32 = tape_gradients(model, params, x, y, np.float32)
    _check_intermediates(manual["intermediates"], tape64)

    loss_at = loss_function(model, x, y, np.float64)
    rng = np.random.default_rng(seed)
    tensors = [
        _audit_parameter(
            key,
            manual["grads"][key],
            tape64.grads[key],
            tape32.grads[key],
            loss_at,
            params,
            rng,
            fd_samples,
            rtol,
            tape64.loss,
        )
        for key in params
    ]
    tensors += [
        _audit_intermediate(
            name,
            manual["intermediates"][name],
            tape64.intermediates[name],
            tape32.intermediates[name],
            rtol,
        )
        for name in tape64.intermediates
    ]

    loss = LossCheck(
        manual=float(manual["loss"]),
        tape32=tape32.loss,
        tape64=tape64.loss,
        rel_error=_scalar_rel_error(float(manual["loss"]), tape64.loss),
        rtol=rtol,
    )
    stepper = model if update_model is None else update_model
    _check_same_weights(params, stepper.params)
    update = update_check(stepper, x, y, tape64.grads, lr, rtol, describe(stepper))
    return AuditReport(
        model=getattr(model, "name", type(model).__name__),
        settings=describe(model),
        batch=len(x),
        tensors=tensors,
        loss=loss,
        update=update,
        tolerances={
            "float32": tol.RTOL_FLOAT32,
            "float64": tol.RTOL_FLOAT64,
            "finite_differences": tol.RTOL_FINITE_DIFF,
            "fd_roundoff": tol.FD_ROUNDOFF,
            "rel_error_floor": tol.REL_ERROR_FLOOR,
            "fd_step": tol.FD_STEP,
            "manual": rtol,
        },
        notes=[
            FD_NOTE,
            f"finite differences: up to {fd_samples} coordinates per parameter, "
            f"chosen with seed {seed}",
        ],
        expected=tuple(expect),
        gradients={
            MANUAL: {**_prefixed(manual["grads"]), **manual["intermediates"]},
            TAPE64: {**_prefixed(tape64.grads), **tape64.intermediates},
            TAPE32: {**_prefixed(tape32.grads), **tape32.intermediates},
        },
    )


def _prefixed(grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"d{k}": v for k, v in grads.items()}


def describe(model) -> dict[str, str]:
    """The model settings that change its gradients, as strings."""
    known = {
        **{k: getattr(model, k) for k in SETTINGS if hasattr(model, k)},
        **getattr(model, "options", {}),
    }
    return {k: str(known[k]) for k in SETTINGS if k in known}


def _audit_parameter(key, manual, ref, ref32, loss_at, params, rng, fd_samples, rtol, loss):
    manual_vs_ref = compare(manual, ref, rtol)
    must = (np.unravel_index(int(np.abs(ref).argmax()), ref.shape), manual_vs_ref.worst_index)
    indices = sample_indices(ref.shape, fd_samples, rng, must=must)
    scale = 2 * float(np.abs(ref).max(initial=0))
    fd = central_differences(loss_at, params, key, indices, tol.RTOL_FINITE_DIFF, scale=scale)
    kept = [index for index, ok in zip(indices, fd.comparable, strict=True) if ok]
    fd_values = fd.values[fd.comparable]
    picked_manual = np.array([manual[i] for i in kept], dtype=np.float64)
    picked_ref = np.array([ref[i] for i in kept], dtype=np.float64)
    manual_scale = float(np.abs(manual).max(initial=0)) + scale / 2
    fd_rtol = tol.fd_rtol(loss, scale)
    fd_manual = compare(picked_manual, fd_values, max(rtol, fd_rtol), floor_scale=manual_scale)
    fd_tape = compare(picked_ref, fd_values, fd_rtol, floor_scale=scale)
    tape32 = compare(ref32, ref, tol.RTOL_FLOAT32)
    if kept:
        sources = (MANUAL, TAPE64, FD64)
        agree = {
            (MANUAL, TAPE64): manual_vs_ref.matches,
            (MANUAL, FD64): fd_manual.matches,
            (TAPE64, FD64): fd_tape.matches,
        }
    else:  # every sampled step crosses a kink: no finite difference to vote with
        sources, agree = (
            (MANUAL, TAPE32, TAPE64),
            tape_agreement(manual, ref32, manual_vs_ref, tape32, rtol),
        )
    return TensorAudit(
        name=f"d{key}",
        kind=PARAMETER,
        shape=tuple(ref.shape),
        manual=manual_vs_ref,
        tape32=tape32,
        vote=vote(sources, agree),
        fd_manual=fd_manual,
        fd_tape=fd_tape,
        fd_count=len(indices),
        fd_not_comparable=fd.not_comparable,
    )


def _audit_intermediate(name, manual, ref, ref32, rtol):
    manual_vs_ref = compare(manual, ref, rtol)
    tape32 = compare(ref32, ref, tol.RTOL_FLOAT32)
    agree = tape_agreement(manual, ref32, manual_vs_ref, tape32, rtol)
    return TensorAudit(
        name=name,
        kind=INTERMEDIATE,
        shape=tuple(ref.shape),
        manual=manual_vs_ref,
        tape32=tape32,
        vote=vote((MANUAL, TAPE32, TAPE64), agree),
    )


def tape_agreement(manual, ref32, manual_vs_ref, tape32, rtol) -> dict:
    """The pairs of the vote among manual, tape32 and tape64 (no finite differences)."""
    return {
        (MANUAL, TAPE64): manual_vs_ref.matches,
        (MANUAL, TAPE32): compare(manual, ref32, max(rtol, tol.RTOL_FLOAT32)).matches,
        (TAPE32, TAPE64): tape32.matches,
    }


def _check_intermediates(manual: dict[str, np.ndarray], tape: TapeResult) -> None:
    if set(manual) != set(tape.intermediates):
        raise ValueError(
            "the manual backward reports intermediates "
            f"{sorted(manual)}, but reference_forward returns tensors whose gradients are "
            f"{sorted(tape.intermediates)}; they must name the same tensors (NAME -> dNAME)"
        )
    for name, ref in tape.intermediates.items():
        if np.shape(manual[name]) != ref.shape:
            raise ValueError(
                f"intermediate {name}: manual shape {np.shape(manual[name])}, "
                f"reference shape {ref.shape}"
            )


def _check_same_weights(params: dict, other: dict) -> None:
    if set(params) != set(other) or any(not np.array_equal(params[k], other[k]) for k in params):
        raise ValueError("update_model must hold the same weights as the audited model")


def _scalar_rel_error(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a) + abs(b), TINY)
