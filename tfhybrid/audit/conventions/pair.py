"""``OpPair``: code written in another convention, seen as check_op's op pair.

    forward(**inputs) -> (out, cache)     backward(dout, cache) -> {name: gradient}

An ``OpPair`` unpacks into those two functions, so ``check_op(*op, inputs, reference)``
and ``assert_gradients_match(*op, inputs, reference)`` take it as they are, and
:meth:`OpPair.layer` puts it into a :class:`tfhybrid.Sequential`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping

import numpy as np


def fresh(fixed: Mapping[str, object]) -> dict[str, object]:
    """A deep copy of the non-differentiable arguments for one call, so code that writes
    into them (CS231n's ``bn_param`` gets running statistics) sees the same values in
    every evaluation of a gradient check."""
    return copy.deepcopy(dict(fixed))


def checked_fixed(fixed: object) -> dict[str, object]:
    """``fixed`` as a dict of argument name -> value; else one ValueError."""
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping) or not all(
        isinstance(k, str) and k.isidentifier() for k in fixed
    ):
        raise ValueError(
            "fixed must be a dict of argument name -> value (the arguments held constant: "
            f"a param dict, labels, a mask, integer ids), got {fixed!r}"
        )
    return dict(fixed)


def checked_lr(lr: object) -> float | None:
    """The learning rate an in-place updater is called with: None, or a number > 0."""
    if lr is None:
        return None
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a number > 0 (the updater's learning rate), got {lr!r}")
    return float(lr)


def recovered(before: np.ndarray, after: np.ndarray, lr: float) -> np.ndarray:
    """The gradient an in-place SGD step ``w -= lr * g`` applied: (before - after) / lr.
    Exact up to the rounding of ``after`` (eps * |w| / lr): a learning rate of 1, the
    default, loses the least."""
    return (np.asarray(before, dtype=np.float64) - np.asarray(after, dtype=np.float64)) / lr


@dataclasses.dataclass(frozen=True)
class OpPair:
    """An op pair in check_op's convention, made from code in another one.

    ``run(inputs, extra)``: the forward with ``extra`` keyword arguments for the code
    (the network's mode, where the layer takes one); ``backward(dout, cache)``.
    ``arguments``: the differentiable inputs in the code's order, the one a network feeds
    first (``input``; the others are parameters). ``kind``: what the code is ("layer
    object", "function pair", "loss"); ``name``: its name, the report's title."""

    run: Callable[[Mapping[str, np.ndarray], Mapping[str, object]], tuple]
    backward: Callable[[np.ndarray, object], dict]
    arguments: tuple[str, ...]
    kind: str
    name: str = "op"

    @property
    def input(self) -> str:
        return self.arguments[0]

    @property
    def forward(self) -> Callable:
        """``forward(**inputs) -> (out, cache)``, named after the code (the report's title)."""

        def forward(**inputs):
            return self.run(inputs, {})

        forward.__name__ = forward.__qualname__ = self.name
        # Its inputs by name, and nothing else: check_op hands an ``rng`` to a forward
        # whose signature takes one (or takes **kwargs), which the code does not.
        forward.__signature__ = inspect.Signature(
            [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in self.arguments]
        )
        return forward

    def __iter__(self) -> Iterator[Callable]:
        """``forward, backward``: ``check_op(*op, inputs, reference)``."""
        return iter((self.forward, self.backward))

    def layer(
        self,
        reference: Callable,
        params: Mapping[str, np.ndarray] | None = None,
        *,
        layout: str = "NHWC",
        out_layout: str | None = None,
        training: str | None = None,
        name: str | None = None,
    ):
        """This code as a layer of a :class:`tfhybrid.Sequential` (a
        :class:`~tfhybrid.audit.conventions.network.CodeLayer` whose class bears the
        code's name), its initial parameters
        ``params`` (name -> array; a layer object's default: its own attributes). See
        CodeLayer for ``reference``, ``layout``, ``out_layout`` and ``training``. Raises
        ValueError for a loss (a network applies its own) or parameters that are missing."""
        from tfhybrid.audit.conventions.network import CodeLayer

        if self.kind == "loss":
            raise ValueError(
                "a loss is not a layer: a tfhybrid.Sequential applies its own loss "
                "(Sequential(..., loss='softmax_cross_entropy')); check the loss with check_op"
            )
        # A subclass named after the code, so the audit's "layer at fault: 0 (Conv, ...)"
        # names it rather than the adapter.
        named = type(self.name, (CodeLayer,), {"__module__": CodeLayer.__module__})
        return named(
            self,
            reference,
            self.initial_params() if params is None else params,
            layout=layout,
            out_layout=out_layout,
            training=training,
            name=name,
        )

    def initial_params(self) -> dict[str, np.ndarray]:
        """The parameters a network starts from when none are given: none for code
        without parameters (a pooling pair); else they must be given (a layer object
        reads its own attributes)."""
        if len(self.arguments) == 1:
            return {}
        raise ValueError(
            f"give the {self.kind}'s initial parameters: op.layer(reference, params={{...}})"
        )
