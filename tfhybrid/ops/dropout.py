"""Dropout, forward and hand-written backward, in NumPy.

Two conventions:

- inverted (CS231n assignment 2, and tf.nn.dropout): training scales the kept units by
  1 / (1 - rate), so inference is the identity;
- not inverted (Deep Learning from Scratch ch. 6, its ``Dropout`` class; Srivastava et al.
  2014): training only masks, and inference scales every unit by (1 - rate), the keep
  probability.

``rate`` is the probability of dropping a unit, 0 <= rate < 1. Outputs keep x's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DropoutCache:
    """What ``dropout_forward`` keeps for its backward."""

    mask: np.ndarray  # bool, shape of x, True = kept
    rate: float
    inverted: bool


def _check_rate(rate: float) -> None:
    if not 0 <= rate < 1:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")


def dropout_mask(rng: np.random.Generator, shape: int | tuple[int, ...], rate: float) -> np.ndarray:
    """A bool mask of ``shape``, True = kept (probability 1 - rate): ``rng.random(shape) >= rate``.

    Exactly that expression, so a generator in the same state always draws the same mask.
    """
    _check_rate(rate)
    return rng.random(shape) >= rate


def dropout_forward(
    x: np.ndarray, mask: np.ndarray, rate: float, inverted: bool = True
) -> tuple[np.ndarray, DropoutCache]:
    """Training-mode dropout. x (any shape), mask (bool, shape of x) -> (out, cache):

        inverted:      out = x * mask / (1 - rate)      (CS231n assignment 2)
        not inverted:  out = x * mask                   (Deep Learning from Scratch ch. 6)

    ``mask`` is True where a unit is kept, as ``dropout_mask`` draws it.
    """
    _check_rate(rate)
    if inverted:
        out = x * mask * np.asarray(1 / (1 - rate), dtype=x.dtype)
    else:
        out = x * mask
    return out, DropoutCache(mask=mask, rate=rate, inverted=inverted)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """dout (shape of x) -> dx: the same mask and scale as the forward, since out is linear in x:

    inverted: dx = dout * mask / (1 - rate);  not inverted: dx = dout * mask.
    """
    if cache.inverted:
        return dout * cache.mask * np.asarray(1 / (1 - cache.rate), dtype=dout.dtype)
    return dout * cache.mask


def dropout_inference(x: np.ndarray, rate: float, inverted: bool = True) -> np.ndarray:
    """Inference-mode dropout: nothing is dropped.

    inverted: out = x;  not inverted: out = x * (1 - rate), the expected training output
    (Deep Learning from Scratch ch. 6; Srivastava et al. 2014, section 1).
    """
    _check_rate(rate)
    if inverted:
        return x
    return x * np.asarray(1 - rate, dtype=x.dtype)


def dropout_inference_backward(dout: np.ndarray, rate: float, inverted: bool = True) -> np.ndarray:
    """dout -> dx of ``dropout_inference``: dout (inverted) or dout * (1 - rate)."""
    _check_rate(rate)
    if inverted:
        return dout
    return dout * np.asarray(1 - rate, dtype=dout.dtype)
