"""``audit(model, x, y)``: the manual gradients against the tape and finite differences."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.causes import layer_quantities
from tfhybrid.audit.compare import TINY
from tfhybrid.audit.confirm import Borrowed
from tfhybrid.audit.judge import (
    FD64,
    INTERMEDIATE,
    MANUAL,
    NOT_CHECKED,
    PARAMETER,
    TAPE32,
    TAPE64,
    ZERO_NOTE,
    Probe,
    judge_tensor,
)
from tfhybrid.audit.page.source import PageSource
from tfhybrid.audit.reference import TapeResult, loss_function, tape_gradients
from tfhybrid.audit.report import AuditReport, LossCheck
from tfhybrid.audit.update import update_check
from tfhybrid.catalog import OPTIONS

__all__ = ["FD64", "MANUAL", "TAPE32", "TAPE64", "audit", "describe"]

# The model settings a report records when present: the dtype, the gradient rules, then
# the other model options (all from tfhybrid.catalog.OPTIONS).
SETTINGS = (
    "dtype",
    *(option.keyword for option in OPTIONS if option.exact is not None),
    *(option.keyword for option in OPTIONS if option.exact is None),
)
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
    per_example: bool = False,
    layers: bool = True,
) -> AuditReport:
    """Audit ``model``'s manual gradients on the batch x, one-hot y.

    ``model`` needs ``params`` (dict of NumPy arrays), ``loss_and_gradients(x, y)`` (its
    own training code) and ``reference_forward`` (see :mod:`tfhybrid.audit.reference`).
    ``expect``: names whose mismatch is known (``report.ok`` ignores them). ``seed``
    picks the finite-difference coordinates; ``fd_samples`` how many per parameter.
    ``update_model``: the model whose SGD step (rate ``lr``) is compared with the tape's
    step, with the same weights as ``model`` (default: ``model`` itself).
    ``per_example``: also audit each sample's own gradient of every parameter
    (``loss_and_gradients(..., per_example=True)``) against a per-sample tape and finite
    differences, and their sum against the batch gradient (:mod:`tfhybrid.audit.per_example`).
    ``layers``: for a network with ``layers`` (a :class:`tfhybrid.Sequential`), check each
    layer's backward on its own and name the layer at fault (:mod:`tfhybrid.audit.layers`).

    A network whose layers draw random numbers or keep state (``model.replaying``, as
    :class:`tfhybrid.Sequential` has) is audited in training mode at one step's draw,
    replayed in every evaluation (the manual pass, both tapes, every finite difference,
    the per-layer checks and the update check); its step and state are left as they were.
    """
    with contextlib.ExitStack() as stack:
        step = _replay(stack, model)
        if update_model is not None and update_model is not model:
            _replay(stack, update_model, step)  # the twin steps with the same draw
        report = _audit(
            model,
            x,
            y,
            expect=expect,
            seed=seed,
            fd_samples=fd_samples,
            update_model=update_model,
            lr=lr,
            per_example=per_example,
            layers=layers,
        )
    if step is not None and _draws(model):
        note = (
            f"random draws: those of training step {step} (the network's next), replayed in "
            "every evaluation"
        )
        report = dataclasses.replace(report, notes=[*report.notes, note])
    # Kept for the backward-pass page (report.to_html), which draws what the audit saw.
    return dataclasses.replace(report, source=PageSource.capture(model, x, y, step))


def _replay(stack: contextlib.ExitStack, model, step: int | None = None) -> int | None:
    """Enter ``model.replaying(step)`` where the model has it; the step replayed, or None."""
    replaying = getattr(model, "replaying", None)
    if not callable(replaying):
        return None
    return stack.enter_context(replaying(step))


def _draws(model) -> bool:
    return any(getattr(layer, "random", False) for layer in getattr(model, "layers", ()))


def _audit(
    model,
    x,
    y,
    *,
    expect,
    seed,
    fd_samples,
    update_model,
    lr,
    per_example,
    layers,
) -> AuditReport:
    params = model.params
    x, y = np.array(x), np.array(y)  # copies: the model's code cannot move our points
    if x.ndim < 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"audit needs a batch x [N,...] and one-hot y [N,K] with N >= 1, "
            f"got x {x.shape} and y {y.shape}"
        )
    if not isinstance(fd_samples, int) or fd_samples < 1:
        raise ValueError(f"fd_samples must be an integer >= 1, got {fd_samples!r}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x or y holds NaN or inf: a gradient is checked at finite points")
    if per_example:
        from tfhybrid.audit.per_example import whole_batch_shares

        whole_batch_shares(model)  # one clear error before any work where it cannot be done
    # per_example only when asked: a model of one's own need not take the keyword
    extra = {"per_example": True} if per_example else {}
    manual = model.loss_and_gradients(x.copy(), y.copy(), **extra)
    again = model.loss_and_gradients(x.copy(), y.copy(), **extra)
    # A model of one's own may leave out the logits: then its loss says the same.
    key = "logits" if "logits" in manual and "logits" in again else "loss"
    fresh = not np.array_equal(np.asarray(manual[key]), np.asarray(again[key]), equal_nan=True)
    sequential = layers and hasattr(model, "layers") and hasattr(model, "param_keys")
    layer_checks, shared = [], {}
    if sequential:  # first: a layer that computes in float32 sets the network's tolerance
        from tfhybrid.audit.layers import borrowed_causes, check_layers, shared_candidates

        layer_checks = check_layers(model, x, y, seed=seed, per_example=per_example)
        # A layer used at several places: its gradient with one use's share alone.
        shared = shared_candidates(layer_checks, model)
    dtype = np.result_type(*params.values())
    if any(np.asarray(v).dtype == np.float32 for v in _arrays(manual)) or any(
        item.check.precision != "float64" for item in layer_checks
    ):
        dtype = np.dtype(np.float32)  # some of the manual code computes in float32
    rtol = tol.rtol_for(dtype)
    tape64 = tape_gradients(model, params, x, y, np.float64)
    tape32 = tape_gradients(model, params, x, y, np.float32)
    _check_intermediates(manual["intermediates"], tape64)

    loss_at = loss_function(model, x, y, np.float64)
    values64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    rng = np.random.default_rng(seed)
    counts = _layer_counts(model, len(x))
    # A network tensor's factor is made by its layer's own backward: the cause that
    # layer's own check confirmed (at a second shape) is the tensor's.
    names = [f"d{key}" for key in params] + list(tape64.intermediates)
    reruns = borrowed_causes(layer_checks, model, names) if sequential else {}
    reruns = {name: reruns.get(name, Borrowed(None)) for name in names}
    tensors = [
        judge_tensor(
            f"d{key}",
            PARAMETER,
            manual["grads"][key],
            tape64=tape64.grads[key],
            tape32=tape32.grads[key],
            probe=Probe(loss_at, values64, key, tape64.loss),
            rng=rng,
            fd_samples=fd_samples,
            manual_rtol=rtol,
            counts=counts.get(f"d{key}"),
            candidates=shared.get(key),
            rerun=reruns[f"d{key}"],
        )
        for key in params
    ]
    tensors += [
        judge_tensor(
            name,
            INTERMEDIATE,
            manual["intermediates"][name],
            tape64=tape64.intermediates[name],
            tape32=tape32.intermediates[name],
            manual_rtol=rtol,
            counts=counts.get(name),
            rerun=reruns[name],
        )
        for name in tape64.intermediates
    ]
    per_example_records, norms = [], {}
    if per_example:
        from tfhybrid.audit.per_example import audit_per_example

        per_example_records, norms = audit_per_example(
            model, x, y, manual, tape64, tape32, rng, fd_samples, rtol, counts, reruns
        )

    loss = LossCheck(
        manual=float(manual["loss"]),
        tape32=tape32.loss,
        tape64=tape64.loss,
        rel_error=_scalar_rel_error(float(manual["loss"]), tape64.loss),
        rtol=rtol,
    )
    stepper = model if update_model is None else update_model
    _check_same_weights(params, stepper.params)
    rounding_only = frozenset(t.name[1:] for t in tensors if t.note == ZERO_NOTE)
    update = update_check(stepper, x, y, tape64.grads, lr, rtol, describe(stepper), rounding_only)
    layer_verdicts = []
    if sequential:
        from tfhybrid.audit.layers import explained_by_layers, locate_fault

        tensors = explained_by_layers(tensors, layer_checks, model)
        per_example_records = explained_by_layers(per_example_records, layer_checks, model)
        mismatched = {t.name for t in (*tensors, *per_example_records) if not t.matches}
        layer_verdicts = locate_fault(layer_checks, model, mismatched)
    if fresh:  # not a function of the weights: every comparison above was of noise
        tensors = [_noise(t) for t in tensors]
        per_example_records = [_noise(t) for t in per_example_records]
    return AuditReport(
        model=getattr(model, "name", type(model).__name__),
        problem=NETWORK_FRESH if fresh else "",
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
        layers=layer_verdicts,
        per_example=per_example_records,
        per_example_norms=norms,
    )


NETWORK_FRESH = (
    "the network's forward draws fresh random numbers on every call (two passes on the "
    "same batch and weights gave different logits), so no comparison means anything; a "
    "layer that draws them must take the rng argument its network hands it (see "
    "tfhybrid.layers.Layer), which the audit replays"
)


def _noise(item):
    return dataclasses.replace(
        item, verdict=f"{NOT_CHECKED}: fresh random numbers", matches=False, note="", cause=None
    )


def _layer_counts(model, batch: int) -> dict[str, tuple]:
    """Tensor name -> the quantities of the layer that computes it (for causes): those its
    own check names (:func:`tfhybrid.audit.causes.quantities_of`), its kernel included."""
    if not hasattr(model, "layers") or not hasattr(model, "param_keys"):
        return {}
    found = {}
    shape = tuple(model.input_shape)
    for index, layer in enumerate(model.layers):
        out_shape = tuple(layer.output_shape_)
        kernel = next(
            (
                s
                for s in (model.param_shapes[k] for k in model.param_keys[index].values())
                if len(s) == 4 and len(shape) == 3 and s[2] == shape[2]
            ),
            None,
        )
        counts = layer_quantities(
            (batch, *shape), (batch, *out_shape), getattr(layer, "cause_counts", None), kernel
        )
        for key in model.param_keys[index].values():
            found[f"d{key}"] = counts
        if index > 0:
            found["d" + model.names[index - 1]] = counts  # its dx
        shape = out_shape
    return found


def _arrays(result: dict) -> list:
    """Every gradient array of a loss_and_gradients result."""
    return [*result["grads"].values(), *result["intermediates"].values()]


def _prefixed(grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"d{k}": v for k, v in grads.items()}


def describe(model) -> dict[str, str]:
    """The model settings that change its gradients, as strings."""
    known = {
        **{k: getattr(model, k) for k in SETTINGS if hasattr(model, k)},
        **getattr(model, "options", {}),
    }
    return {k: str(known[k]) for k in SETTINGS if k in known}


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
