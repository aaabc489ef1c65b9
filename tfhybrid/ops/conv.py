"""Convolution op pair: TensorFlow computes the forward, dw and dx; NumPy sums db."""

from __future__ import annotations

import numpy as np

from tfhybrid.ops import tf_kernels

DW_MODES = ("batched", "per-sample")


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0
) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C], w [kh,kw,C,F], b [F] or [1,F] -> (out [N,Ho,Wo,F], cache).

    Ho = (H + 2 pad - kh) // stride + 1 (zero padding, cross-correlation as in TF).
    """
    out = tf_kernels.conv2d(x, w, b, stride, pad).numpy()
    return out, (x, w, np.shape(b), stride, pad)


def conv2d_backward(
    dout: np.ndarray, cache: tuple, dw_mode: str = "batched", need_dx: bool = True
) -> dict[str, np.ndarray]:
    """dout [N,Ho,Wo,F] -> {"dw": [kh,kw,C,F], "db": shape of b, "dx": [N,H,W,C]}.

    ``dw_mode="per-sample"`` computes each sample's filter gradient and sums them;
    "batched" lets TensorFlow reduce over the batch inside one kernel. Both are exact.
    ``need_dx=False`` skips dx (the first layer's input needs no gradient).
    """
    x, w, b_shape, stride, pad = cache
    grads = {
        "dw": filter_gradient(x, dout, w.shape, stride, pad, dw_mode),
        "db": dout.sum(axis=(0, 1, 2)).reshape(b_shape),
    }
    if need_dx:
        grads["dx"] = tf_kernels.input_grad(dout, w, x.shape, stride, pad).numpy()
    return grads


def filter_gradient(
    x: np.ndarray, dout: np.ndarray, filter_shape: tuple, stride: int = 1, pad: int = 0,
    dw_mode: str = "batched",
) -> np.ndarray:
    """dL/dw [kh,kw,C,F] from the layer input x [N,H,W,C] and dout [N,Ho,Wo,F]."""
    shape = [int(d) for d in filter_shape]
    if dw_mode == "batched":
        return tf_kernels.filter_grad(x, dout, shape, stride, pad).numpy()
    if dw_mode == "per-sample":
        return per_sample_filter_gradients(x, dout, shape, stride, pad).sum(axis=0)
    raise ValueError(f"dw_mode must be one of {DW_MODES}, got {dw_mode!r}")


def per_sample_filter_gradients(
    x: np.ndarray, dout: np.ndarray, filter_shape: tuple, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """Each sample's contribution to dL/dw: [N,kh,kw,C,F]; their sum over N is dw."""
    shape = [int(d) for d in filter_shape]
    return tf_kernels.filter_grad_per_sample(x, dout, shape, stride, pad).numpy()
