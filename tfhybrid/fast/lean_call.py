"""Calling a compiled TensorFlow function without its per-call argument handling.

A ``ConcreteFunction`` called from Python binds its arguments to the signature, checks
each against its ``TensorSpec`` and converts them, before it runs the graph. A hybrid
step makes two or three such calls; docs/performance.md has what the binding costs.

:func:`lean` returns a callable that does, for positional tensors or arrays of the
signature's dtypes and shapes, what TensorFlow's own call does when it runs eagerly with
no gradient tape watching: convert, append the captured inputs and run the graph
(``ConcreteFunction._call_flat``'s eager branch), on TensorFlow's single-threaded
executor (:data:`EXECUTOR`). Anything else (a tape recording, graph mode, keyword
arguments, an argument of another shape or dtype, a TensorFlow version without these
internals) goes through the ordinary call, so behaviour and errors stay TensorFlow's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfhybrid._tf import tf

# The graph's ops run one after another in the calling thread (each kernel still uses
# TensorFlow's intra-op threads): faster than the default executor for most forward
# and single-kernel backward calls measured (docs/performance.md), with bit-identical
# results. A graph it does not support (control flow) runs on the default executor.
EXECUTOR = "SINGLE_THREADED_EXECUTOR"

try:  # TensorFlow's internals, present since 2.13; without them every call is ordinary
    from tensorflow.python.eager import context as _context
    from tensorflow.python.eager import record as _record
except ImportError:  # pragma: no cover - depends on the TensorFlow version
    _context = _record = None


def _expected(concrete) -> list[tuple[Any, tuple | None]] | None:
    """(dtype, shape with None for any size) per positional input, or None if the
    signature is not a flat list of TensorSpecs."""
    try:
        args, kwargs = concrete.structured_input_signature
    except (AttributeError, TypeError, ValueError):
        return None
    if kwargs or not all(isinstance(spec, tf.TensorSpec) for spec in args):
        return None
    return [
        (spec.dtype, None if spec.shape.rank is None else tuple(spec.shape.as_list()))
        for spec in args
    ]


def _fits(value, dtype, shape) -> bool:
    """Whether a tensor or NumPy array has the spec's dtype and shape."""
    if isinstance(value, tf.Tensor):
        if value.dtype != dtype:
            return False
    elif not isinstance(value, np.ndarray) or value.dtype != dtype.as_numpy_dtype:
        return False
    if shape is None:
        return True
    got = value.shape
    return len(got) == len(shape) and all(
        want is None or want == have for want, have in zip(shape, got, strict=True)
    )


def lean(concrete, single_threaded: bool = True):
    """``concrete`` (a ConcreteFunction of positional TensorSpec inputs) as a callable
    with the same results and errors, and without the per-call argument binding.
    Keyword arguments, and everything the module docstring lists, take the ordinary call.

    ``single_threaded``: run the graph on :data:`EXECUTOR`; False keeps TensorFlow's
    default executor, which runs independent kernels at once (a convolution's dw and dx
    in one call were 1-6 % faster there)."""
    atomic = getattr(concrete, "_inference_function", None)
    run = getattr(atomic, "call_preflattened", None)
    expected = _expected(concrete)
    if run is None or expected is None or _context is None:
        return concrete
    captured = list(concrete.captured_inputs)  # variables' handles included
    executor = {"single": single_threaded, "proven": False}

    def call(*args, **kwargs):
        if (
            kwargs
            or len(args) != len(expected)
            or not _context.executing_eagerly()
            or _record.could_possibly_record()
            or not all(
                _fits(value, dtype, shape)
                for value, (dtype, shape) in zip(args, expected, strict=True)
            )
        ):
            return concrete(*args, **kwargs)
        inputs = [
            value if isinstance(value, tf.Tensor) else tf.convert_to_tensor(value, dtype)
            for value, (dtype, _) in zip(args, expected, strict=True)
        ] + captured
        if not executor["single"]:
            return run(inputs)
        try:
            with _context.function_executor_type(EXECUTOR):
                outputs = run(inputs)
        except Exception:
            if executor["proven"]:
                raise  # it ran this graph before: the error is the call's own
            # Refused graph or the call's own error: the default executor tells. Its
            # error, if any, is what TensorFlow's own call raises.
            outputs = run(inputs)
            executor["single"] = False  # it ran what the single-threaded one refused
            return outputs
        executor["proven"] = True
        return outputs

    call.concrete = concrete  # the function itself, for inspection
    return call
