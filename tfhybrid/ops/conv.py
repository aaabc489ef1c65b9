"""Convolution op pair, split as the source article splits it: TensorFlow computes the
output, the filter gradient dw and the input gradient dx; NumPy sums the bias gradient db.

This is the readable definition, one TensorFlow call per quantity, called eagerly. The
training step runs :mod:`tfhybrid.fast.conv` instead (compiled calls, a formulation chosen
per shape, XLA for small batches), which ``tests/test_fast_equal.py`` holds equal to this
to float rounding. With ``xp`` the input zero-padded by ``pad`` and ``s`` the stride
(the same formulas in NumPy: :mod:`tfhybrid.ops.conv_numpy`)::

    out[n, y, x, f] = b[f] + sum_{i,j,c} xp[n, y*s+i, x*s+j, c] * w[i, j, c, f]
    dw[i, j, c, f]  = sum_{n,y,x} xp[n, y*s+i, x*s+j, c] * dout[n, y, x, f]
    dx              = dout correlated with w turned 180 degrees (TensorFlow's backprop-input)
    db[f]           = sum_{n,y,x} dout[n, y, x, f]
"""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.choices import DW_MODES, check_choice


def _padding(pad: int) -> dict:
    """``pad`` zero rows and columns on each side, as the raw ops take it (0: "VALID")."""
    if pad == 0:
        return {"padding": "VALID", "explicit_paddings": []}
    return {"padding": "EXPLICIT", "explicit_paddings": [0, 0, pad, pad, pad, pad, 0, 0]}


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, pad: int = 0
) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C], w [kh,kw,C,F], b [F] or [1,F] or None -> (out [N,Ho,Wo,F], cache).

    Ho = (H + 2 pad - kh) // stride + 1 (zero padding, cross-correlation as in TensorFlow).
    """
    x = np.asarray(x)
    out = tf.raw_ops.Conv2D(input=x, filter=w, strides=[1, stride, stride, 1], **_padding(pad))
    out = out.numpy()
    if b is not None:
        out = out + np.reshape(b, -1)
    return out, (x, w, None if b is None else np.shape(b), stride, pad)


def conv2d_backward(
    dout: np.ndarray,
    cache: tuple,
    dw_mode: str = "batched",
    need_dx: bool = True,
    per_example: bool = False,
) -> dict[str, np.ndarray]:
    """dout [N,Ho,Wo,F] -> {"dw": [kh,kw,C,F], "db": shape of b, "dx": [N,H,W,C]}.

    ``dw_mode="per-sample"``: each sample's filter gradient, then their sum (the source
    article's loop); "batched": one call sums over the batch. ``need_dx=False`` skips dx
    (a network's input needs no gradient). ``per_example=True``: dw [N,kh,kw,C,F] and
    db [N, *shape of b], each sample's own.
    """
    x, w, b_shape, stride, pad = cache
    check_choice("dw_mode", dw_mode, DW_MODES)
    if per_example or dw_mode == "per-sample":
        each = [
            filter_gradient(x[n : n + 1], dout[n : n + 1], w.shape, stride, pad)
            for n in range(len(x))
        ]
        dw = np.stack(each) if per_example else np.sum(each, axis=0)
    else:
        dw = filter_gradient(x, dout, w.shape, stride, pad)
    grads = {"dw": dw}
    if b_shape is not None:
        grads["db"] = bias_gradient(dout, b_shape, per_example)
    if need_dx:
        grads["dx"] = input_gradient(dout, w, np.shape(x), stride, pad)
    return grads


def filter_gradient(
    x: np.ndarray,
    dout: np.ndarray,
    filter_shape: tuple,
    stride: int = 1,
    pad: int = 0,
    dw_mode: str = "batched",
) -> np.ndarray:
    """dL/dw [kh,kw,C,F] from the layer input x [N,H,W,C] and dout [N,Ho,Wo,F]:
    TensorFlow's ``Conv2DBackpropFilter``, summed over the batch (``dw_mode="per-sample"``:
    one call per sample, then the sum)."""
    check_choice("dw_mode", dw_mode, DW_MODES)
    if dw_mode == "per-sample":
        return np.sum(
            [
                filter_gradient(x[n : n + 1], dout[n : n + 1], filter_shape, stride, pad)
                for n in range(len(x))
            ],
            axis=0,
        )
    dw = tf.raw_ops.Conv2DBackpropFilter(
        input=x,
        filter_sizes=list(filter_shape),
        out_backprop=dout,
        strides=[1, stride, stride, 1],
        **_padding(pad),
    )
    return dw.numpy()


def input_gradient(
    dout: np.ndarray, w: np.ndarray, input_shape: tuple, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """dL/dx [N,H,W,C] for the unpadded input: TensorFlow's ``Conv2DBackpropInput``, the
    full correlation of dout [N,Ho,Wo,F] with the kernel w [kh,kw,C,F] turned 180 degrees."""
    dx = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=list(input_shape),
        filter=w,
        out_backprop=dout,
        strides=[1, stride, stride, 1],
        **_padding(pad),
    )
    return dx.numpy()


def bias_gradient(dout: np.ndarray, b_shape: tuple, per_example: bool = False) -> np.ndarray:
    """db = dout [N,Ho,Wo,F] summed over the batch and the positions, shaped ``b_shape``;
    [N, *b_shape] (over the positions only) when ``per_example``."""
    if per_example:
        return dout.sum(axis=(1, 2)).reshape(len(dout), *b_shape)
    return dout.sum(axis=(0, 1, 2)).reshape(b_shape)
