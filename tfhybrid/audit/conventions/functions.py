"""Function pairs that return tuples (CS231n's), and losses that return (loss, dx).

op = function_pair(conv_forward, conv_backward, fixed={"conv_param": {"stride": 1, "pad": 1}})
check_op(*op, {"x": x, "w": w, "b": b}, reference=references.conv(pad=1, layout="NCHW"))

op = loss_function(softmax_loss, fixed={"y": y})
check_op(*op, {"x": scores}, reference=references.softmax_loss(y))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tfhybrid.audit.conventions.pair import OpPair, checked_fixed, checked_lr, fresh, recovered


def _parameters(function: Callable, role: str) -> list[str]:
    """The names of ``function``'s arguments that can be passed by name, in order."""
    if not callable(function):
        raise ValueError(f"{role} must be a function, got {type(function).__name__}")
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{role} has no readable signature: {err}") from err
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in kinds]


def _name(function: Callable) -> str:
    return getattr(function, "__name__", type(function).__name__)


def _differentiable(function: Callable, fixed: Mapping, role: str) -> list[str]:
    """``function``'s arguments that are not ``fixed``: the inputs check_op differentiates.
    Raises ValueError for a fixed name it does not take."""
    names = _parameters(function, role)
    unknown = sorted(set(fixed) - set(names))
    if unknown:
        raise ValueError(
            f"fixed names {unknown}, which {_name(function)} does not "
            f"take (its arguments: {', '.join(names)})"
        )
    return [n for n in names if n not in fixed]


def _as_tuple(result: object) -> tuple:
    """A backward's result as a tuple of gradients: CS231n's ``relu_backward`` returns
    dx alone, ``affine_backward`` (dx, dw, db)."""
    if isinstance(result, tuple):
        return result
    if isinstance(result, list) and not isinstance(result, np.ndarray):
        return tuple(result)
    return (result,)


def function_pair(
    forward: Callable,
    backward: Callable,
    *,
    fixed: Mapping[str, object] | None = None,
    grads: Sequence[str] | None = None,
    updates: Sequence[str] = (),
    lr: float | None = None,
) -> OpPair:
    """A pair ``forward(x, w, ..., param) -> (out, cache)``, ``backward(dout, cache) ->
    (dx, dw, ...)`` (CS231n's convention) as check_op's op pair.

    ``fixed``: the forward's non-differentiable arguments by name, held constant and
    deep-copied for every call (a param dict, labels, a dropout mask, integer ids); the
    other arguments are the inputs. ``grads``: which input each gradient the backward
    returns belongs to, in order (default: the inputs in the forward's order; a single
    array is one gradient; a None entry is left unchecked).

    An in-place updater, ``backward(dout, cache, lr)`` that applies ``w -= lr * dw`` to
    the arrays of its cache: ``updates`` names those inputs and ``lr`` is passed to it
    (default 1, which loses the least to rounding); their gradients are recovered as
    (w before - w after) / lr, and the arrays are put back. Raises ValueError for a
    fixed name the forward does not take, or a backward that returns another number of
    gradients than there are names for.
    """
    fixed = checked_fixed(fixed)
    names = _differentiable(forward, fixed, "forward")
    if not names:
        raise ValueError("every argument of the forward is fixed: nothing to differentiate")
    updates = tuple(updates)
    unknown = sorted(set(updates) - set(names))
    if unknown:
        raise ValueError(f"updates names {unknown}, which are not inputs (inputs: {names})")
    rate = checked_lr(1.0 if updates and lr is None else lr)
    if rate is not None and not updates:
        raise ValueError("lr is the learning rate of an in-place updater: name what it updates")
    returned = list(grads) if grads is not None else [n for n in names if n not in updates]
    bad = sorted(set(returned) - set(names))
    if bad:
        raise ValueError(f"grads names {bad}, which are not inputs (inputs: {names})")

    def run(inputs, extra):
        result = forward(**inputs, **fresh(fixed), **extra)
        if updates and isinstance(result, tuple) and len(result) == 2:
            # Keep the very arrays the code got: the updater writes into them.
            return result[0], (result[1], {k: inputs[k] for k in updates})
        return result

    def pair_backward(dout, cache):
        if not updates:
            return _named(backward(dout, cache), returned)
        inner, arrays = cache
        before = {k: np.array(v) for k, v in arrays.items()}
        found = _named(backward(dout, inner, rate), returned)
        for key, value in arrays.items():
            found[key] = recovered(before[key], value, rate)
            value[...] = before[key]  # the next backward on this cache starts from the same w
        return found

    return OpPair(run, pair_backward, tuple(names), "function pair", _name(forward))


def _named(result: object, names: list[str]) -> dict[str, object]:
    """The backward's gradients by input name; None entries left out (not checked)."""
    values = (None,) if result is None else _as_tuple(result)
    if len(values) != len(names):
        raise ValueError(
            f"backward returned {len(values)} gradient(s), for inputs {names}: name which "
            "input each belongs to with grads=(...)"
        )
    return {k: v for k, v in zip(names, values, strict=True) if v is not None}


def loss_function(
    loss: Callable,
    *,
    fixed: Mapping[str, object] | None = None,
) -> OpPair:
    """A loss ``loss(x, y) -> (loss, dx)`` (CS231n's ``softmax_loss``, ``svm_loss``; or
    ``softmax_loss_naive(W, X, y, reg) -> (loss, dW)``) as check_op's op pair: the
    backward is ``dout * dx``, the chain rule for the scalar loss. ``fixed``: every
    argument but the one ``dx`` belongs to (the labels, the data, reg). Raises
    ValueError unless exactly one argument is left, or when the code returns no pair."""
    fixed = checked_fixed(fixed)
    names = _differentiable(loss, fixed, "loss")
    if len(names) != 1:
        raise ValueError(
            f"{_name(loss)} returns (loss, dx) for one input, but {len(names)} of its "
            f"arguments are not fixed ({', '.join(names)}): hold the others in fixed={{...}}"
        )

    def run(inputs, extra):
        result = loss(**inputs, **fresh(fixed), **extra)
        if not isinstance(result, tuple) or len(result) != 2:
            raise ValueError(
                f"{_name(loss)} must return (loss, d{names[0]}), a pair; got "
                f"{type(result).__name__}"
            )
        return np.asarray(result[0]), result[1]

    def backward(dout, grad):
        return {names[0]: np.asarray(dout) * np.asarray(grad)}

    return OpPair(run, backward, tuple(names), "loss", _name(loss))
