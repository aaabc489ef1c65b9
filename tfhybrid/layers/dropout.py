"""Dropout, with a hand-written backward pass (ops/dropout.py) and a replayable mask."""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.choices import DROPOUT_RULES, check_choice, check_number
from tfhybrid.layers.base import Layer, Shape
from tfhybrid.ops.dropout import (
    dropout_backward,
    dropout_forward,
    dropout_inference,
    dropout_inference_backward,
    dropout_mask,
)


class Dropout(Layer):
    """Dropout (Srivastava et al., 2014): in training, each element is kept with
    probability 1 - ``rate`` (a fresh mask per step, drawn from the generator the network
    hands it), else zeroed.

    ``rule``: "inverted" (default, CS231n and Keras): kept elements are divided by
    1 - rate in training, and inference is the identity. "book" (Deep Learning from
    Scratch's ``Dropout``): no scaling in training, multiplied by 1 - rate in inference.
    The backward passes dout through the same mask (and scale). ``rate`` in [0, 1);
    ValueError otherwise.
    """

    prefix = "d"

    def __init__(self, rate: float, rule: str = "inverted", name: str | None = None):
        super().__init__(name)
        self.rate = check_number("dropout rate", rate, 0.0, 1.0)
        self.rule = check_choice("rule", rule, DROPOUT_RULES)

    @property
    def inverted(self) -> bool:
        return self.rule == "inverted"

    @property
    def cause_counts(self) -> dict[str, float]:
        """Factors a wrong dropout backward is often off by (for the likely cause)."""
        keep = 1 - self.rate
        return {f"the keep probability 1 - rate ({keep:g})": keep} if keep != 1 else {}

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, params, x, *, training, rng):
        if not training:
            return dropout_inference(x, self.rate, self.inverted), None
        mask = dropout_mask(rng, x.shape, self.rate)
        return dropout_forward(x, mask, self.rate, self.inverted)

    def backward(self, dout, cache, need_dx=True):
        if cache is None:  # inference mode
            return dropout_inference_backward(dout, self.rate, self.inverted), {}
        return dropout_backward(dout, cache), {}

    def reference(self, params, x, *, training, rng):
        keep = 1 - self.rate
        if not training:
            return x if self.inverted else x * tf.constant(keep, x.dtype)
        shape = tuple(x.shape)
        if None in shape:
            raise ValueError("Dropout's reference needs the batch size known (a concrete input)")
        # The same draw as forward's: the mask depends on the generator and the shape only.
        mask = dropout_mask(rng, shape, self.rate).astype(np.float64)
        scale = 1 / keep if self.inverted else 1.0
        return x * tf.constant(mask * scale, x.dtype)
