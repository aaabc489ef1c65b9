"""The step functions timed: one full training step of one network, by method.

Each ``*_step`` returns a no-argument callable that runs one step (forward, backward,
plain SGD update at the model's source learning rate) on a fixed batch, and returns
the loss from before the update. Every method builds its own network from the same
seed, so all start from the same parameters.
"""

from __future__ import annotations

import numpy as np

METHODS = (
    "hybrid",
    "per-example",
    "autodiff",
    "autodiff-xla",
    "per-example-peer",
    "hybrid-numpy-conv",
)
# The peer each method is compared with in the tables: TensorFlow's for a hand-written
# method; for the convolutions in NumPy (``--conv numpy``), the hybrid step on TensorFlow's.
PEERS = {"hybrid": "autodiff", "per-example": "per-example-peer", "hybrid-numpy-conv": "hybrid"}
NUMPY_CONV = "hybrid-numpy-conv"  # only for the networks with convolutions
SEED = 0


def random_batch(net, batch: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Random images in [0, 1) [batch, *net.input_shape] and random one-hot labels, float32."""
    from tfhybrid.data import one_hot

    rng = np.random.default_rng(seed)
    x = rng.random((batch, *net.input_shape), dtype=np.float32)
    return x, one_hot(rng.integers(0, net.output_shape[0], batch))


def hybrid_step(net, lr: float, x: np.ndarray, y: np.ndarray):
    """The training loop's own step (``tfhybrid.training.train_step``: the hand-written
    ``loss_and_gradients``, then SGD's in-place update)."""
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import train_step

    optimizer = build_optimizer("sgd", lr)
    return lambda: train_step(net, optimizer, x, y)["loss"]


def per_example_step(net, lr: float, x: np.ndarray, y: np.ndarray):
    """The same step with ``per_example=True``: each sample's own gradient, then their sum."""
    from tfhybrid.optimizers import build_optimizer

    optimizer = build_optimizer("sgd", lr)

    def step():
        result = net.loss_and_gradients(x, y, per_example=True)
        optimizer.update(net.params, result["grads"])
        return result["loss"]

    return step


def autodiff_step(net, lr: float, x: np.ndarray, y: np.ndarray, xla: bool = False):
    """TensorFlow's own autodiff of the same network and loss, SGD included.

    tf.Variables start from ``net.params``; one ``tf.function`` holds the
    ``tf.GradientTape`` over ``net.reference_forward`` and the ``assign_sub`` updates.
    Its inputs are handed over as tensors once, so no conversion is timed against it.
    ``xla``: the function compiled by XLA (``jit_compile=True``), "autodiff-xla".
    """
    from tfhybrid._tf import tf

    variables = {key: tf.Variable(value, name=key) for key, value in net.params.items()}
    ordered = list(variables.values())

    @tf.function(jit_compile=xla)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss, _ = net.reference_forward(variables, x, y)
        grads = tape.gradient(loss, ordered)
        for variable, grad in zip(ordered, grads, strict=True):
            variable.assign_sub(lr * grad)
        return loss

    tx, ty = tf.constant(x), tf.constant(y)
    return lambda: float(step(tx, ty))


def per_example_peer_step(net, lr: float, x: np.ndarray, y: np.ndarray):
    """TensorFlow's per-example gradients, as TF Privacy computes them: a
    ``tf.GradientTape`` of one sample's loss under ``tf.vectorized_map`` over the batch,
    every parameter's gradient [N, *shape]; their mean (the batch gradient) updates the
    variables by SGD, all in one ``tf.function``."""
    from tfhybrid._tf import tf

    variables = {key: tf.Variable(value, name=key) for key, value in net.params.items()}
    ordered = list(variables.values())

    def one_sample(args):
        image, label = args
        with tf.GradientTape() as tape:
            loss, _ = net.reference_forward(variables, image[None], label[None])
        return loss, tape.gradient(loss, ordered)

    @tf.function
    def step(x, y):
        losses, per_example = tf.vectorized_map(one_sample, (x, y))
        for variable, grads in zip(ordered, per_example, strict=True):
            variable.assign_sub(lr * tf.reduce_mean(grads, axis=0))
        return tf.reduce_mean(losses)

    tx, ty = tf.constant(x), tf.constant(y)
    # vectorized_map has no batched rule for Conv2DBackpropFilter and falls back to a
    # while_loop (part of what the peer costs, so it is measured), logging "uses a
    # while_loop. Fix that!" while it traces: a note to TensorFlow's developers, not to
    # the reader of the benchmark. Trace once here with TensorFlow's warnings off.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        step.get_concrete_function(tx, ty)
    finally:
        logger.setLevel(level)
    return lambda: float(step(tx, ty))


def make_step(model: str, method: str, batch: int, seed: int = SEED):
    """A no-argument callable running one training step of ``model`` by ``method``."""
    from tfhybrid.catalog import TRAINING_DEFAULTS, build_model

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    conv = {"conv": "numpy"} if method == NUMPY_CONV else {}
    net = build_model(model, seed=seed, dtype=np.float32, **conv)
    lr = TRAINING_DEFAULTS[model].lr
    x, y = random_batch(net, batch, seed)
    if method in ("autodiff", "autodiff-xla"):
        return autodiff_step(net, lr, x, y, xla=method == "autodiff-xla")
    if method == "per-example-peer":
        return per_example_peer_step(net, lr, x, y)
    if method == "per-example":
        return per_example_step(net, lr, x, y)
    return hybrid_step(net, lr, x, y)
