"""Max pooling with window, stride and padding: forward and hand-written backward, in NumPy.

The backward pass sends each window's gradient to ONE input: the first maximum in
row-major window order, which is what TensorFlow's ``MaxPoolGrad`` does. Sources 002
and 003 instead send the full gradient to EVERY element equal to the window's maximum;
on MNIST's flat background (whole windows of equal values) that multiplies the gradient
of such windows by the number of ties. ``ties="all"`` reproduces that rule so the
gradient audit can measure it; it is not the gradient of max pooling.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

TIE_RULES = ("first", "all")


def pool_output_size(size: int, window: int, stride: int, pad: int) -> int:
    """(size + 2 pad - window) // stride + 1: windows that fit; leftover rows get no window."""
    return (size + 2 * pad - window) // stride + 1


def max_pool_forward(
    x: np.ndarray, size: int = 2, stride: int = 2, pad: int = 0, pad_value: float = 0.0,
    ties: str = "first",
) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C] -> (out [N,Ho,Wo,C], cache); Ho = (H + 2 pad - size) // stride + 1.

    ``pad`` rows/columns of ``pad_value`` are added on each side (0.0 as source 002's
    zero padding, or ``-np.inf`` so padding never wins, as TensorFlow's "SAME").
    ``ties`` ("first" or "all") only changes the backward pass.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    if not 0 <= pad < size:
        raise ValueError(f"pad must be in [0, size), got pad={pad} for size={size}")
    n, h, w, c = x.shape
    ho, wo = pool_output_size(h, size, stride, pad), pool_output_size(w, size, stride, pad)
    if ho < 1 or wo < 1:
        raise ValueError(f"pool window {size} (pad {pad}) does not fit input {h}x{w}")
    xp = x
    if pad:
        xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
    # [N,Ho,Wo,C,size,size] view -> [N,Ho,Wo,C,size*size] copy, window in row-major order.
    windows = sliding_window_view(xp, (size, size), axis=(1, 2))
    windows = windows[:, :stride * (ho - 1) + 1:stride, :stride * (wo - 1) + 1:stride]
    windows = windows.reshape(n, ho, wo, c, size * size)
    first = windows.argmax(axis=-1)  # argmax returns the first of tied maxima
    out = np.take_along_axis(windows, first[..., None], axis=-1)[..., 0]
    chosen = windows == out[..., None] if ties == "all" else first
    return out, (x.shape, size, stride, pad, ties, chosen)


def max_pool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dout [N,Ho,Wo,C] -> dx [N,H,W,C].

    ``ties="first"``: each window's gradient goes to its first maximum (row-major), and
    overlapping windows add up. ``ties="all"``: to every tied maximum (the sources' rule).
    Gradient that lands on padding is dropped; inputs no window covers get zero.
    """
    x_shape, size, stride, pad, ties, chosen = cache
    n, h, w, c = x_shape
    _, ho, wo, _ = dout.shape
    dxp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=dout.dtype)
    rows, cols = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    for q in range(size * size):
        i, j = divmod(q, size)
        hit = chosen[..., q] if ties == "all" else chosen == q
        dxp[:, i:i + rows:stride, j:j + cols:stride, :] += np.where(hit, dout, 0)
    return dxp[:, pad:pad + h, pad:pad + w, :]
