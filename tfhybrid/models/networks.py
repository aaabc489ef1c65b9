"""The networks of the other source tutorials, in the layers of :mod:`tfhybrid.layers`.

Every convolution (forward, dw, dx) runs in TensorFlow and every other gradient is
written out in NumPy. Each builder returns a :class:`~tfhybrid.Sequential`.
"""

from __future__ import annotations

import numpy as np

from tfhybrid.catalog import layer_options, network
from tfhybrid.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Rescaling
from tfhybrid.models.sequential import Sequential

LENET5_INITS = ("he", "sketch")


@network("lenet5")
def lenet5(
    *, seed: int = 0, dtype=np.float32, init: str = "he", params=None, **options
) -> Sequential:
    """Doc 000's TensorFlow sketch of LeNet-5.

        x [N,28,28,1] -> conv 5x5x6 (z1) -> ReLU (a1) -> max pool 2 (p1 [N,12,12,6])
          -> conv 5x5x16 (z2) -> ReLU (a2) -> max pool 2 (p2 [N,4,4,16]) -> flatten [N,256]
          -> dense 120 (z3) -> ReLU -> dense 84 (z4) -> ReLU -> dense 10 (z5, logits)

    ``init``: "he" (default: normal with variance 2/fan-in, zero biases) or "sketch"
    (the sketch's normal x 0.01 for every weight and bias; the sketch gives no training
    settings, and from that start plain SGD stalls for a long while).
    """
    if init not in LENET5_INITS:
        raise ValueError(f"init must be one of {LENET5_INITS}, got {init!r}")
    w, b = ("he_normal", "zeros") if init == "he" else (0.01, 0.01)
    conv = dict(kernel_init=w, bias_init=b, **layer_options(Conv2D, options))
    pool = layer_options(MaxPool2D, options)
    dense = dict(kernel_init=w, bias_init=b)
    return Sequential(
        [
            Conv2D(6, 5, **conv),
            ReLU(),
            MaxPool2D(2, **pool),
            Conv2D(16, 5, **conv),
            ReLU(),
            MaxPool2D(2, **pool),
            Flatten(),
            Dense(120, **dense),
            ReLU(),
            Dense(84, **dense),
            ReLU(),
            Dense(10, **dense),
        ],
        seed=seed,
        dtype=dtype,
        params=params,
        name="lenet5",
    )


@network("numpy-cnn")
def numpy_cnn(*, seed: int = 0, dtype=np.float32, params=None, **options) -> Sequential:
    """Doc 002's NumPy CNN.

        x * 255/225 -> conv 3x3x4 (z1 [N,26,26,4]) -> max pool 2 (p1 13x13) -> conv 3x3x16
          (z2 [N,11,11,16]) -> max pool 2 (p2 [N,5,5,16]; the 11th row/column is dropped)
          -> flatten [N,400] -> dense 256 (z3) -> ReLU -> dense 128 (z4) -> ReLU
          -> dense 10 (z5, logits)

    No activation after the convolutions, as the source; its inputs are the pixel values
    divided by 225 (not 255). Weights standard normal / sqrt(fan_out / 2), biases 0.
    """
    conv = dict(kernel_init="scaled_by_fan_out", **layer_options(Conv2D, options))
    pool = layer_options(MaxPool2D, options)
    dense = dict(kernel_init="scaled_by_fan_out")
    return Sequential(
        [
            Rescaling(255.0 / 225.0),
            Conv2D(4, 3, **conv),
            MaxPool2D(2, **pool),
            Conv2D(16, 3, **conv),
            MaxPool2D(2, **pool),
            Flatten(),
            Dense(256, **dense),
            ReLU(),
            Dense(128, **dense),
            ReLU(),
            Dense(10, **dense),
        ],
        seed=seed,
        dtype=dtype,
        params=params,
        name="numpy-cnn",
    )


@network("conv8")
def conv8(*, seed: int = 0, dtype=np.float32, params=None, **options) -> Sequential:
    """Doc 003's CNN.

        x - 0.5 -> conv 3x3x8, no bias (z1 [N,26,26,8]) -> max pool 2 (p1 [N,13,13,8])
          -> flatten [N,1352] -> dense 10 + b2 (z2, logits)

    Filters standard normal / 9, dense weights standard normal / 1352, biases 0.
    """
    return Sequential(
        [
            Rescaling(1.0, -0.5),
            Conv2D(8, 3, use_bias=False, kernel_init=1 / 9, **layer_options(Conv2D, options)),
            MaxPool2D(2, **layer_options(MaxPool2D, options)),
            Flatten(),
            Dense(10, kernel_init=1 / 1352),
        ],
        seed=seed,
        dtype=dtype,
        params=params,
        name="conv8",
    )


@network("two-layer-net")
def two_layer_net(*, seed: int = 0, dtype=np.float32, hidden: int = 50, params=None) -> Sequential:
    """Doc 004's two-layer network (no convolution: every gradient in NumPy).

        x -> flatten [N,784] -> dense ``hidden`` (z1) -> ReLU (a1) -> dense 10 (z2, logits)

    Weights 0.01 x standard normal, biases 0. ``hidden``: 50 (doc 004's training run) or
    100 (its optimizer comparison).
    """
    net = Sequential(
        [Flatten(), Dense(hidden, kernel_init=0.01), ReLU(), Dense(10, kernel_init=0.01)],
        seed=seed,
        dtype=dtype,
        params=params,
        name="two-layer-net",
    )
    return net
