"""Max pooling with window, stride and padding: forward and hand-written backward, in NumPy.

The backward pass sends each window's gradient to ONE input: the first maximum in
row-major window order, which is what TensorFlow's ``MaxPoolGrad`` does. Sources 002
and 003 instead send the full gradient to EVERY element equal to the window's maximum;
on MNIST's flat background (whole windows of equal values) that multiplies the gradient
of such windows by the number of ties. ``ties="all"`` reproduces that rule so the
gradient audit can measure it; it is not the gradient of max pooling.

Windows are never copied out: window position q = (i, j) of every window at once is the
strided view ``xpad[:, i::stride, j::stride]``, so the forward and the backward make
size² passes over arrays of the output's size. This is the definition; the training step
runs :mod:`tfhybrid.fast.maxpool` (the routes built row by row where the windows tile the
input, the same routes and numbers).
"""

from __future__ import annotations

import numpy as np

from tfhybrid.choices import TIE_RULES, check_choice


def pool_output_size(size: int, window: int, stride: int, pad: int) -> int:
    """(size + 2 pad - window) // stride + 1: windows that fit; leftover rows get no window."""
    return (size + 2 * pad - window) // stride + 1


def check_pool_options(size: int, stride: int, pad: int, ties: str) -> None:
    check_choice("ties", ties, TIE_RULES)
    for label, value, low in (("size", size, 1), ("stride", stride, 1), ("pad", pad, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"pool {label} must be an integer >= {low}, got {value!r}")
    if pad >= size:
        raise ValueError(f"pad must be in [0, size), got pad={pad} for size={size}")


def _padded(x: np.ndarray, pad: int, pad_value: float) -> np.ndarray:
    if not pad:
        return x
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)


def _window_views(xp: np.ndarray, size: int, stride: int, ho: int, wo: int):
    """The size² strided views [N,Ho,Wo,C], window position q = i*size + j in row-major order."""
    rows, cols = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    for q in range(size * size):
        i, j = divmod(q, size)
        yield xp[:, i : i + rows : stride, j : j + cols : stride, :]


def max_pool_forward(
    x: np.ndarray,
    size: int = 2,
    stride: int = 2,
    pad: int = 0,
    pad_value: float = 0.0,
    ties: str = "first",
) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C] -> (out [N,Ho,Wo,C], cache); Ho = (H + 2 pad - size) // stride + 1.

    ``pad`` rows/columns of ``pad_value`` are added on each side (0.0 as source 002's
    zero padding, or ``-np.inf`` so padding never wins, as TensorFlow's "SAME").
    ``ties`` ("first" or "all") only changes the backward pass.
    """
    check_pool_options(size, stride, pad, ties)
    out = max_pool(x, size, stride, pad, pad_value)
    return out, max_pool_cache(x, out, size, stride, pad, pad_value, ties)


def max_pool(x: np.ndarray, size: int, stride: int, pad: int, pad_value: float) -> np.ndarray:
    """x [N,H,W,C] -> the max of each window [N,Ho,Wo,C] (the forward's output alone)."""
    n, h, w, c = x.shape
    ho, wo = pool_output_size(h, size, stride, pad), pool_output_size(w, size, stride, pad)
    if ho < 1 or wo < 1:
        raise ValueError(f"pool window {size} (pad {pad}) does not fit input {h}x{w}")
    views = _window_views(_padded(x, pad, pad_value), size, stride, ho, wo)
    out = np.array(next(views), copy=True)
    for view in views:
        np.maximum(out, view, out=out)
    return out


def max_pool_cache(
    x: np.ndarray, out: np.ndarray, size: int, stride: int, pad: int, pad_value: float, ties: str
) -> tuple:
    """The backward's cache from the input x [N,H,W,C] and the pooled out [N,Ho,Wo,C]:
    for each window position q, where that position's input is routed the gradient,
    a bool array [size², N,Ho,Wo,C]."""
    xp = _padded(x, pad, pad_value)
    _, ho, wo, _ = out.shape
    routes = np.empty((size * size, *out.shape), dtype=bool)
    taken = np.zeros(out.shape, dtype=bool) if ties == "first" else None
    for q, view in enumerate(_window_views(xp, size, stride, ho, wo)):
        np.equal(view, out, out=routes[q])
        if taken is not None:  # the first maximum only: not one an earlier position took
            routes[q] &= ~taken
            taken |= routes[q]
    return (x.shape, size, stride, pad, routes)


def max_pool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dout [N,Ho,Wo,C] -> dx [N,H,W,C].

    Each window's gradient goes where the cache routes it: ``ties="first"`` to its first
    maximum (row-major), ``ties="all"`` to every tied maximum (the sources' rule); the
    gradients of overlapping windows add up. Gradient that lands on padding is dropped;
    inputs no window covers get zero.
    """
    x_shape, size, stride, pad, routes = cache
    n, h, w, c = x_shape
    _, ho, wo, _ = dout.shape
    dxp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=dout.dtype)
    for q, view in enumerate(_window_views(dxp, size, stride, ho, wo)):
        view += np.where(routes[q], dout, 0)  # window position q's share of every window
    return dxp[:, pad : pad + h, pad : pad + w, :]
