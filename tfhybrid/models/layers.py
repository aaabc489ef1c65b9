"""Layers for :class:`~tfhybrid.models.sequential.SequentialNet`: an op pair plus its TF twin.

Each layer names the parameters it owns and offers three things:

- ``forward(params, x) -> (out, cache)`` and ``backward(dout, cache, need_dx) -> (dx, grads)``:
  the hybrid computation (convolutions in TensorFlow, everything else in NumPy);
- ``reference(params, x)``: the same function in plain TensorFlow ops, for
  ``tf.GradientTape`` to differentiate in the gradient tests and the audit.
"""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.ops.activations import relu_backward, relu_forward
from tfhybrid.ops.conv import conv2d_backward, conv2d_forward
from tfhybrid.ops.dense import dense_backward, dense_forward
from tfhybrid.ops.maxpool import TIE_RULES, max_pool_backward, max_pool_forward
from tfhybrid.ops.reshape import flatten_backward, flatten_forward


def _pad(x, pad: int, value: float = 0.0):
    return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], constant_values=value)


class Conv:
    """Convolution [kh,kw,C,F] with stride and zero padding; optional bias [F].

    TensorFlow computes the output, dw and dx; NumPy sums db.
    """

    def __init__(self, w: str, b: str | None, stride: int = 1, pad: int = 0,
                 dw_mode: str = "batched"):
        self.w, self.b, self.stride, self.pad, self.dw_mode = w, b, stride, pad, dw_mode
        self.param_names = (w,) if b is None else (w, b)

    def forward(self, params, x):
        w = params[self.w]
        b = params[self.b] if self.b else np.zeros(w.shape[-1], dtype=w.dtype)
        return conv2d_forward(x, w, b, self.stride, self.pad)

    def backward(self, dout, cache, need_dx=True):
        grads = conv2d_backward(dout, cache, dw_mode=self.dw_mode, need_dx=need_dx)
        mine = {self.w: grads["dw"]}
        if self.b:
            mine[self.b] = grads["db"]
        return grads.get("dx"), mine

    def reference(self, params, x):
        out = tf.nn.conv2d(_pad(x, self.pad), params[self.w], self.stride, "VALID")
        return out + tf.reshape(params[self.b], [-1]) if self.b else out


class Dense:
    """x [N,D] @ w [D,M] + b [1,M], in NumPy."""

    def __init__(self, w: str, b: str):
        self.w, self.b = w, b
        self.param_names = (w, b)

    def forward(self, params, x):
        return dense_forward(x, params[self.w], params[self.b])

    def backward(self, dout, cache, need_dx=True):
        grads = dense_backward(dout, cache, need_dx)
        return grads.get("dx"), {self.w: grads["dw"], self.b: grads["db"]}

    def reference(self, params, x):
        return x @ params[self.w] + params[self.b]


class ReLU:
    param_names = ()

    def forward(self, params, x):
        return relu_forward(x)

    def backward(self, dout, cache, need_dx=True):
        return relu_backward(dout, cache), {}

    def reference(self, params, x):
        return tf.nn.relu(x)


class MaxPool:
    """Max pooling; ``ties="all"`` is the sources' (wrong) tie rule, kept for the audit."""

    param_names = ()

    def __init__(self, size: int = 2, stride: int = 2, pad: int = 0, pad_value: float = 0.0,
                 ties: str = "first"):
        if ties not in TIE_RULES:
            raise ValueError(f"pool_ties must be one of {TIE_RULES}, got {ties!r}")
        self.size, self.stride, self.pad, self.pad_value, self.ties = (
            size, stride, pad, pad_value, ties)

    def forward(self, params, x):
        return max_pool_forward(x, self.size, self.stride, self.pad, self.pad_value, self.ties)

    def backward(self, dout, cache, need_dx=True):
        return max_pool_backward(dout, cache), {}

    def reference(self, params, x):
        return tf.nn.max_pool2d(_pad(x, self.pad, self.pad_value), self.size, self.stride,
                                "VALID")


class Flatten:
    param_names = ()

    def forward(self, params, x):
        return flatten_forward(x)

    def backward(self, dout, cache, need_dx=True):
        return flatten_backward(dout, cache), {}

    def reference(self, params, x):
        return tf.reshape(x, [tf.shape(x)[0], -1])
