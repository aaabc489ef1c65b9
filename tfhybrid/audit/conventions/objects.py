"""Layer objects with state (Deep Learning from Scratch's): ``layer.forward(x)`` and
``layer.backward(dout)`` return only the output and dx; the parameters are attributes
(``W``, ``b``), the gradients are left on the object (``dW``, ``db``), the cache on self.

    op = layer_object(MyAffine(W, b))
    check_op(*op, op.inputs(x), reference=references.affine())

The object is never left changed by a check: each call saves its attributes, sets the
parameters it is given, runs, keeps a deep copy of the attributes as the cache (so a
later forward at another point cannot change what backward sees) and puts the saved
attributes back (the very arrays, with their values: a ``W`` shared with a network's
parameter dict stays shared).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from tfhybrid.audit.conventions.pair import OpPair, checked_fixed, checked_lr, fresh, recovered

INPUT = "x"
DEFAULT_PARAMS = ("W", "b")


def _snapshot(obj: object) -> dict:
    """A deep copy of the object's attributes (what its forward left on self)."""
    return copy.deepcopy(vars(obj))


def _restore(obj: object, state: dict) -> None:
    """The object's attributes set to a fresh deep copy of ``state`` (a cache)."""
    vars(obj).clear()
    vars(obj).update(copy.deepcopy(state))


def _save(obj: object) -> tuple[dict, dict]:
    """The object's attributes as they are (the very objects) and their values."""
    return dict(vars(obj)), copy.deepcopy(vars(obj))


def _put_back(obj: object, saved: tuple[dict, dict]) -> None:
    """The very attributes :func:`_save` found, arrays with their values: a layer of a
    user's network whose ``W`` is the network's ``params["W1"]`` keeps sharing it."""
    identities, values = saved
    vars(obj).clear()
    vars(obj).update(identities)
    for key, value in identities.items():
        if (
            isinstance(value, np.ndarray)
            and value.flags.writeable
            and not np.array_equal(value, values[key])
        ):
            value[...] = values[key]


def _method(obj: object, name: str):
    method = getattr(obj, name, None)
    if not callable(method):
        raise ValueError(
            f"{type(obj).__name__} has no method {name!r}; name its forward and backward "
            "with methods=(FORWARD, BACKWARD)"
        )
    return method


def _names(obj: object, params, grads) -> dict[str, str]:
    """Parameter attribute -> gradient attribute; checked against the object."""
    if params is None:
        params = [p for p in DEFAULT_PARAMS if getattr(obj, p, None) is not None]
    elif isinstance(params, str) or not all(isinstance(p, str) for p in params):
        raise ValueError(f"params must be a tuple of attribute names, got {params!r}")
    for name in params:
        value = getattr(obj, name, None)
        if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
            raise ValueError(
                f"{type(obj).__name__}.{name} is {type(value).__name__}, not a float array: "
                f"name the parameter attributes with params=(...) "
                f"(it has {', '.join(sorted(vars(obj))) or 'no attributes'})"
            )
    if INPUT in params:
        raise ValueError(f"a parameter is named {INPUT!r}, the name of the layer's input")
    if grads is None:
        return {p: f"d{p}" for p in params}
    if isinstance(grads, Mapping):
        grads = [grads.get(p) for p in params]
    if isinstance(grads, str) or len(grads) != len(params) or None in grads:
        raise ValueError(
            f"grads must name one gradient attribute per parameter {list(params)} (a tuple "
            f"in that order, or a dict), got {grads!r}"
        )
    return dict(zip(params, grads, strict=True))


@dataclasses.dataclass(frozen=True)
class LayerObject(OpPair):
    """:func:`layer_object`'s op pair: an :class:`OpPair` that also reads the object."""

    obj: object = None
    params: tuple[str, ...] = ()

    def inputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """check_op's inputs: ``x`` and the object's parameters as they are now (copies)."""
        return {INPUT: np.asarray(x), **self.initial_params()}

    def initial_params(self) -> dict[str, np.ndarray]:
        return {p: np.array(getattr(self.obj, p)) for p in self.params}


def layer_object(
    obj: object,
    *,
    params: Sequence[str] | None = None,
    grads: Sequence[str] | Mapping[str, str] | None = None,
    fixed: Mapping[str, object] | None = None,
    lr: float | None = None,
    methods: tuple[str, str] = ("forward", "backward"),
) -> LayerObject:
    """A layer object with state as check_op's op pair (and, with ``.layer(reference)``,
    a layer of a :class:`tfhybrid.Sequential`).

    ``obj.forward(x, **fixed) -> out`` and ``obj.backward(dout) -> dx``, the method
    names given by ``methods`` (e.g. ``("forward", "backprop")``). ``params``: the
    attributes that are its parameters (default: those of ``W`` and ``b`` it has; none
    for a ReLU or a loss layer). ``grads``: where backward leaves their gradients
    (default ``d`` + the name: dW, db; a tuple in the order of params, or a dict).
    ``fixed``: the forward's other arguments by name, held constant (the labels ``t`` of
    a loss layer, ``train_flg=True``).

    An in-place updater, ``obj.backward(dout, lr)`` that applies ``W -= lr * dW`` itself:
    pass ``lr`` (1 loses the least to rounding); each parameter's gradient is then
    recovered as (W before - W after) / lr. Raises ValueError for a missing method or
    parameter, or, after a backward, a missing gradient attribute.
    """
    fixed = checked_fixed(fixed)
    rate = checked_lr(lr)
    names = _names(obj, params, grads)
    if len(methods) != 2 or not all(isinstance(m, str) for m in methods):
        raise ValueError(f"methods must name (forward, backward), got {methods!r}")
    for method in methods:  # checked now; looked up at each call (the object may swap them)
        _method(obj, method)

    def run(inputs, extra):
        saved = _save(obj)
        try:
            for key in names:
                setattr(obj, key, inputs[key])
            out = getattr(obj, methods[0])(inputs[INPUT], **fresh(fixed), **extra)
            return out, _snapshot(obj)
        finally:
            _put_back(obj, saved)

    def backward(dout, cache):
        saved = _save(obj)
        try:
            _restore(obj, cache)
            for grad in names.values():  # a gradient left from an earlier call is no answer
                vars(obj).pop(grad, None)
            before = {p: np.array(getattr(obj, p)) for p in names}
            call = getattr(obj, methods[1])
            dx = call(dout) if rate is None else call(dout, rate)
            found = {} if dx is None else {INPUT: dx}
            for param, grad in names.items():
                if rate is not None:
                    found[param] = recovered(before[param], getattr(obj, param), rate)
                    continue
                if getattr(obj, grad, None) is None:
                    raise ValueError(
                        f"after {methods[1]}, {type(obj).__name__} has no {grad!r} (the "
                        f"gradient of {param!r}): name it with grads=(...), or pass lr= "
                        "for a backward that updates its own weights"
                    )
                found[param] = np.array(getattr(obj, grad))
            return found
        finally:
            _put_back(obj, saved)

    return LayerObject(
        run,
        backward,
        (INPUT, *names),
        "layer object",
        type(obj).__name__,
        obj=obj,
        params=tuple(names),
    )
