"""Batch normalization and layer normalization, forward and hand-written backward, in NumPy.

Normalization is over the LAST axis (channels in NHWC, features in [N, D]): gamma and beta
have shape [C]. Batch normalization takes its statistics over every other axis (N, and H, W
for images), layer normalization over the last axis alone (per sample and per position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchNormCache:
    """What ``batchnorm_forward`` (or ``batchnorm_inference_forward``) keeps for its backward.

    ``mean`` and ``var`` [C] are the batch statistics in training mode (a caller updates its
    running statistics from them) and the given running statistics in inference mode.
    """

    x_hat: np.ndarray  # the normalized input, shape of x
    mean: np.ndarray  # [C]
    var: np.ndarray  # [C], biased (divided by m)
    gamma: np.ndarray  # [C]
    epsilon: float


@dataclass(frozen=True)
class LayerNormCache:
    """What ``layernorm_forward`` keeps for its backward; ``mean`` and ``var`` are per sample
    and position, with the last axis kept: [N, 1] or [N, H, W, 1]."""

    x_hat: np.ndarray  # the normalized input, shape of x
    mean: np.ndarray  # x.shape[:-1] + (1,)
    var: np.ndarray  # x.shape[:-1] + (1,), biased (divided by C)
    gamma: np.ndarray  # [C]
    epsilon: float


def _check_shapes(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> None:
    if x.ndim < 2:
        raise ValueError(f"x must have rank >= 2 ([N, D] or [N, H, W, C]), got shape {x.shape}")
    channels = (x.shape[-1],)
    if np.shape(gamma) != channels or np.shape(beta) != channels:
        raise ValueError(
            f"gamma {np.shape(gamma)} and beta {np.shape(beta)} must both have shape {channels} "
            f"(the last axis of x {x.shape})"
        )


SUM_BLOCK = 256  # rows per partial sum in channel_sums


def channel_sums(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``np.sum(a, axis=axes)`` for ``axes`` every axis but the last, in ``a``'s dtype.

    Why not ``np.sum``: NumPy adds pairwise only along the last axis; over the batch axes of
    a float32 NHWC tensor it adds one row at a time, and the rounding grows with N*H*W
    (7e-4 relative error in bn-cnn's float32 gradients against the tape's 1e-4), slowly.
    Here blocks of SUM_BLOCK rows are each summed by one matrix product and the block sums
    added in float64: 1e-7 relative in float32, and over ten times faster."""
    channels = a.shape[-1]
    rows = np.ascontiguousarray(a).reshape(-1, channels)
    blocks, rest = divmod(len(rows), SUM_BLOCK)
    partial = np.matmul(
        np.ones(SUM_BLOCK, a.dtype), rows[: blocks * SUM_BLOCK].reshape(blocks, SUM_BLOCK, channels)
    )
    total = partial.sum(axis=0, dtype=np.float64) + rows[blocks * SUM_BLOCK :].sum(
        axis=0, dtype=np.float64
    )
    return total.astype(a.dtype)


def _all_but_last(x: np.ndarray) -> tuple[int, ...]:
    """The axes batch statistics and parameter gradients are summed over: all but the last."""
    return tuple(range(x.ndim - 1))


# --- batch normalization, training mode -------------------------------------------------------


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float
) -> tuple[np.ndarray, BatchNormCache]:
    """Training-mode batch normalization with the batch's own statistics.

    x [N, D] or [N, H, W, C] (any rank >= 2), gamma and beta [C] -> (out, shape of x; cache).
    With m = N (or N*H*W) elements per channel, over every axis but the last:

        mean  = 1/m sum x
        var   = 1/m sum (x - mean)^2            (biased, as tf.nn.moments)
        x_hat = (x - mean) / sqrt(var + epsilon)
        out   = gamma * x_hat + beta

    Source: Ioffe & Szegedy 2015, Algorithm 1 (the Batch Normalizing Transform). The cache
    exposes ``mean`` and ``var`` [C] for a caller's running statistics.
    """
    _check_shapes(x, gamma, beta)
    axes = _all_but_last(x)
    m = x.size // x.shape[-1]
    mean = channel_sums(x, axes) / m
    centered = x - mean
    var = channel_sums(centered**2, axes) / m
    x_hat = centered / np.sqrt(var + epsilon)
    out = gamma * x_hat + beta
    return out, BatchNormCache(x_hat=x_hat, mean=mean, var=var, gamma=gamma, epsilon=epsilon)


def batchnorm_backward(
    dout: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (shape of x) -> (dx shape of x, dgamma [C], dbeta [C]), through the batch statistics.

    Every sum is over all axes but the last, with m elements per channel:

        dbeta  = sum dout
        dgamma = sum dout * x_hat
        dx     = gamma / (m sqrt(var + eps)) * (m dout - sum dout - x_hat sum(dout * x_hat))

    The chain rule of Ioffe & Szegedy 2015 (section 3, the equations after Algorithm 1),
    through x_hat, var and mean, collected into one line as in CS231n assignment 2
    (``batchnorm_backward_alt``). At m = 1 (batch 1 of [N, D]) the bracket is 0, so dx = 0.
    """
    x_hat, gamma, var, eps = cache.x_hat, cache.gamma, cache.var, cache.epsilon
    axes = _all_but_last(x_hat)
    m = x_hat.size // x_hat.shape[-1]
    sum_dout = channel_sums(dout, axes)  # = dbeta
    sum_dout_x_hat = channel_sums(dout * x_hat, axes)  # = dgamma
    dx = gamma / (m * np.sqrt(var + eps)) * (m * dout - sum_dout - x_hat * sum_dout_x_hat)
    return dx, sum_dout_x_hat, sum_dout


# --- batch normalization, inference mode ------------------------------------------------------


def batchnorm_inference_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    epsilon: float,
) -> tuple[np.ndarray, BatchNormCache]:
    """Inference-mode batch normalization with given (running) statistics mean, var [C].

    x [N, D] or [N, H, W, C] -> (out, shape of x; cache):

        x_hat = (x - mean) / sqrt(var + epsilon)
        out   = gamma * x_hat + beta

    Source: Ioffe & Szegedy 2015, section 3.1 and Algorithm 2 (inference uses population
    statistics, so the transform is a fixed affine map of each channel).
    """
    _check_shapes(x, gamma, beta)
    x_hat = (x - mean) / np.sqrt(var + epsilon)
    out = gamma * x_hat + beta
    return out, BatchNormCache(x_hat=x_hat, mean=mean, var=var, gamma=gamma, epsilon=epsilon)


def batchnorm_inference_backward(
    dout: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (shape of x) -> (dx shape of x, dgamma [C], dbeta [C]); mean and var are constants:

        dx     = dout * gamma / sqrt(var + eps)
        dgamma = sum dout * x_hat        (over all axes but the last)
        dbeta  = sum dout

    Source: Ioffe & Szegedy 2015, section 3.1 (a linear transform at inference).
    """
    x_hat, gamma, var, eps = cache.x_hat, cache.gamma, cache.var, cache.epsilon
    axes = _all_but_last(x_hat)
    dx = dout * gamma / np.sqrt(var + eps)
    dgamma = channel_sums(dout * x_hat, axes)
    dbeta = channel_sums(dout, axes)
    return dx, dgamma, dbeta


# --- layer normalization ----------------------------------------------------------------------


def layernorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float
) -> tuple[np.ndarray, LayerNormCache]:
    """Layer normalization over the last axis (as Keras LayerNormalization(axis=-1)).

    x [N, D] or [N, H, W, C], gamma and beta [C] -> (out, shape of x; cache). Per sample and
    position, over the C entries of the last axis:

        mean  = 1/C sum x
        var   = 1/C sum (x - mean)^2
        x_hat = (x - mean) / sqrt(var + epsilon)
        out   = gamma * x_hat + beta

    Source: Ba, Kiros & Hinton 2016, "Layer Normalization", section 3.
    """
    _check_shapes(x, gamma, beta)
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    x_hat = (x - mean) / np.sqrt(var + epsilon)
    out = gamma * x_hat + beta
    return out, LayerNormCache(x_hat=x_hat, mean=mean, var=var, gamma=gamma, epsilon=epsilon)


def _layernorm_dx(dout: np.ndarray, cache: LayerNormCache) -> np.ndarray:
    """dx of layer normalization: the compact formula along the last axis, with m = C.

    gamma varies along that axis, so it enters through dx_hat = dout * gamma (it cannot be
    factored out as in batch normalization):

        dx = 1 / (m sqrt(var + eps)) * (m dx_hat - sum dx_hat - x_hat sum(dx_hat * x_hat))
    """
    x_hat, var, eps = cache.x_hat, cache.var, cache.epsilon
    m = x_hat.shape[-1]
    dx_hat = dout * cache.gamma
    sum_dx_hat = np.sum(dx_hat, axis=-1, keepdims=True)
    sum_dx_hat_x_hat = np.sum(dx_hat * x_hat, axis=-1, keepdims=True)
    return 1 / (m * np.sqrt(var + eps)) * (m * dx_hat - sum_dx_hat - x_hat * sum_dx_hat_x_hat)


def layernorm_backward(
    dout: np.ndarray, cache: LayerNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (shape of x) -> (dx shape of x, dgamma [C], dbeta [C]).

    With dx_hat = dout * gamma and m = C, sums in dx along the last axis:

        dx     = 1 / (m sqrt(var + eps)) * (m dx_hat - sum dx_hat - x_hat sum(dx_hat * x_hat))
        dgamma = sum dout * x_hat        (over every axis but the last)
        dbeta  = sum dout

    The batch-normalization chain rule (Ioffe & Szegedy 2015, section 3) applied along the
    feature axis, as Ba, Kiros & Hinton 2016 normalize; compact form as in CS231n
    assignment 2 (``layernorm_backward``).
    """
    axes = _all_but_last(cache.x_hat)
    dx = _layernorm_dx(dout, cache)
    dgamma = channel_sums(dout * cache.x_hat, axes)
    dbeta = channel_sums(dout, axes)
    return dx, dgamma, dbeta


def layernorm_backward_per_example(
    dout: np.ndarray, cache: LayerNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (shape of x) -> (dx shape of x, dgamma [N, C], dbeta [N, C]): each sample's share.

    Layer normalization never mixes samples, so dx is already per example. dgamma[n] and
    dbeta[n] are sums over sample n's own positions (H, W) only:

        dgamma[n] = sum_{h,w} dout[n] * x_hat[n],   dbeta[n] = sum_{h,w} dout[n]

    and their sums over N are ``layernorm_backward``'s dgamma and dbeta.
    """
    positions = tuple(range(1, cache.x_hat.ndim - 1))  # () for [N, D]: nothing to sum
    dx = _layernorm_dx(dout, cache)
    dgamma = np.sum(dout * cache.x_hat, axis=positions)
    dbeta = np.sum(dout, axis=positions)
    return dx, dgamma, dbeta
