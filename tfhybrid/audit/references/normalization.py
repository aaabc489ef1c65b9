"""References of batch normalization (features and spatial) and layer normalization,
in training mode: each normalizes with the statistics of the tensor it is given.

    xhat = (x - mean) / sqrt(var + eps),   out = gamma * xhat + beta

with the biased variance (``np.var``), as CS231n's ``batchnorm_forward`` and
``layernorm_forward`` and Deep Learning from Scratch's ``BatchNormalization`` compute it.
``gamma`` and ``beta`` may have any shape of D (or C) elements.
"""

from __future__ import annotations

from collections.abc import Callable

from tfhybrid._tf import tf
from tfhybrid.audit.layouts import checked_layout, has_batch
from tfhybrid.audit.references.layout import as_vector, from_nhwc, to_nhwc
from tfhybrid.audit.references.naming import named


def _eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    return float(eps)


def _normalized(x, axes, gamma, beta, eps: float) -> tf.Tensor:
    mean, var = tf.nn.moments(x, axes=axes, keepdims=True)
    size = int(x.shape[-1])
    xhat = (x - mean) / tf.sqrt(var + eps)
    return as_vector(gamma, size, "gamma") * xhat + as_vector(beta, size, "beta")


def batch_norm(*, eps: float = 1e-5) -> Callable:
    """``reference(x, gamma, beta)`` of ``x`` [N, D]: each feature normalized over the
    batch. Raises ValueError for x of another rank (``spatial_batch_norm`` takes images)."""
    eps = _eps(eps)

    def reference(x, gamma, beta):
        if len(x.shape) != 2:
            raise ValueError(
                f"batch_norm normalizes x [N, D], got {list(x.shape)}; for images use "
                "spatial_batch_norm(layout=...)"
            )
        return _normalized(x, [0], gamma, beta, eps)

    return named(reference, "batch_norm", eps=eps)


def spatial_batch_norm(*, eps: float = 1e-5, layout: str = "NHWC") -> Callable:
    """``reference(x, gamma, beta)`` of images in ``layout`` (with a batch axis): each
    channel normalized over the batch and every position (N, H, W), gamma and beta per
    channel. Source: CS231n's ``spatial_batchnorm_forward`` (NCHW). Raises ValueError for
    a layout without a batch axis (batch statistics need one)."""
    eps, layout = _eps(eps), checked_layout(layout)
    if not has_batch(layout):
        raise ValueError(f"spatial batch norm needs a batch axis, got layout {layout!r}")

    def reference(x, gamma, beta):
        return from_nhwc(_normalized(to_nhwc(x, layout), [0, 1, 2], gamma, beta, eps), layout)

    return named(reference, "spatial_batch_norm", eps=eps, layout=layout)


def layer_norm(*, eps: float = 1e-5, layout: str | None = None) -> Callable:
    """``reference(x, gamma, beta)``: each sample normalized over its own features. With
    ``layout`` None, ``x`` is [N, D] (or one sample [D]) and the features are its last
    axis; with an image layout, over its H, W and C, gamma and beta per channel. Source:
    CS231n's ``layernorm_forward`` ([N, D]). Raises ValueError for a bad setting."""
    eps = _eps(eps)
    layout = None if layout is None else checked_layout(layout)

    def reference(x, gamma, beta):
        if layout is None:
            return _normalized(x, [-1], gamma, beta, eps)
        return from_nhwc(_normalized(to_nhwc(x, layout), [1, 2, 3], gamma, beta, eps), layout)

    return named(reference, "layer_norm", eps=eps, layout=layout)
