"""TensorFlow tensors between the code's layout and TensorFlow's NHWC (the ops' own)."""

from __future__ import annotations

from tfhybrid._tf import tf
from tfhybrid.audit.layouts import NETWORK, has_batch, permutation, with_batch


def to_nhwc(x: tf.Tensor, layout: str, what: str = "x") -> tf.Tensor:
    """``x`` in ``layout`` (one of :data:`~tfhybrid.audit.layouts.LAYOUTS`) as a batched
    NHWC tensor; an image without a batch axis becomes a batch of one. Raises ValueError
    when ``x`` has another number of axes than ``layout`` has letters."""
    if len(x.shape) != len(layout):
        raise ValueError(
            f"{what} has shape {list(x.shape)}, {len(x.shape)} axes, but layout {layout} "
            f"has {len(layout)}: pass the layout the code works in"
            + ("" if has_batch(layout) else f" ({with_batch(layout)} for a batch)")
        )
    if not has_batch(layout):
        x = x[None]
    return tf.transpose(x, permutation(with_batch(layout), NETWORK))


def from_nhwc(out: tf.Tensor, layout: str) -> tf.Tensor:
    """The inverse of :func:`to_nhwc`: a batched NHWC result back in ``layout``."""
    out = tf.transpose(out, permutation(NETWORK, with_batch(layout)))
    return out if has_batch(layout) else out[0]


def channels(layout: str) -> int:
    """The channel axis of a tensor in ``layout``."""
    return layout.index("C")


def as_vector(value: tf.Tensor, size: int, what: str) -> tf.Tensor:
    """``value`` (a bias, gamma or beta of any shape holding ``size`` elements: (F,),
    (1, F), (F, 1)) as a vector [size]; else one ValueError naming its shape."""
    count = 1
    for d in value.shape:
        count *= int(d)
    if count != size:
        raise ValueError(f"{what} has shape {list(value.shape)}; it needs {size} elements")
    return tf.reshape(value, [size])


def pair(value: object, what: str) -> tuple[int, int]:
    """An integer setting for height and width: ``2`` or ``(2, 3)``; else one ValueError."""
    values = value if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise ValueError(f"{what} must be an integer >= 0 or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])
