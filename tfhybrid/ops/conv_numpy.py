"""The convolution in NumPy alone, written as its formulas: forward, dx, dw and db.

``Conv2D(..., backend="numpy")`` and ``--conv numpy`` use it; the default backend runs
TensorFlow's kernels (:mod:`tfhybrid.ops.conv`). Both compute the same cross-correlation
(TensorFlow's ``conv2d``, NHWC, zero padding ``pad`` on each side)::

    out[n, y, x, f] = b[f] + sum over i, j, c of  xp[n, y*s + i, x*s + j, c] * w[i, j, c, f]

where ``xp`` is the padded input and ``s`` the stride. The chain rule then gives, for the
upstream gradient ``dout`` [N, Ho, Wo, F] (sources 002-004 derive the same three)::

    dw[i, j, c, f]     = sum over n, y, x of  xp[n, y*s + i, x*s + j, c] * dout[n, y, x, f]
    dxp[n, y*s+i, x*s+j, c] += sum over f of  dout[n, y, x, f] * w[i, j, c, f]
    db[f]              = sum over n, y, x of  dout[n, y, x, f]

Why a loop over the kernel's taps (i, j): fix one tap and every sum above becomes one
matrix product over the channels, between the output grid and the input pixels that tap
reads, ``window(xp, i, j)``. The three formulas then stay three lines each, k*k products
of whole arrays (25 for a 5x5 kernel) rather than a Python loop per pixel; source 002
loops over the taps the same way. An im2col copy of the input would be one product but
k*k times the input's memory, and hides the formula behind a reshape.
"""

from __future__ import annotations

import numpy as np


def window(xp: np.ndarray, i: int, j: int, out_hw: tuple[int, int], stride: int) -> np.ndarray:
    """The pixels tap (i, j) reads for every output position: xp[:, y*s+i, x*s+j, :] for
    y < Ho, x < Wo, as a view [N, Ho, Wo, C] of xp [N, Hp, Wp, C]."""
    ho, wo = out_hw
    return xp[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]


def pad_input(x: np.ndarray, pad: int) -> np.ndarray:
    """x [N,H,W,C] with ``pad`` rows and columns of zeros on each side: [N,H+2p,W+2p,C]."""
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, pad: int = 0
) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C], w [kh,kw,C,F], b [F] or [1,F] or None -> (out [N,Ho,Wo,F], cache).

    Ho = (H + 2 pad - kh) // stride + 1, likewise Wo.
    """
    xp = pad_input(np.asarray(x), pad)
    kh, kw, _, f = w.shape
    ho = (xp.shape[1] - kh) // stride + 1
    wo = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((len(xp), ho, wo, f), dtype=np.result_type(xp, w))
    for i in range(kh):
        for j in range(kw):
            out += window(xp, i, j, (ho, wo), stride) @ w[i, j]  # [N,Ho,Wo,C] @ [C,F]
    if b is not None:
        out += np.reshape(b, -1)
    return out, (xp, w, None if b is None else np.shape(b), stride, pad)


def conv2d_backward(
    dout: np.ndarray, cache: tuple, need_dx: bool = True, per_example: bool = False
) -> dict[str, np.ndarray]:
    """dout [N,Ho,Wo,F] -> {"dw": [kh,kw,C,F], "db": shape of b, "dx": [N,H,W,C]}.

    ``per_example=True``: dw [N,kh,kw,C,F] and db [N, *shape of b], each sample's own
    sum (over its positions only). ``need_dx=False`` leaves out dx.
    """
    xp, w, b_shape, stride, pad = cache
    kh, kw = w.shape[:2]
    ho, wo = dout.shape[1:3]
    grads: dict[str, np.ndarray] = {}

    # dw[i, j] = sum over n, y, x of window(xp, i, j)[n, y, x, :] (outer) dout[n, y, x, :]
    sum_over = "nyxc,nyxf->ncf" if per_example else "nyxc,nyxf->cf"
    dw = [
        [
            np.einsum(sum_over, window(xp, i, j, (ho, wo), stride), dout, optimize=True)
            for j in range(kw)
        ]
        for i in range(kh)
    ]
    axis = 1 if per_example else 0  # the taps' axes come after the sample's
    grads["dw"] = np.stack([np.stack(row, axis=axis) for row in dw], axis=axis)

    if b_shape is not None:  # db[f] = sum of dout[..., f] over the positions (and samples)
        db = dout.sum(axis=(1, 2)) if per_example else dout.sum(axis=(0, 1, 2))
        grads["db"] = db.reshape((len(dout), *b_shape) if per_example else b_shape)

    if need_dx:
        # Each tap sends dout back through its weights to the pixels it read.
        dxp = np.zeros_like(xp, dtype=dout.dtype)
        for i in range(kh):
            for j in range(kw):
                window(dxp, i, j, (ho, wo), stride)[...] += dout @ w[i, j].T  # [..,F] @ [F,C]
        h, wd = xp.shape[1] - 2 * pad, xp.shape[2] - 2 * pad
        grads["dx"] = dxp[:, pad : pad + h, pad : pad + wd]
    return grads
