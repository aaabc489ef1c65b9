"""How check_op calls a reference and reads its tape.

A reference is called with the inputs **by name** when its signature takes every input
name (a ``lambda x, w, b:``, or one with ``**kwargs``), else **positionally** in the
order of the inputs (``tf.nn.relu``, whose argument is ``features``; the factories of
:mod:`tfhybrid.audit.references`). A sparse tape gradient (``tf.IndexedSlices``, from
``tf.gather``) is made dense.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import numpy as np

KEYWORDS, POSITIONAL = "keywords", "positionally"


def calling_convention(reference: Callable, names: list[str]) -> str:
    """:data:`KEYWORDS` when ``reference``'s signature takes every name in ``names`` as a
    keyword (or has ``**kwargs``, or has no readable signature and names nothing else),
    else :data:`POSITIONAL`."""
    try:
        parameters = inspect.signature(reference).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return POSITIONAL
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return KEYWORDS
    by_name = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return KEYWORDS if set(names) <= by_name else POSITIONAL


def call_reference(reference: Callable, tensors: Mapping) -> object:
    """``reference`` of ``tensors`` (name -> tensor, in the order of the inputs), by name
    or positionally (:func:`calling_convention`)."""
    if calling_convention(reference, list(tensors)) == KEYWORDS:
        return reference(**tensors)
    return reference(*tensors.values())


def describe_call(reference: Callable, names: list[str]) -> str:
    """How the inputs were passed, for an error message."""
    how = calling_convention(reference, names)
    return f"passed {how}: {', '.join(names)}"


def factory_hint(reference: Callable) -> str:
    """A hint when ``reference`` is one of :mod:`tfhybrid.audit.references`' factories
    itself, not the reference it makes (``references.relu`` for ``references.relu()``)."""
    module = getattr(reference, "__module__", "") or ""
    if module.startswith("tfhybrid.audit.references") and "(" not in reference.__name__:
        return (
            f"; references.{reference.__name__} is a factory: it must be called with its "
            f"settings to give the reference (references.{reference.__name__}(...))"
        )
    return ""


def not_a_tensor(out: object) -> str:
    """The error for a reference that returned ``out``, not a tensor."""
    hint = (
        " (it returned a function: a factory such as references.conv(...) must be called "
        "with its settings to give the reference)"
        if callable(out)
        else ""
    )
    return (
        f"reference returned a {type(out).__name__}, not a TensorFlow tensor{hint}: "
        "write it in TensorFlow ops on its tensor inputs, which the tape can differentiate"
    )


def dense(gradient) -> np.ndarray:
    """A tape gradient as a float64 NumPy array; a ``tf.IndexedSlices`` (the sparse
    gradient of ``tf.gather``, an embedding's) made dense, its repeated rows added."""
    from tfhybrid._tf import tf

    if isinstance(gradient, tf.IndexedSlices):
        gradient = tf.convert_to_tensor(gradient)
    return np.asarray(gradient, dtype=np.float64)
