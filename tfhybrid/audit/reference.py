"""The reference gradients: tf.GradientTape of the model's ``reference_forward``.

A model audited here provides::

    reference_forward(params: dict[str, tf.Tensor], x: tf.Tensor, y: tf.Tensor)
        -> (loss: scalar tf.Tensor, intermediates: dict[str, tf.Tensor])

the loss its manual backward differentiates, written with plain TensorFlow ops, and
the tensors NAME whose gradients its ``loss_and_gradients`` reports as "d" + NAME.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

# TensorFlow is imported inside the functions: the command line checks its options
# (and imports this package) before paying for TensorFlow.


@dataclasses.dataclass(frozen=True)
class TapeResult:
    """One tape run: the loss, dL/dparam keyed like params, dL/dNAME keyed "d" + NAME."""

    loss: float
    grads: dict[str, np.ndarray]
    intermediates: dict[str, np.ndarray]


def _as_tensors(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, dtype):
    from tfhybrid._tf import tf

    tensors = {k: tf.constant(np.asarray(v, dtype=dtype)) for k, v in params.items()}
    return tensors, tf.constant(np.asarray(x, dtype=dtype)), tf.constant(np.asarray(y, dtype=dtype))


def tape_gradients(
    model, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, dtype: type
) -> TapeResult:
    """Autodiff of ``model.reference_forward`` at ``params``, computed entirely in ``dtype``.

    Gradients with respect to the returned intermediates are taken from the same tape,
    so each is the total derivative of the loss through everything downstream of it.
    """
    from tfhybrid._tf import tf

    tensors, tx, ty = _as_tensors(params, x, y, dtype)
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        tape.watch(tx)  # records intermediates that do not depend on any parameter too
        loss, inter = model.reference_forward(tensors, tx, ty)
    if not tf.is_tensor(loss) or not all(tf.is_tensor(t) for t in inter.values()):
        raise ValueError(
            "reference_forward must compute its loss and intermediates in TensorFlow ops "
            f"(it returned a {type(loss).__name__} loss), which the tape can differentiate; "
            "a layer's reference written in NumPy cannot be differentiated"
        )
    if tuple(loss.shape) != ():
        raise ValueError(f"reference_forward must return a scalar loss, got shape {loss.shape}")
    grads, dinter = tape.gradient(
        loss, (tensors, inter), unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return TapeResult(
        loss=float(loss),
        grads={k: g.numpy() for k, g in grads.items()},
        intermediates={"d" + k: g.numpy() for k, g in dinter.items()},
    )


def loss_function(
    model, x: np.ndarray, y: np.ndarray, dtype: type = np.float64
) -> Callable[[dict[str, np.ndarray]], float]:
    """params (NumPy) -> the reference loss in ``dtype``; one compiled graph for all calls."""
    from tfhybrid._tf import tf

    _, tx, ty = _as_tensors({}, x, y, dtype)

    @tf.function(reduce_retracing=True)
    def graph_loss(tensors):
        return model.reference_forward(tensors, tx, ty)[0]

    def loss_at(params: dict[str, np.ndarray]) -> float:
        return float(
            graph_loss({k: tf.constant(np.asarray(v, dtype=dtype)) for k, v in params.items()})
        )

    return loss_at
