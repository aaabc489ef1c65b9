"""References of the ops on features: affine (a dense layer), dropout with a given mask,
and an embedding lookup with given integer ids."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.audit.references.layout import as_vector
from tfhybrid.audit.references.naming import named


def affine(*, batch: bool = True) -> Callable:
    """``reference(x, w, b=None)``: ``x`` flattened per sample to [N, D] (``batch``) or
    to [D] (one sample, ``batch=False``), times ``w`` [D, M], plus ``b`` of any shape
    of M elements. Output [N, M] or [M]. Source: CS231n's ``affine_forward`` (which
    flattens x [N, d1, ..., dk] in C order, as here), Deep Learning from Scratch's
    ``Affine``. Raises ValueError when x's features and w's rows disagree."""
    if not isinstance(batch, bool):
        raise ValueError(f"batch must be True or False, got {batch!r}")

    def reference(x, w, b=None):
        flat = tf.reshape(x, [int(x.shape[0]), -1] if batch else [-1])
        if len(w.shape) != 2 or int(w.shape[0]) != int(flat.shape[-1]):
            raise ValueError(
                f"x {list(x.shape)} has {int(flat.shape[-1])} features per sample, but w "
                f"has shape {list(w.shape)}; affine takes w [D, M]"
            )
        out = tf.tensordot(flat, w, axes=1)
        return out if b is None else out + as_vector(b, int(w.shape[1]), "b")

    return named(reference, "affine", batch=batch)


def dropout(mask: object, *, scale: float = 1.0) -> Callable:
    """``reference(x) = x * mask * scale`` for the mask the checked forward drew (take it
    from its cache; any array that broadcasts against x, booleans included). Inverted
    dropout keeps p: ``scale=1/p``, or a mask that holds 1/p already (CS231n's). Raises
    ValueError for a mask that is not numbers."""
    held = np.asarray(mask)
    if not (np.issubdtype(held.dtype, np.number) or held.dtype == bool):
        raise ValueError(f"mask must be an array of numbers or booleans, got {held.dtype}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ValueError(f"scale must be a number, got {scale!r}")
    factor = held.astype(np.float64) * scale

    def reference(x):
        return x * tf.constant(factor, dtype=x.dtype)

    return named(reference, "dropout", scale=scale)


def embedding(ids: object) -> Callable:
    """``reference(W) = W[ids]`` (``tf.gather``): the rows of the table ``W`` [V, D]
    for the integer ``ids`` of any shape; output ids.shape + [D]. Its tape gradient is
    sparse, and check_op makes it dense. Source: CS231n's ``word_embedding_forward``.
    Raises ValueError for ids that are not integers, or outside the table."""
    held = np.asarray(ids)
    if not np.issubdtype(held.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {held.dtype}")

    def reference(W):  # noqa: N803 (the table is W in the sources)
        if held.size and (held.min() < 0 or held.max() >= int(W.shape[0])):
            raise ValueError(
                f"ids must lie in 0..{int(W.shape[0]) - 1}, the rows of W {list(W.shape)}"
            )
        return tf.gather(W, held)

    return named(reference, "embedding")
