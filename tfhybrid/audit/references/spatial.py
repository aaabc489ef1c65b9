"""References of the spatial ops: convolution, max and average pooling, in any layout.

Each factory takes the op's settings and returns ``reference(x, ...)`` in TensorFlow ops,
taking its tensors positionally, in the layout the checked code works in (see
:mod:`tfhybrid.audit.layouts`): NHWC, NCHW, or one image without a batch axis (HWC, CHW).
"""

from __future__ import annotations

from collections.abc import Callable

from tfhybrid._tf import tf
from tfhybrid.audit.layouts import TF_KERNEL, checked_kernel, checked_layout, permutation
from tfhybrid.audit.references.layout import as_vector, from_nhwc, pair, to_nhwc
from tfhybrid.audit.references.naming import named


def conv(
    *,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    layout: str = "NHWC",
    kernel: str | None = None,
) -> Callable:
    """``reference(x, w, b=None)``: the cross-correlation of CNNs (``tf.nn.conv2d``)
    of ``x`` zero-padded by ``pad`` on each side, with stride ``stride``, plus ``b``.

    ``x`` in ``layout``; ``w`` in ``kernel`` (default: HWCF for a channels-last layout,
    CS231n's FCHW = (F, C, HH, WW) for a channels-first one); ``b`` any shape of F
    elements ((F,), (1, F), (F, 1)). Output (H + 2 pad - HH) // stride + 1 high (and
    so wide), in ``layout``. Source: CS231n assignment 2's ``conv_forward_naive``.
    Raises ValueError for a bad setting, or when x's channels and w's disagree (a
    layout slip).
    """
    layout = checked_layout(layout)
    kernel = checked_kernel(kernel, layout)
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(pad, "pad")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be >= 1, got {stride!r}")

    def reference(x, w, b=None):
        x4 = to_nhwc(x, layout)
        if len(w.shape) != 4:
            raise ValueError(f"w has shape {list(w.shape)}; a kernel has 4 axes ({kernel})")
        k = tf.transpose(w, permutation(kernel, TF_KERNEL))
        if int(k.shape[2]) != int(x4.shape[3]):
            raise ValueError(
                f"x {list(x.shape)} in {layout} has {int(x4.shape[3])} channels, but w "
                f"{list(w.shape)} in {kernel} takes {int(k.shape[2])}: check layout= and kernel="
            )
        x4 = tf.pad(x4, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
        out = tf.nn.conv2d(x4, k, strides=[1, sh, sw, 1], padding="VALID")
        if b is not None:
            out = out + as_vector(b, int(k.shape[3]), "b")
        return from_nhwc(out, layout)

    return named(reference, "conv", stride=stride, pad=pad, layout=layout, kernel=kernel)


def _pool(op, name: str, size, stride, layout: str) -> Callable:
    layout = checked_layout(layout)
    window = pair(size, "size")
    step = window if stride is None else pair(stride, "stride")
    if min(window) < 1 or min(step) < 1:
        raise ValueError(f"size and stride must be >= 1, got size {size!r}, stride {stride!r}")

    def reference(x):
        out = op(to_nhwc(x, layout), ksize=window, strides=step, padding="VALID")
        return from_nhwc(out, layout)

    return named(reference, name, size=size, stride=stride, layout=layout)


def max_pool(
    size: int | tuple[int, int] = 2,
    *,
    stride: int | tuple[int, int] | None = None,
    layout: str = "NHWC",
) -> Callable:
    """``reference(x)``: the maximum of each ``size`` window, windows ``stride`` apart
    (default ``size``: no overlap), no padding (``tf.nn.max_pool2d``, VALID), in
    ``layout``. At tied maxima TensorFlow's gradient goes to the first one. Raises
    ValueError for a bad setting."""
    return _pool(tf.nn.max_pool2d, "max_pool", size, stride, layout)


def avg_pool(
    size: int | tuple[int, int] = 2,
    *,
    stride: int | tuple[int, int] | None = None,
    layout: str = "NHWC",
) -> Callable:
    """``reference(x)``: the mean of each ``size`` window, windows ``stride`` apart
    (default ``size``), no padding (``tf.nn.avg_pool2d``, VALID), in ``layout``. Raises
    ValueError for a bad setting."""
    return _pool(tf.nn.avg_pool2d, "avg_pool", size, stride, layout)
