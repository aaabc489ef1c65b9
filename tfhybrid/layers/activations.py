"""Element-wise layers: ReLU, LeakyReLU, Sigmoid, Tanh and Rescaling, with hand-written
backward passes."""

from __future__ import annotations

import numpy as np

from tfhybrid import fast
from tfhybrid._tf import tf
from tfhybrid.choices import check_number
from tfhybrid.fast import activations as fast_activations
from tfhybrid.layers.base import Layer, Shape
from tfhybrid.ops.activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)


class ReLU(Layer):
    """max(x, 0); the backward passes dout where the input was > 0 (0 at 0, as TensorFlow)."""

    fast_path = True
    fused = True
    fused_needs = ("out",)
    prefix = "a"

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, params, x):
        return relu_forward(x)

    def cache_from(self, params, x, out, batch):
        return np.asarray(out) > 0  # out > 0 exactly where the input was

    def backward(self, dout, cache, need_dx=True):
        if fast.enabled():
            return fast_activations.relu_backward(dout, cache), {}
        return relu_backward(dout, cache), {}

    def reference(self, params, x):
        return tf.nn.relu(x)


class Sigmoid(Layer):
    """1 / (1 + e^-x); the backward multiplies by s (1 - s) of the cached output s."""

    fast_path = True
    fused = True
    fused_needs = ("out",)
    prefix = "s"

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, params, x):
        return sigmoid_forward(x)

    def cache_from(self, params, x, out, batch):
        return np.asarray(out)

    def backward(self, dout, cache, need_dx=True):
        if fast.enabled():
            return fast_activations.sigmoid_backward(dout, cache), {}
        return sigmoid_backward(dout, cache), {}

    def reference(self, params, x):
        return tf.sigmoid(x)


class Tanh(Layer):
    """tanh(x); the backward multiplies by 1 - t^2 of the cached output t."""

    fused = True
    fused_needs = ("out",)
    prefix = "t"

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, params, x):
        return tanh_forward(x)

    def cache_from(self, params, x, out, batch):
        return np.asarray(out)

    def backward(self, dout, cache, need_dx=True):
        return tanh_backward(dout, cache), {}

    def reference(self, params, x):
        return tf.tanh(x)


class LeakyReLU(Layer):
    """x where x > 0, else ``alpha`` x (Maas et al., 2013); the backward passes dout where
    the input was > 0 and alpha dout elsewhere (alpha at 0, as TensorFlow). ``alpha``:
    a number >= 0 (0.01, as CS231n); ValueError otherwise."""

    fused = True
    fused_needs = ("x",)
    prefix = "a"

    def __init__(self, alpha: float = 0.01, name: str | None = None):
        super().__init__(name)
        self.alpha = check_number("alpha", alpha, 0.0)

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, params, x):
        return leaky_relu_forward(x, self.alpha)

    def cache_from(self, params, x, out, batch):
        return leaky_relu_forward(np.asarray(x), self.alpha)[1]

    def backward(self, dout, cache, need_dx=True):
        return leaky_relu_backward(dout, cache), {}

    def reference(self, params, x):
        # Not tf.nn.leaky_relu: it takes alpha as a float32 attribute, off by 2e-9 relative
        # in float64. Where x > 0, else alpha x: the gradient at 0 is alpha, as TensorFlow's.
        return tf.where(x > 0, x, x * tf.constant(self.alpha, x.dtype))


class Rescaling(Layer):
    """x * scale + offset: a source's input scaling, as the first layer of its network."""

    fused = True
    fused_needs = ()
    prefix = "scaled"

    def __init__(self, scale: float = 1.0, offset: float = 0.0, name: str | None = None):
        super().__init__(name)
        self.scale, self.offset = float(scale), float(offset)

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, params, x):
        return np.asarray(x * self.scale + self.offset, dtype=x.dtype), None

    def cache_from(self, params, x, out, batch):
        return None

    def backward(self, dout, cache, need_dx=True):
        return dout * np.asarray(self.scale, dtype=dout.dtype), {}

    def reference(self, params, x):
        # tf.constant in x's dtype: tf.cast of a Python float would round it to float32 first.
        return x * tf.constant(self.scale, x.dtype) + tf.constant(self.offset, x.dtype)
