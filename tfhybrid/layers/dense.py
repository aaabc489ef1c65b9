"""Dense and Flatten: a matrix product and a reshape, with hand-written backward passes."""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.layers import initializers
from tfhybrid.layers.base import Layer, Shape
from tfhybrid.ops.dense import dense_backward, dense_forward
from tfhybrid.ops.reshape import flatten_backward, flatten_forward


class Dense(Layer):
    """x [N,D] -> x @ w + b [N,units]; w [D,units], b [1,units]. Backward in NumPy."""

    fused = True
    fused_needs = ("x",)
    prefix = "z"

    def __init__(
        self, units: int, *, kernel_init="he_normal", bias_init="zeros", name: str | None = None
    ):
        super().__init__(name)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be an integer >= 1, got {units!r}")
        self.units = int(units)
        self.kernel_init = initializers.get(kernel_init)
        self.bias_init = initializers.get(bias_init)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense needs inputs [N,D]; got [N,{','.join(map(str, input_shape))}]"
                " (put a Flatten before it)"
            )
        return {"w": (input_shape[0], self.units), "b": (1, self.units)}

    def init_params(self, rng, input_shape):
        shapes = self.param_shapes(input_shape)
        return {"w": self.kernel_init(rng, shapes["w"]), "b": self.bias_init(rng, shapes["b"])}

    def output_shape(self, input_shape: Shape) -> Shape:
        return (self.units,)

    def forward(self, params, x):
        return dense_forward(x, params["w"], params["b"])

    def cache_from(self, params, x, out, batch):
        return (np.asarray(x), params["w"], params["b"].shape)

    def backward(self, dout, cache, need_dx=True):
        grads = dense_backward(dout, cache, need_dx)
        return grads.get("dx"), {"w": grads["dw"], "b": grads["db"]}

    def backward_per_example(self, dout, cache, need_dx=True):
        """Sample n's own dw is x_n^T dout_n [D,units]; its own db is dout_n."""
        x, w, b_shape = cache
        dx, _ = self.backward(dout, cache, need_dx)
        dw = np.einsum("nd,nm->ndm", x, dout)  # a broadcast product loops over only M
        return dx, {"w": dw, "b": dout.reshape(len(dout), *b_shape).copy()}

    def reference(self, params, x):
        return tf.matmul(x, params["w"]) + params["b"]


class Flatten(Layer):
    """[N,H,W,C] -> [N,H*W*C] in NHWC order (row, column, channel)."""

    fused = True
    fused_needs = ()
    prefix = "flat"

    def __init__(self, report_gradient: bool = True, name: str | None = None):
        """``report_gradient=False``: leave this output out of the reported intermediate
        gradients (it is the previous output's gradient reshaped; the article names
        only that one, L1)."""
        super().__init__(name)
        self.report_gradient = bool(report_gradient)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, params, x):
        return flatten_forward(x)

    def cache_from(self, params, x, out, batch):
        return (batch, *self.input_shape)

    def backward(self, dout, cache, need_dx=True):
        return flatten_backward(dout, cache), {}

    def reference(self, params, x):
        return tf.reshape(x, [tf.shape(x)[0], -1])
