"""AvgPool2D and MaxPool2D: forward in TensorFlow, backward written by hand in NumPy."""

from __future__ import annotations

import numpy as np

from tfhybrid import fast
from tfhybrid._tf import tf
from tfhybrid.choices import TIE_RULES, check_choice
from tfhybrid.fast import maxpool as fast_maxpool
from tfhybrid.fast import pooling as fast_pooling
from tfhybrid.layers.base import Layer, Shape
from tfhybrid.ops import maxpool
from tfhybrid.ops.maxpool import check_pool_options, pool_output_size
from tfhybrid.ops.pooling import avg_pool_backward, avg_pool_forward


class AvgPool2D(Layer):
    """Mean of each size x size window, VALID windows: [N,H,W,C] -> [N,Ho,Wo,C]."""

    fast_path = True
    fused = True
    fused_needs = ()
    prefix = "p"

    def __init__(self, size: int = 2, stride: int | None = None, name: str | None = None):
        super().__init__(name)
        self.size, self.stride = size, size if stride is None else stride
        check_pool_options(self.size, self.stride, 0, "first")

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = input_shape
        ho, wo = (pool_output_size(d, self.size, self.stride, 0) for d in (h, w))
        if ho < 1 or wo < 1:
            raise ValueError(f"AvgPool2D window {self.size} does not fit input {h}x{w}")
        return (ho, wo, c)

    def forward(self, params, x):
        return avg_pool_forward(x, self.size, self.stride)

    def cache_from(self, params, x, out, batch):
        return ((batch, *self.input_shape), self.size, self.stride)

    def backward(self, dout, cache, need_dx=True):
        if fast.enabled():
            return fast_pooling.avg_pool_backward(dout, cache), {}
        return avg_pool_backward(dout, cache), {}

    def backward_through(self, below, dout, cache, below_cache):
        """This backward and that of the layer ``below`` it in one pass, or None.

        A built-in Sigmoid below windows that tile its output: the spread gradient and
        the sigmoid's derivative in one pass over a reshaped view (the same numbers).
        Sequential uses it when the gradient between the two is not reported."""
        from tfhybrid.layers.activations import Sigmoid

        if (
            not fast.enabled()
            or type(self).backward is not AvgPool2D.backward
            or (type(below).backward is not Sigmoid.backward)
        ):
            return None
        return fast_pooling.avg_pool_sigmoid_backward(dout, cache, below_cache)

    def reference(self, params, x):
        return tf.nn.avg_pool2d(x, ksize=self.size, strides=self.stride, padding="VALID")


class MaxPool2D(Layer):
    """Max of each window, with ``padding`` rows/columns of ``pad_value`` on each side.

    ``ties``: "first" sends a window's gradient to its first maximum (the true gradient,
    as TensorFlow); "all" to every tied maximum (the rule of sources 002 and 003, kept
    so the audit can show it is wrong).
    """

    fast_path = True
    fused = True
    fused_needs = ("x", "out")
    prefix = "p"

    def __init__(
        self,
        size: int = 2,
        stride: int | None = None,
        *,
        padding: int = 0,
        pad_value: float = 0.0,
        ties: str = "first",
        name: str | None = None,
    ):
        super().__init__(name)
        check_choice("pool_ties", ties, TIE_RULES)
        self.size, self.stride = size, size if stride is None else stride
        self.padding, self.pad_value, self.ties = padding, float(pad_value), ties
        check_pool_options(self.size, self.stride, self.padding, ties)

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = input_shape
        ho, wo = (pool_output_size(d, self.size, self.stride, self.padding) for d in (h, w))
        if ho < 1 or wo < 1:
            raise ValueError(
                f"MaxPool2D window {self.size} (padding {self.padding}) does not fit input {h}x{w}"
            )
        return (ho, wo, c)

    def forward(self, params, x):
        ops = fast_maxpool if fast.enabled() else maxpool
        return ops.max_pool_forward(
            x, self.size, self.stride, self.padding, self.pad_value, self.ties
        )

    def cache_from(self, params, x, out, batch):
        ops = fast_maxpool if fast.enabled() else maxpool
        return ops.max_pool_cache(
            np.asarray(x),
            np.asarray(out),
            self.size,
            self.stride,
            self.padding,
            self.pad_value,
            self.ties,
        )

    def backward(self, dout, cache, need_dx=True):
        ops = fast_maxpool if fast.enabled() else maxpool
        return ops.max_pool_backward(dout, cache), {}

    def backward_through(self, below, dout, cache, below_cache):
        """This backward and that of the layer ``below`` it in one pass, or None.

        A built-in ReLU below windows that tile its output: the ReLU's mask applied to
        dout at the pooled size, then routed (the same numbers, see
        :func:`tfhybrid.fast.maxpool.max_pool_relu_backward`). Sequential uses it when
        the gradient between the two is not reported."""
        from tfhybrid.layers.activations import ReLU

        if (
            not fast.enabled()
            or type(self).backward is not MaxPool2D.backward
            or type(self).cache_from is not MaxPool2D.cache_from
            or type(below).backward is not ReLU.backward
        ):
            return None
        return fast_maxpool.max_pool_relu_backward(dout, cache)

    def reference(self, params, x):
        if self.padding:
            p = self.padding
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=self.pad_value)
        return tf.nn.max_pool2d(x, self.size, self.stride, "VALID")
