"""The convolution op pair of :mod:`tfhybrid.ops.conv`, as the training step runs it: the
forward, dw and dx as compiled TensorFlow calls (:mod:`tfhybrid.fast.tf_kernels`) in the
formulation :mod:`tfhybrid.fast.conv_plan` chose for the shapes, dout handed over in place
where aligned, and db as one matrix-vector product. Equal to the definition to float
rounding (``tests/test_fast_equal.py``)."""

from __future__ import annotations

import functools

import numpy as np

from tfhybrid.choices import DW_MODES, check_choice
from tfhybrid.fast import buffers, conv_plan, tf_kernels


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, pad: int = 0
) -> tuple[np.ndarray, tuple]:
    """x [N,H,W,C], w [kh,kw,C,F], b [F] or [1,F] or None -> (out [N,Ho,Wo,F], cache).

    Ho = (H + 2 pad - kh) // stride + 1 (zero padding, cross-correlation as in TF).
    """
    x = np.asarray(x)
    fn = tf_kernels.conv_forward_fn(x.dtype, x.shape[1:], w.shape, stride, pad, b is not None)
    out = (fn(x, w) if b is None else fn(x, w, np.reshape(b, -1))).numpy()
    return out, (x, w, None if b is None else np.shape(b), stride, pad)


def conv2d_backward(
    dout: np.ndarray,
    cache: tuple,
    dw_mode: str = "batched",
    need_dx: bool = True,
    per_example: bool = False,
    plan: conv_plan.ConvPlan | None = None,
) -> dict[str, np.ndarray]:
    """dout [N,Ho,Wo,F] -> {"dw": [kh,kw,C,F], "db": shape of b, "dx": [N,H,W,C]}.

    ``dw_mode="per-sample"`` computes each sample's filter gradient and sums them;
    "batched" lets TensorFlow reduce over the batch inside one kernel. Both are exact.
    ``need_dx=False`` skips dx (the first layer's input needs no gradient).
    ``per_example=True``: dw [N,kh,kw,C,F] and db [N, *shape of b], each sample's own.
    ``x`` in the cache may be a NumPy array or a tensor. ``plan``: the TensorFlow
    formulations (:mod:`tfhybrid.fast.conv_plan`; default: :func:`conv_plan.choose`'s).
    """
    x, w, b_shape, stride, pad = cache
    check_choice("dw_mode", dw_mode, DW_MODES)
    per_sample = per_example or dw_mode == "per-sample"
    fn = backward_fn(
        dout.dtype, tuple(x.shape[1:]), w.shape, stride, pad, need_dx, per_sample, plan, len(dout)
    )
    # dout and w read in place where aligned; without dx the call never reads w
    w_in = buffers.as_tensor(w) if need_dx else unused_filter(w.shape, dout.dtype)
    dw, dx = fn(x, buffers.as_tensor(dout), w_in)
    dw = np.asarray(dw)
    grads = {"dw": dw if per_example or not per_sample else dw.sum(axis=0)}
    if b_shape is not None:
        grads["db"] = bias_gradient(dout, b_shape, per_example)
    if need_dx:
        grads["dx"] = np.asarray(dx)
    return grads


def backward_fn(dtype, x_shape, w_shape, stride, pad, need_dx, per_sample, plan=None, batch=None):
    """The compiled backward call f(x, dout, w) -> (dw, dx) that ``plan`` names, for a
    batch of ``batch`` samples (None: any, as a large batch)."""
    if plan is None:
        plan = conv_plan.choose(x_shape, w_shape, stride, pad, dtype)
    if per_sample:
        xla = plan.per_sample_xla
    else:
        xla = plan.xla if batch is None else plan.batch_xla(batch)
    return tf_kernels.conv_backward_fn(
        np.dtype(dtype),
        tuple(x_shape),
        tuple(w_shape),
        stride,
        pad,
        need_dx,
        per_sample,
        dw=plan.per_sample if per_sample else plan.dw,
        dx=plan.dx,
        xla=xla,
    )


@functools.cache
def unused_filter(shape: tuple, dtype):
    """A zero tensor of the filter's shape, made once, for the backward call's ``w``
    argument when it computes no dx and so never reads it: handing over the layer's
    own w would convert (copy) it on every call, about 60 µs."""
    from tfhybrid._tf import tf

    with tf.init_scope():  # an eager tensor, even if first asked for while tracing
        return tf.zeros(tuple(shape), np.dtype(dtype))


def bias_gradient(dout: np.ndarray, b_shape: tuple, per_example: bool = False) -> np.ndarray:
    """Sum of dout [N,Ho,Wo,F] over batch and positions, shaped ``b_shape``; [N, *b_shape]
    (over positions only) when ``per_example``.

    One matrix-vector product: NumPy's reduction over the leading axes of [N*Ho*Wo, F]
    runs F-element inner loops and costs several times more.
    """
    f = dout.shape[-1]
    if per_example:
        rows = dout.reshape(len(dout), -1, f)
        return (np.ones(rows.shape[1], dout.dtype) @ rows).reshape(len(dout), *b_shape)
    rows = dout.reshape(-1, f)
    return (np.ones(len(rows), dtype=dout.dtype) @ rows).reshape(b_shape)


def filter_gradient(
    x: np.ndarray,
    dout: np.ndarray,
    filter_shape: tuple,
    stride: int = 1,
    pad: int = 0,
    dw_mode: str = "batched",
    plan: conv_plan.ConvPlan | None = None,
) -> np.ndarray:
    """dL/dw [kh,kw,C,F] from the layer input x [N,H,W,C] and dout [N,Ho,Wo,F]."""
    check_choice("dw_mode", dw_mode, DW_MODES)
    fn = backward_fn(
        dout.dtype,
        tuple(x.shape[1:]),
        tuple(filter_shape),
        stride,
        pad,
        False,
        dw_mode == "per-sample",
        plan,
        len(dout),
    )
    dw = np.asarray(fn(x, dout, unused_filter(filter_shape, dout.dtype))[0])
    return dw.sum(axis=0) if dw_mode == "per-sample" else dw
