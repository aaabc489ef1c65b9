"""What a layer hands its network, checked where it enters it.

A layer of one's own that returns float64 inside a float32 network, or an output or a
gradient of another shape, otherwise fails far from its cause: inside the next layer's
TensorFlow call, with pages of array dumps, or not at all (NumPy upcasts silently and the
optimizer casts back). :class:`~tfhybrid.models.sequential.Sequential` calls these on
every forward output and backward result instead, so the error names the layer, the
tensor and both dtypes or shapes in one line. Each check compares a dtype and a shape:
no copy, nothing computed, so training pays nothing measurable for it.

A float narrower than the network's (float32 code in a float64 network) is accepted, as
the audit judges such code at float32's tolerance; its output and dx are cast to the
network's dtype (a copy in that case only), so the layers after it get what they expect.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def layer_name(layer, index: int, output: str) -> str:
    """ "layer 2 (Tanh, output t1)": a layer as every message names it."""
    return f"layer {index} ({type(layer).__name__}, output {output})"


def _dtype(value) -> np.dtype | None:
    """The NumPy dtype of an array or a TensorFlow tensor; None for anything else."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return None
    try:
        return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    except TypeError:
        return None


def _check(
    value, what: str, where: str, expected: tuple, dtype: np.dtype, fix: str, cast: bool = True
):
    """``value``, checked to be an array of ``dtype`` and shape ``expected``, else one
    ValueError naming ``where``'s ``what``; a narrower float is accepted (cast to
    ``dtype`` when ``cast``)."""
    found = _dtype(value)
    if found is None:
        raise ValueError(
            f"{where} returned {what} as a {type(value).__name__}; it must be a NumPy array "
            f"of the network's dtype {dtype}"
        )
    if found != dtype:
        narrower = np.issubdtype(found, np.floating) and found.itemsize < dtype.itemsize
        if not narrower:
            raise ValueError(
                f"{where} returned {what} as {found}, but the network computes in {dtype}: {fix}"
            )
        if cast:
            value = np.asarray(value, dtype=dtype)
    shape = tuple(np.shape(value))
    if shape != expected:
        raise ValueError(
            f"{where} returned {what} of shape {list(shape)}; it must have shape {list(expected)}"
        )
    return value


def check_output(out, layer, index: int, output: str, expected: tuple[int, ...], dtype: np.dtype):
    """A forward's output, checked: of the network's ``dtype`` (or a narrower float, then
    cast to it) and shape ``expected`` ([N, *the layer's output shape], as its reference
    gave when the network was built). Returns it."""
    return _check(
        out,
        "its output",
        f"{layer_name(layer, index, output)}'s forward",
        expected,
        dtype,
        "return the dtype of its input (e.g. out.astype(x.dtype, copy=False))",
    )


def check_backward(
    result,
    layer,
    index: int,
    output: str,
    *,
    need_dx: bool,
    batch: int,
    dtype: np.dtype,
    shapes: Mapping[str, tuple[int, ...]],
    per_example: bool = False,
):
    """A backward's (dx, grads), checked: a pair; dx of the input's shape where the layer
    below needs it; a gradient for parameters the layer owns only (``shapes``: their
    shapes under the layer's own names), each of its parameter's shape ([N, *shape] per
    example); all of the network's ``dtype`` or a narrower float. Returns (dx, grads)."""
    where = f"{layer_name(layer, index, output)}'s backward"
    if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[1], dict):
        raise ValueError(f"{where} must return (dx, grads), a pair; got {type(result).__name__}")
    dx, grads = result
    fix = "return the dtype of dout (e.g. dx.astype(dout.dtype, copy=False))"
    if need_dx:
        if dx is None:
            raise ValueError(f"{where} returned dx None, but the layer below needs it")
        dx = _check(dx, "dx", where, (batch, *layer.input_shape), dtype, fix)
    unknown = set(grads) - set(shapes)
    if unknown:
        raise ValueError(
            f"{where} returned gradients {sorted(unknown)} for parameters it does not own "
            f"({sorted(shapes) or 'none'})"
        )
    lead = (batch,) if per_example else ()
    for name, grad in grads.items():
        what = f"the gradient of {name!r}"  # kept as it is: the optimizer casts it
        _check(grad, what, where, (*lead, *shapes[name]), dtype, fix, cast=False)
    return dx, grads
