"""Batch and layer normalization, with hand-written backward passes (ops/normalization.py).

Both normalize over the last axis's features, [N, D] or NHWC [N, H, W, C], and scale and
shift the result by learned ``gamma`` [C] and ``beta`` [C].
"""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.choices import check_number
from tfhybrid.layers.base import Layer, Shape
from tfhybrid.ops.normalization import (
    batchnorm_backward,
    batchnorm_forward,
    batchnorm_inference_backward,
    batchnorm_inference_forward,
    layernorm_backward,
    layernorm_backward_per_example,
    layernorm_forward,
)


def _check_epsilon(epsilon) -> float:
    return check_number("epsilon", epsilon, 0.0)


class _ScaleShift(Layer):
    """What both normalizations share: gamma (ones) and beta (zeros) over the last axis,
    and an output of the input's shape."""

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"gamma": (input_shape[-1],), "beta": (input_shape[-1],)}

    def init_params(self, rng, input_shape):
        channels = input_shape[-1]
        return {"gamma": np.ones(channels), "beta": np.zeros(channels)}

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)


class BatchNormalization(_ScaleShift):
    """Batch normalization (Ioffe & Szegedy, 2015) over every axis but the last.

    Training mode: each channel normalized by the batch's mean and (biased) variance over
    N (and H, W), then ``gamma * xhat + beta``; the backward goes through the batch
    statistics (the full formula, ops/normalization.py). The running statistics move
    towards the batch's: ``running = momentum * running + (1 - momentum) * batch``.
    Inference mode: normalized by the running statistics, constants there.

    ``momentum`` in [0, 1) (0.9, as CS231n and Deep Learning from Scratch), ``epsilon``
    >= 0 added to the variance (1e-5). Parameters gamma (ones) and beta (zeros), [C];
    state running_mean (zeros) and running_var (ones), [C]. No per-example gradients:
    the batch statistics couple the samples. Raises ValueError for a bad momentum or
    epsilon.
    """

    prefix = "bn"
    couples_batch = True

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, name: str | None = None):
        super().__init__(name)
        self.momentum = check_number("momentum", momentum, 0.0, 1.0)
        self.epsilon = _check_epsilon(epsilon)

    def state_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"running_mean": (input_shape[-1],), "running_var": (input_shape[-1],)}

    def init_state(self, input_shape):
        channels = input_shape[-1]
        return {"running_mean": np.zeros(channels), "running_var": np.ones(channels)}

    def forward(self, params, x, *, training, state):
        gamma, beta = params["gamma"], params["beta"]
        if not training:
            out, cache = batchnorm_inference_forward(
                x, gamma, beta, state["running_mean"], state["running_var"], self.epsilon
            )
            return out, ("inference", cache)
        out, cache = batchnorm_forward(x, gamma, beta, self.epsilon)
        m = np.asarray(self.momentum, dtype=x.dtype)
        state["running_mean"] = m * state["running_mean"] + (1 - m) * cache.mean
        state["running_var"] = m * state["running_var"] + (1 - m) * cache.var
        return out, ("training", cache)

    def backward(self, dout, cache, need_dx=True):
        mode, cache = cache
        step = batchnorm_backward if mode == "training" else batchnorm_inference_backward
        dx, dgamma, dbeta = step(dout, cache)
        return (dx if need_dx else None), {"gamma": dgamma, "beta": dbeta}

    def backward_per_example(self, dout, cache, need_dx=True):
        raise ValueError(
            "per-example gradients are not defined for BatchNormalization: its batch "
            "statistics couple the samples, so no sample has a gradient of its own"
        )

    def reference(self, params, x, *, training, state):
        axes = list(range(len(x.shape) - 1))
        if training:
            mean, var = tf.nn.moments(x, axes)
        else:
            mean = tf.constant(state["running_mean"], x.dtype)
            var = tf.constant(state["running_var"], x.dtype)
        return tf.nn.batch_normalization(
            x, mean, var, params["beta"], params["gamma"], tf.constant(self.epsilon, x.dtype)
        )


class LayerNormalization(_ScaleShift):
    """Layer normalization (Ba, Kiros & Hinton, 2016) over the last axis: each sample's
    features (each position's channels, in NHWC) normalized by their own mean and
    variance, then ``gamma * xhat + beta``. The same in training and inference; the
    samples stay independent, so per-example gradients are defined. ``epsilon`` >= 0
    (1e-5). Parameters gamma (ones) and beta (zeros), [C]."""

    prefix = "ln"

    def __init__(self, epsilon: float = 1e-5, name: str | None = None):
        super().__init__(name)
        self.epsilon = _check_epsilon(epsilon)

    def forward(self, params, x):
        return layernorm_forward(x, params["gamma"], params["beta"], self.epsilon)

    def backward(self, dout, cache, need_dx=True):
        dx, dgamma, dbeta = layernorm_backward(dout, cache)
        return (dx if need_dx else None), {"gamma": dgamma, "beta": dbeta}

    def backward_per_example(self, dout, cache, need_dx=True):
        dx, dgamma, dbeta = layernorm_backward_per_example(dout, cache)
        return (dx if need_dx else None), {"gamma": dgamma, "beta": dbeta}

    def reference(self, params, x):
        mean, var = tf.nn.moments(x, [len(x.shape) - 1], keepdims=True)
        return tf.nn.batch_normalization(
            x, mean, var, params["beta"], params["gamma"], tf.constant(self.epsilon, x.dtype)
        )
