"""The networks of the other source tutorials, in the hybrid framework.

Shapes are NHWC; every convolution (forward, dw, dx) runs in TensorFlow and every other
gradient is written out in NumPy (see :mod:`tfhybrid.models.layers`).
"""

from __future__ import annotations

import numpy as np

from tfhybrid.models.layers import Conv, Dense, Flatten, MaxPool, ReLU
from tfhybrid.models.sequential import SequentialNet


def _normal(rng: np.random.Generator, shapes: dict, scales: dict) -> dict[str, np.ndarray]:
    """Standard normal x scales[name] (0 gives zeros), drawn in the order of ``shapes``."""
    return {name: (rng.standard_normal(shape) * scales[name] if scales[name]
                   else np.zeros(shape)) for name, shape in shapes.items()}


class LeNet5(SequentialNet):
    """Doc 000's TensorFlow sketch of LeNet-5.

        x [N,28,28,1] -> conv 5x5x6 + b1 (z1 [N,24,24,6]) -> ReLU (a1) -> max pool 2 (p1 12x12)
          -> conv 5x5x16 + b2 (z2 [N,8,8,16]) -> ReLU (a2) -> max pool 2 (p2 [N,4,4,16])
          -> flatten (flat [N,256]) -> dense 120 (z3) -> ReLU (a3) -> dense 84 (z4) -> ReLU (a4)
          -> dense 10 (z5, logits) -> softmax cross-entropy

    ``init``: "he" (default; normal with variance 2/fan-in, zero biases) or "sketch"
    (the sketch's normal with stddev 0.01 for every weight and bias; the sketch gives
    no training settings, and from that start plain SGD stalls for a long while).
    """

    name = "lenet5"
    INITS = ("he", "sketch")

    def __init__(self, params=None, *, init: str = "he", **options):
        if init not in self.INITS:
            raise ValueError(f"init must be one of {self.INITS}, got {init!r}")
        self.init = init
        super().__init__(params, **options)

    def architecture(self):
        shapes = {"w1": (5, 5, 1, 6), "b1": (6,), "w2": (5, 5, 6, 16), "b2": (16,),
                  "w3": (256, 120), "b3": (1, 120), "w4": (120, 84), "b4": (1, 84),
                  "w5": (84, 10), "b5": (1, 10)}
        pool = dict(ties=self.pool_ties)
        layers = [("z1", Conv("w1", "b1", dw_mode=self.dw_mode)), ("a1", ReLU()),
                  ("p1", MaxPool(2, 2, **pool)),
                  ("z2", Conv("w2", "b2", dw_mode=self.dw_mode)), ("a2", ReLU()),
                  ("p2", MaxPool(2, 2, **pool)), ("flat", Flatten()),
                  ("z3", Dense("w3", "b3")), ("a3", ReLU()),
                  ("z4", Dense("w4", "b4")), ("a4", ReLU()), ("z5", Dense("w5", "b5"))]
        return shapes, layers

    def init_params(self, rng):
        if self.init == "sketch":
            return _normal(rng, self.param_shapes, dict.fromkeys(self.param_shapes, 0.01))
        scales = {}
        for name, shape in self.param_shapes.items():
            fan_in = int(np.prod(shape[:-1]))
            scales[name] = np.sqrt(2.0 / fan_in) if name.startswith("w") else 0
        return _normal(rng, self.param_shapes, scales)


class NumpyCNN(SequentialNet):
    """Doc 002's NumPy CNN.

        x -> conv 3x3x4 + b1 (z1 [N,26,26,4]) -> max pool 2 (p1 13x13) -> conv 3x3x16 + b2
          (z2 [N,11,11,16]) -> max pool 2 (p2 [N,5,5,16]; the 11th row/column is dropped)
          -> flatten (flat [N,400]) -> dense 256 (z3) -> ReLU (a3) -> dense 128 (z4)
          -> ReLU (a4) -> dense 10 (z5, logits) -> softmax cross-entropy

    No activation after the convolutions, as the source. Its initialisation: each weight
    standard normal / sqrt(fan_out / 2) (fan_out = the layer's number of outputs), biases 0.
    Its inputs are the pixel values divided by 225 (not 255), so ``input_scale`` = 255/225.
    """

    name = "numpy-cnn"
    input_scale = 255.0 / 225.0

    def architecture(self):
        shapes = {"w1": (3, 3, 1, 4), "b1": (4,), "w2": (3, 3, 4, 16), "b2": (16,),
                  "w3": (400, 256), "b3": (1, 256), "w4": (256, 128), "b4": (1, 128),
                  "w5": (128, 10), "b5": (1, 10)}
        pool = dict(ties=self.pool_ties)
        layers = [("z1", Conv("w1", "b1", dw_mode=self.dw_mode)), ("p1", MaxPool(2, 2, **pool)),
                  ("z2", Conv("w2", "b2", dw_mode=self.dw_mode)), ("p2", MaxPool(2, 2, **pool)),
                  ("flat", Flatten()), ("z3", Dense("w3", "b3")), ("a3", ReLU()),
                  ("z4", Dense("w4", "b4")), ("a4", ReLU()), ("z5", Dense("w5", "b5"))]
        return shapes, layers

    def init_params(self, rng):
        scales = {name: (1 / np.sqrt(shape[-1] / 2) if name.startswith("w") else 0)
                  for name, shape in self.param_shapes.items()}
        return _normal(rng, self.param_shapes, scales)


class Conv8(SequentialNet):
    """Doc 003's CNN.

        x - 0.5 -> conv 3x3x8, no bias (z1 [N,26,26,8]) -> max pool 2 (p1 [N,13,13,8])
          -> flatten (flat [N,1352]) -> dense 10 + b2 (z2, logits) -> softmax cross-entropy

    Initialisation of the tutorial doc 003 follows: filters standard normal / 9, dense
    weights standard normal / 1352, biases 0.
    """

    name = "conv8"
    input_shift = -0.5

    def architecture(self):
        shapes = {"w1": (3, 3, 1, 8), "w2": (1352, 10), "b2": (1, 10)}
        layers = [("z1", Conv("w1", None, dw_mode=self.dw_mode)),
                  ("p1", MaxPool(2, 2, ties=self.pool_ties)), ("flat", Flatten()),
                  ("z2", Dense("w2", "b2"))]
        return shapes, layers

    def init_params(self, rng):
        return _normal(rng, self.param_shapes, {"w1": 1 / 9, "w2": 1 / 1352, "b2": 0})


class TwoLayerNet(SequentialNet):
    """Doc 004's two-layer network (no convolution: all NumPy).

        x -> flatten (flat [N,784]) -> dense ``hidden`` (z1) -> ReLU (a1) -> dense 10 (z2, logits)
          -> softmax cross-entropy

    Weights 0.01 x standard normal, biases 0. ``hidden``: 50 (doc 004's training run) or
    100 (its optimizer comparison).
    """

    name = "two-layer-net"

    def __init__(self, params=None, *, hidden: int = 50, **options):
        if int(hidden) < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        self.hidden = int(hidden)
        super().__init__(params, **options)

    def architecture(self):
        h = self.hidden
        shapes = {"w1": (784, h), "b1": (1, h), "w2": (h, 10), "b2": (1, 10)}
        layers = [("flat", Flatten()), ("z1", Dense("w1", "b1")), ("a1", ReLU()),
                  ("z2", Dense("w2", "b2"))]
        return shapes, layers

    def init_params(self, rng):
        return _normal(rng, self.param_shapes, {"w1": 0.01, "b1": 0, "w2": 0.01, "b2": 0})
