"""Fast variants of :mod:`tfhybrid.ops.maxpool`'s cache and backward: where the windows
tile the input (stride = size, no padding), the routes are built row by row on long
contiguous runs, and each window position's gradient is written straight into its strided
view. The same routes as the definition, so the same numbers bit for bit."""

from __future__ import annotations

import numpy as np

from tfhybrid.fast import buffers
from tfhybrid.ops import maxpool as definition


def max_pool_forward(
    x: np.ndarray,
    size: int = 2,
    stride: int = 2,
    pad: int = 0,
    pad_value: float = 0.0,
    ties: str = "first",
) -> tuple[np.ndarray, tuple]:
    """:func:`tfhybrid.ops.maxpool.max_pool_forward`, with this module's cache."""
    definition.check_pool_options(size, stride, pad, ties)
    out = definition.max_pool(x, size, stride, pad, pad_value)
    return out, max_pool_cache(x, out, size, stride, pad, pad_value, ties)


def max_pool_cache(
    x: np.ndarray, out: np.ndarray, size: int, stride: int, pad: int, pad_value: float, ties: str
) -> tuple:
    """:func:`tfhybrid.ops.maxpool.max_pool_cache`; row by row where the windows tile the input."""
    if stride == size and pad == 0:
        return _tiled_cache(x, out, size, ties)
    return definition.max_pool_cache(x, out, size, stride, pad, pad_value, ties)


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
    return ("rows", x.shape, size, routes, out)


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
    """:func:`tfhybrid.ops.maxpool.max_pool_backward` for either cache, into aligned buffers."""
    if cache[0] == "rows":  # windows that tile the input: routed row by row
        _, x_shape, size, routes, _ = cache
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
    if stride != size:
        return definition.max_pool_backward(dout, cache)
    n, h, w, c = x_shape
    _, ho, wo, _ = dout.shape
    padded = (n, h + 2 * pad, w + 2 * pad, c)
    # Windows tile the input: each input is in at most one window, so each window
    # position's gradient is written straight into its strided view, no sum needed.
    tiled = ho * size == padded[1] and wo * size == padded[2]
    dxp = (buffers.empty if tiled else buffers.zeros)(padded, dout.dtype)
    for q, view in enumerate(definition._window_views(dxp, size, stride, ho, wo)):
        np.multiply(dout, routes[q], out=view)
    return dxp[:, pad : pad + h, pad : pad + w, :]


def max_pool_relu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray | None:
    """The max pool's backward and the ReLU's below it in one pass, or None.

    The ReLU's backward multiplies the pool's dx [N,H,W,C] by its mask z > 0. A route
    ends where the ReLU's output equals the window's maximum, so the mask there is
    out > 0 of the pool's own output [N,Ho,Wo,C]: dL/dz = routes · spread(dout · [out > 0]),
    the mask applied to the pooled gradient, a quarter of the values for 2x2 windows.
    Every factor is 0 or 1, so the values equal those of
    :func:`max_pool_backward` then :func:`tfhybrid.ops.activations.relu_backward` (a zero
    may carry dout's sign, as in :func:`max_pool_backward`). Only for windows that tile
    the input (the "rows" cache); None otherwise (the caller runs the two backward passes in turn).
    """
    if cache[0] != "rows":
        return None
    out = np.asarray(cache[4])
    return max_pool_backward(np.multiply(dout, out > 0), cache)
