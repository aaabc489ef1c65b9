"""Conv2D: TensorFlow computes the output, dw and dx and NumPy sums db; or, with
``backend="numpy"``, NumPy computes all four from their formulas."""

from __future__ import annotations

import numpy as np

from tfhybrid import fast
from tfhybrid._tf import tf
from tfhybrid.choices import BIAS_GRAD_RULES, CONV_BACKENDS, DW_MODES, check_choice
from tfhybrid.fast import conv as fast_conv
from tfhybrid.fast import conv_plan, tf_kernels
from tfhybrid.layers import initializers
from tfhybrid.layers.base import Layer, Shape
from tfhybrid.ops import conv_numpy
from tfhybrid.ops.conv import conv2d_backward, conv2d_forward


def _positive_int(label: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Conv2D(Layer):
    """x [N,H,W,C] -> [N,Ho,Wo,filters]; w [k,k,C,filters], b [1,filters].

    ``padding``: zero rows and columns added on each side; Ho = (H + 2 pad - k)//stride + 1.
    ``dw_mode``: "batched" (one TensorFlow call sums dw over the batch) or "per-sample"
    (each sample's own convolution, as the source article, then their sum).
    ``bias_grad``: "exact" (the true db), or "seed": the article's program, which also
    averages db over the Ho x Wo output positions (1/400 of the true gradient there).

    ``backend``: "tf" (TensorFlow's kernels compute the output, dw and dx) or "numpy"
    (:mod:`tfhybrid.ops.conv_numpy`: the same convolution written as its formulas in
    NumPy, to read and step through; several times slower). Both are exact: they agree
    to float rounding, and the audit checks either against the tape.

    ``plan``: which exact TensorFlow formulation computes dw, each sample's dw and dx
    (:mod:`tfhybrid.fast.conv_plan`), chosen once by :meth:`choose_plan` when the network
    is built (``Sequential.summary()`` names it); None until then, and for "numpy".

    Raises ValueError for a size that is not a positive integer or an unknown choice.
    """

    fast_path = True
    fused = True
    fused_needs = ("x",)
    needs_tf = True
    prefix = "z"

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        use_bias: bool = True,
        dw_mode: str = "batched",
        bias_grad: str = "exact",
        backend: str = "tf",
        kernel_init="he_normal",
        bias_init="zeros",
        name: str | None = None,
    ):
        super().__init__(name)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.stride = _positive_int("stride", stride)
        self.padding = _positive_int("padding", padding, minimum=0)
        check_choice("dw_mode", dw_mode, DW_MODES)
        check_choice("bias_grad", bias_grad, BIAS_GRAD_RULES)
        check_choice("backend", backend, CONV_BACKENDS)
        self.use_bias, self.dw_mode, self.bias_grad = bool(use_bias), dw_mode, bias_grad
        self.backend = backend
        if backend == "numpy":  # NumPy runs its forward: no compiled TensorFlow forward
            self.fused = self.needs_tf = self.fast_path = False
        self.kernel_init = initializers.get(kernel_init)
        self.bias_init = initializers.get(bias_init)
        self.plan: conv_plan.ConvPlan | None = None

    def choose_plan(self, input_shape: Shape, dtype) -> conv_plan.ConvPlan | None:
        """Pick the backward's formulations for inputs [N, *input_shape] of ``dtype``
        (None for the NumPy backend, which has one)."""
        if self.backend == "numpy":
            return None
        shapes = self.param_shapes(input_shape)
        self.plan = conv_plan.choose(
            tuple(input_shape), shapes["w"], self.stride, self.padding, dtype
        )
        return self.plan

    def describe(self) -> str:
        """The formulations of its backward, for ``Sequential.summary()``."""
        if self.backend == "numpy":
            return "NumPy convolution (tfhybrid.ops.conv_numpy), a loop over the kernel's taps"
        return "" if self.plan is None else self.plan.describe()

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        k = self.kernel_size
        shapes = {"w": (k, k, input_shape[-1], self.filters)}
        if self.use_bias:
            shapes["b"] = (1, self.filters)
        return shapes

    def init_params(self, rng, input_shape):
        shapes = self.param_shapes(input_shape)
        params = {"w": self.kernel_init(rng, shapes["w"])}
        if self.use_bias:
            params["b"] = self.bias_init(rng, shapes["b"])
        return params

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, _ = input_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"Conv2D kernel {k} (padding {p}) does not fit input {h}x{w}")
        return (ho, wo, self.filters)

    def forward(self, params, x):
        if self.backend == "numpy":
            return conv_numpy.conv2d_forward(
                x, params["w"], params.get("b"), self.stride, self.padding
            )
        forward = fast_conv.conv2d_forward if fast.enabled() else conv2d_forward
        return forward(x, params["w"], params.get("b"), self.stride, self.padding)

    def cache_from(self, params, x, out, batch):
        b = params.get("b")
        return (x, params["w"], None if b is None else b.shape, self.stride, self.padding)

    def backward(self, dout, cache, need_dx=True):
        return self._backward(dout, cache, need_dx, per_example=False)

    def backward_per_example(self, dout, cache, need_dx=True):
        return self._backward(dout, cache, need_dx, per_example=True)

    def _backward(self, dout, cache, need_dx, per_example):
        if self.backend == "numpy":  # per-sample dw_mode: the same sum, of the same terms
            grads = conv_numpy.conv2d_backward(dout, cache, need_dx, per_example)
        else:
            grads = self._tf_backward(dout, cache, need_dx, per_example)
        mine = {"w": grads["dw"]}
        if "db" in grads:
            db = grads["db"]
            if self.bias_grad == "seed":  # the article averages over the output positions
                db /= dout.shape[1] * dout.shape[2]
            mine["b"] = db
        return grads.get("dx"), mine

    def _tf_backward(self, dout, cache, need_dx, per_example):
        if not fast.enabled():  # the definition: one eager TensorFlow call per gradient
            return conv2d_backward(
                dout, cache, dw_mode=self.dw_mode, need_dx=need_dx, per_example=per_example
            )
        return fast_conv.conv2d_backward(
            dout,
            cache,
            dw_mode=self.dw_mode,
            need_dx=need_dx,
            per_example=per_example,
            plan=self.plan,
        )

    def reference(self, params, x):
        out = tf.nn.conv2d(
            x, params["w"], strides=self.stride, padding=tf_kernels.padding(self.padding)
        )
        if self.use_bias:
            out = tf.nn.bias_add(out, tf.reshape(params["b"], [-1]))
        return out
