"""Max pooling with window, stride and padding: forward and hand-written backward, in NumPy.

The backward pass sends each window's gradient to ONE input: the first maximum in
row-major window order, which is what TensorFlow's ``MaxPoolGrad`` does. Sources 002
and 003 instead send the full gradient to EVERY element equal to the window's maximum;
on MNIST's flat background (whole windows of equal values) that multiplies the gradient
of such windows by the number of ties. ``ties="all"`` reproduces that rule so the
gradient audit can measure it; it is not the gradient of max pooling.

Windows are never copied out: window position q = (i, j) of every window at once is the
strided view ``xpad[:, i::stride, j::stride]``, so the forward and the backward make
size² passes over arrays of the output's size.
"""

from __future__ import annotations

import numpy as np

from tfhybrid.choices import TIE_RULES, check_choice
from tfhybrid.ops import buffers


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
    n, h, w, c = x.shape
    ho, wo = pool_output_size(h, size, stride, pad), pool_output_size(w, size, stride, pad)
    if ho < 1 or wo < 1:
        raise ValueError(f"pool window {size} (pad {pad}) does not fit input {h}x{w}")
    xp = _padded(x, pad, pad_value)
    views = _window_views(xp, size, stride, ho, wo)
    out = np.array(next(views), copy=True)
    for view in views:
        np.maximum(out, view, out=out)
    return out, max_pool_cache(x, out, size, stride, pad, pad_value, ties)


def max_pool_cache(
    x: np.ndarray, out: np.ndarray, size: int, stride: int, pad: int, pad_value: float, ties: str
) -> tuple:
    """The backward's cache from the input x [N,H,W,C] and the pooled out [N,Ho,Wo,C]:
    for each window position q, where that position's input is routed the gradient,
    a bool array [size², N,Ho,Wo,C]."""
    if stride == size and pad == 0:
        return _tiled_cache(x, out, size, ties)
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


def _in_rows(a: np.ndarray, size: int) -> np.ndarray:
    """[N,Ho,Wo,C] -> [N,Ho,Wo*size*C]: each value repeated for the ``size`` columns of its
    window, so that it lines up with a row of the input (long contiguous runs for NumPy)."""
    n, ho, wo, c = a.shape
    return np.repeat(a, size, axis=2).reshape(n, ho, wo * size * c)


def _tiled_cache(x: np.ndarray, out: np.ndarray, size: int, ties: str) -> tuple:
    """:func:`max_pool_cache` for windows that tile the input (stride = size, no padding).

    Row i of every window is a contiguous run of the input's row, so the routes are built
    row by row on [N,Ho,Wo*size*C] arrays, where NumPy's loops run the whole row (the
    window-position views have runs of only C elements). Within a row, position j's
    neighbours j-k and j+k in the same window are the elements k*C before and after it.
    """
    n, h, w, c = x.shape
    _, ho, wo, _ = out.shape
    run = wo * size * c
    rows = x[:, : ho * size, : wo * size, :].reshape(n, ho, size, run)
    target = _in_rows(out, size)
    routes = np.empty((size, n, ho, run), dtype=bool)
    column = np.arange(run) // c % size  # each element's column j inside its window
    taken = None  # [N,Ho,run]: the window has a maximum in an earlier row
    for i in range(size):
        hits = routes[i]
        np.equal(rows[:, :, i], target, out=hits)
        if ties == "all":
            continue
        left = _neighbours(hits, c, size, column, toward="left")
        if i < size - 1:  # what this row tells the rows below: the window has a maximum
            row_any = hits | left | _neighbours(hits, c, size, column, toward="right")
        np.greater(hits, left if taken is None else left | taken, out=hits)  # hits & ~...
        if i < size - 1:
            taken = row_any if taken is None else taken | row_any
    return ("rows", x.shape, size, routes)


def _neighbours(hits: np.ndarray, c: int, size: int, column: np.ndarray, toward: str):
    """True where a position left (or right) of it in the same window row is True."""
    found = np.zeros_like(hits)
    for k in range(1, size):
        if toward == "left":
            found[..., k * c :] |= hits[..., : -k * c] & (column[k * c :] >= k)
        else:
            found[..., : -k * c] |= hits[..., k * c :] & (column[: -k * c] < size - k)
    return found


def max_pool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dout [N,Ho,Wo,C] -> dx [N,H,W,C].

    ``ties="first"``: each window's gradient goes to its first maximum (row-major), and
    overlapping windows add up. ``ties="all"``: to every tied maximum (the sources' rule).
    Gradient that lands on padding is dropped; inputs no window covers get zero.
    """
    if cache[0] == "rows":  # windows that tile the input: routed row by row
        _, x_shape, size, routes = cache
        n, h, w, c = x_shape
        _, ho, wo, _ = dout.shape
        exact = ho * size == h and wo * size == w
        dx = (buffers.empty if exact else buffers.zeros)(x_shape, dout.dtype)
        rows = dx[:, : ho * size, : wo * size, :].reshape(n, ho, size, wo * size * c)
        spread = _in_rows(dout, size)
        for i in range(size):
            np.multiply(spread, routes[i], out=rows[:, :, i])
        return dx
    x_shape, size, stride, pad, routes = cache
    n, h, w, c = x_shape
    _, ho, wo, _ = dout.shape
    padded = (n, h + 2 * pad, w + 2 * pad, c)
    if stride == size:
        # Windows tile the input: each input is in at most one window, so each window
        # position's gradient is written straight into its strided view, no sum needed.
        tiled = ho * size == padded[1] and wo * size == padded[2]
        dxp = (buffers.empty if tiled else buffers.zeros)(padded, dout.dtype)
        for q, view in enumerate(_window_views(dxp, size, stride, ho, wo)):
            np.multiply(dout, routes[q], out=view)
    else:
        dxp = buffers.zeros(padded, dout.dtype)
        zero = np.zeros((), dtype=dout.dtype)
        for q, view in enumerate(_window_views(dxp, size, stride, ho, wo)):
            view += np.where(routes[q], dout, zero)
    return dxp[:, pad : pad + h, pad : pad + w, :]
