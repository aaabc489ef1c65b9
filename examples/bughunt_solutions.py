"""The answers to the bug hunt of examples/bughunt.py (docs/bughunt.md): read it last.

The three layers again, each fixed in one line (marked ``# fixed:``); their outputs and
their references are the exercise's. What was wrong, and why:

1. ``MySigmoid``: the derivative of the sigmoid is s (1 - s) of its **output** s, but the
   forward cached its input x, so the backward computed x (1 - x). Cache the output.
2. ``MyMaxPool2D``: the forward numbers each window's k*k inputs row by row, so input
   ``where`` of a window sits in row ``where // k`` and column ``where % k``. The backward
   swapped the two: each window's gradient went to the mirror image of its maximum
   (across the window's diagonal), a position the maximum never was, unless it sat on
   that diagonal.
3. ``MyDense``: the bias is added to every sample, so its gradient is the **sum** of dout
   over the batch; the mean divides it by N a second time (the loss's mean over the batch
   is already in dout).

``python scripts/check_gradients.py --model examples/bughunt.py:fixed_net --batch 4``
audits the network built with these layers: every gradient matches, exit code 0.
"""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.layers import Layer

Shape = tuple[int, ...]


class MySigmoid(Layer):
    """1 / (1 + e^-x), element by element; the backward reads the cached output."""

    prefix = "s"

    def forward(self, params, x):
        out = 1 / (1 + np.exp(-x))
        return out, out  # fixed: the derivative needs the output, not the input

    def backward(self, dout, cache, need_dx=True):
        s = cache
        return dout * s * (1 - s), {}

    def reference(self, params, x):
        return tf.sigmoid(x)


class MyMaxPool2D(Layer):
    """The maximum of each ``size`` x ``size`` window, windows side by side (stride = size);
    the backward sends each window's gradient to its (first) maximum."""

    prefix = "p"

    def __init__(self, size: int = 2, name: str | None = None):
        super().__init__(name)
        self.size = int(size)

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = input_shape
        if h % self.size or w % self.size:
            raise ValueError(f"MyMaxPool2D({self.size}) needs H and W divisible by it, got {h}x{w}")
        return (h // self.size, w // self.size, c)

    def forward(self, params, x):
        n, h, w, c = x.shape
        k = self.size
        # Each window's k*k inputs on the last axis, row by row.
        windows = x.reshape(n, h // k, k, w // k, k, c).transpose(0, 1, 3, 5, 2, 4)
        windows = windows.reshape(n, h // k, w // k, c, k * k)
        where = windows.argmax(axis=-1)  # which input of its window each maximum is
        return windows.max(axis=-1), (x.shape, where)

    def backward(self, dout, cache, need_dx=True):
        (n, h, w, c), where = cache
        k = self.size
        dx = np.zeros((n, h, w, c), dtype=dout.dtype)
        row, col = where // k, where % k  # fixed: input r*k + c of a window is row r, column c
        sample, i, j, channel = np.indices(where.shape)
        dx[sample, i * k + row, j * k + col, channel] = dout
        return dx, {}

    def reference(self, params, x):
        return tf.nn.max_pool2d(x, self.size, self.size, "VALID")


class MyDense(Layer):
    """x [N,D] @ w [D,units] + b [1,units]."""

    prefix = "z"

    def __init__(self, units: int, name: str | None = None):
        super().__init__(name)
        self.units = int(units)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"w": (input_shape[0], self.units), "b": (1, self.units)}

    def forward(self, params, x):
        return x @ params["w"] + params["b"], (x, params["w"])

    def backward(self, dout, cache, need_dx=True):
        x, w = cache
        dw = x.T @ dout
        db = dout.sum(axis=0, keepdims=True)  # fixed: a sum over the batch, not a mean
        return dout @ w.T, {"w": dw, "b": db}

    def reference(self, params, x):
        return tf.matmul(x, params["w"]) + params["b"]
