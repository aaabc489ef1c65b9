"""The source article's network with its hybrid TensorFlow / NumPy backpropagation.

    x [N,28,28,1] -> conv 9x9x20 VALID + b1 -> sigmoid -> s1 [N,20,20,20]
      -> avg pool 2x2/2 -> L1 [N,10,10,20] -> flatten (NHWC) [N,2000]
      -> dense 2000->10 + b2 -> z2 [N,10] -> sigmoid -> s2

TensorFlow runs the forward convolution, sigmoid and pool (one compiled call, as the
article's session.run) and the convolution that yields dw1. NumPy does the rest.
"""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.ops import tf_kernels
from tfhybrid.ops.activations import sigmoid_backward
from tfhybrid.ops.conv import DW_MODES
from tfhybrid.ops.dense import dense_backward, dense_forward
from tfhybrid.ops.losses import sigmoid_cross_entropy, softmax_cross_entropy
from tfhybrid.ops.pooling import avg_pool_backward

PARAM_SHAPES = {"w1": (9, 9, 1, 20), "b1": (1, 20), "w2": (2000, 10), "b2": (1, 10)}
INIT_SCALE = 0.1  # the article: standard normal x 0.1 for every parameter
BIAS_GRAD_RULES = ("seed", "exact")
POOLED_SHAPE = (10, 10, 20)
CONV_POSITIONS = 20 * 20  # output positions of the 9x9 VALID convolution on 28x28
EVAL_BATCH = 1_000  # as fast as 5,000 per image here, with ~250 MB less peak memory


def init_params(seed: int, dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Standard normal x 0.1, drawn in the order w1, b1, w2, b2 from one seeded generator."""
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape) * INIT_SCALE).astype(dtype)
            for name, shape in PARAM_SHAPES.items()}


def filter_gradient(x: tf.Tensor, dz1: tf.Tensor) -> np.ndarray:
    """dw1 [9,9,1,20] summed over the batch: one TensorFlow call on x [N,28,28,1] and
    dz1 [N,20,20,20], tensors of one float dtype."""
    return tf_kernels.seed_filter_grad(x.dtype)(x, dz1).numpy()


def per_sample_filter_gradients(x: tf.Tensor, dz1: tf.Tensor) -> np.ndarray:
    """Each sample's own dw1 [N,9,9,1,20] (a read-only view), one TensorFlow call."""
    return np.asarray(tf_kernels.seed_filter_grad_per_sample(x.dtype)(x, dz1))


class SeedCNN:
    """The article's CNN. ``params`` is a dict of NumPy arrays keyed w1, b1, w2, b2.

    ``dw_mode``: "batched" (one TF call for the batch) or "per-sample" (each sample's
    own convolution, as the article). ``bias_grad``: "seed" (the article's program,
    db1 = mean of dz1 over batch and the 400 positions: exactly 1/400 of the true
    gradient) or "exact" (the true gradient of the loss).
    """

    name = "seed-cnn"

    def __init__(self, params: dict[str, np.ndarray] | None = None, *, seed: int = 0,
                 dtype: type = np.float32, dw_mode: str = "batched", bias_grad: str = "seed"):
        if dw_mode not in DW_MODES:
            raise ValueError(f"dw_mode must be one of {DW_MODES}, got {dw_mode!r}")
        if bias_grad not in BIAS_GRAD_RULES:
            raise ValueError(f"bias_grad must be one of {BIAS_GRAD_RULES}, got {bias_grad!r}")
        self.dtype = np.dtype(dtype)
        self._tf_dtype = tf.as_dtype(self.dtype)
        self.dw_mode = dw_mode
        self.bias_grad = bias_grad
        self._params: dict[str, np.ndarray] = {}
        self.params = init_params(seed, self.dtype) if params is None else params

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self._params

    @params.setter
    def params(self, values: dict[str, np.ndarray]) -> None:
        if set(values) != set(PARAM_SHAPES):
            raise ValueError(f"params must have keys {sorted(PARAM_SHAPES)}, got {sorted(values)}")
        for key, shape in PARAM_SHAPES.items():
            if np.shape(values[key]) != shape:
                raise ValueError(f"param {key} must have shape {shape}, "
                                 f"got {np.shape(values[key])}")
        self._params = {k: np.ascontiguousarray(values[k], dtype=self.dtype) for k in PARAM_SHAPES}

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        """x [N,28,28,1] -> (logits z2 [N,10], cache for :meth:`backward`).

        x is converted to a tensor once; the cache keeps that tensor for the dw1
        convolution. s1 and L1 are read-only NumPy views of TensorFlow's outputs (no copy).
        """
        p = self._params
        x = np.ascontiguousarray(x, dtype=self.dtype)
        tx = tf.convert_to_tensor(x)
        s1, flat = tf_kernels.seed_forward(self._tf_dtype)(
            tx, tf.convert_to_tensor(p["w1"]), tf.convert_to_tensor(p["b1"]))
        s1, flat = np.asarray(s1), np.asarray(flat)  # NHWC flatten: (row, column, channel)
        z2, dense_cache = dense_forward(flat, p["w2"], p["b2"])
        return z2, {"x": x, "x_tensor": tx, "s1": s1,
                    "pooled_shape": (len(x), *POOLED_SHAPE), "dense": dense_cache}

    def backward(self, dz2: np.ndarray, cache: dict) -> tuple[dict, dict]:
        """dz2 [N,10] = dL/dz2 -> (grads keyed like params, intermediate gradients).

        Intermediates: dz2 [N,10], dL1 [N,10,10,20], ds1 [N,20,20,20], dz1 [N,20,20,20].
        """
        grads, inter, _ = self._backward(dz2, cache)
        return grads, inter

    def _backward(self, dz2: np.ndarray, cache: dict) -> tuple[dict, dict, np.ndarray | None]:
        """:meth:`backward`, plus each sample's dw1 [N,9,9,1,20] in per-sample mode."""
        dense = dense_backward(dz2, cache["dense"])
        d_pooled = dense["dx"].reshape(cache["pooled_shape"])
        ds1 = avg_pool_backward(d_pooled, (cache["s1"].shape, 2, 2))
        dz1 = sigmoid_backward(ds1, cache["s1"])
        # Sum over batch and positions as one matrix-vector product: NumPy's reduction over
        # leading axes of [N*400, 20] runs 20-element inner loops and costs several times more.
        dz1_rows = dz1.reshape(-1, PARAM_SHAPES["b1"][1])
        db1 = (np.ones(len(dz1_rows), dtype=self.dtype) @ dz1_rows).reshape(PARAM_SHAPES["b1"])
        if self.bias_grad == "seed":
            db1 /= CONV_POSITIONS  # the article averages over the 400 positions too
        dz1_tensor = tf.convert_to_tensor(dz1)
        per_sample = None
        if self.dw_mode == "per-sample":
            per_sample = per_sample_filter_gradients(cache["x_tensor"], dz1_tensor)
            dw1 = per_sample.sum(axis=0)
        else:
            dw1 = filter_gradient(cache["x_tensor"], dz1_tensor)
        grads = {"w1": dw1, "b1": db1, "w2": dense["dw"], "b2": dense["db"]}
        inter = {"dz2": dz2, "dL1": d_pooled, "ds1": ds1, "dz1": dz1}
        return grads, inter, per_sample

    def reference_forward(
        self, params: dict[str, tf.Tensor], x: tf.Tensor, y: tf.Tensor
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """The same loss in plain TensorFlow ops, for autodiff and finite differences.

        params keyed w1, b1, w2, b2; x [N,28,28,1]; one-hot y [N,10]; all of one dtype.
        Returns (scalar loss, {"z1", "s1", "L1", "z2"}): the tensors whose gradients
        :meth:`backward` reports as intermediates "dz1", "ds1", "dL1", "dz2".
        """
        z1 = tf.nn.conv2d(x, params["w1"], strides=1, padding="VALID") + tf.reshape(
            params["b1"], [-1])
        s1 = tf.sigmoid(z1)
        pooled = tf.nn.avg_pool2d(s1, ksize=2, strides=2, padding="VALID")
        z2 = tf.reshape(pooled, [tf.shape(x)[0], -1]) @ params["w2"] + params["b2"]
        per_output = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z2)
        loss = tf.reduce_mean(tf.reduce_sum(per_output, axis=1))
        return loss, {"z2": z2, "L1": pooled, "s1": s1, "z1": z1}

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> dict:
        """One forward and backward pass on x [N,28,28,1], one-hot y [N,10].

        Returns {"loss": the minimised sigmoid cross-entropy, "cost": the article's
        printed softmax cross-entropy of z2, "logits", "grads", "intermediates"}; in
        per-sample mode also "per_sample_grads": {"w1": each sample's own dw1
        [N,9,9,1,20]}, whose sum over N is grads["w1"].
        """
        y = np.asarray(y, dtype=self.dtype)
        z2, cache = self.forward(x)
        loss, dz2 = sigmoid_cross_entropy(z2, y)
        cost, _ = softmax_cross_entropy(z2, y)
        grads, inter, per_sample = self._backward(dz2, cache)
        result = {"loss": loss, "cost": cost, "logits": z2, "grads": grads,
                  "intermediates": inter}
        if per_sample is not None:
            result["per_sample_grads"] = {"w1": per_sample}
        return result

    def gradients(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Manual gradients of the loss, keyed w1, b1, w2, b2."""
        return self.loss_and_gradients(x, y)["grads"]

    def logits(self, x: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
        """z2 [N,10] for any N, computed in large batches (no backward cache kept)."""
        p = self._params
        features = tf_kernels.seed_features(self._tf_dtype)
        w1, b1 = tf.convert_to_tensor(p["w1"]), tf.convert_to_tensor(p["b1"])
        out = []
        for i in range(0, len(x), batch_size):
            chunk = tf.convert_to_tensor(np.ascontiguousarray(x[i:i + batch_size], self.dtype))
            out.append(dense_forward(np.asarray(features(chunk, w1, b1)), p["w2"], p["b2"])[0])
        return np.concatenate(out) if out else np.zeros((0, PARAM_SHAPES["b2"][1]), self.dtype)

    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of images whose largest output is the true class (labels: int [N])."""
        return float(np.mean(self.logits(x).argmax(axis=1) == labels))
