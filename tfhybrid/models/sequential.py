"""A chain of layers ending in logits, trained on the softmax cross-entropy.

Subclasses describe a network (``architecture``) and its source's initialisation
(``init_params``); this class runs the hybrid forward and the hand-written backward,
and also the same network in plain TensorFlow (``reference_forward``) so that
``tf.GradientTape`` can check every gradient, of parameters and of intermediates.
"""

from __future__ import annotations

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.ops.conv import DW_MODES
from tfhybrid.ops.losses import softmax_cross_entropy
from tfhybrid.ops.maxpool import TIE_RULES

EVAL_BATCH = 2_000


class SequentialNet:
    """x [N,28,28,1] in [0,1] -> (x * input_scale + input_shift) -> layers -> logits [N,10].

    ``params`` is a dict of NumPy arrays keyed as ``param_shapes``. Intermediate
    tensors are named by the layer that outputs them; the manual backward reports the
    gradient of the loss w.r.t. intermediate NAME as ``intermediates["d" + NAME]``.

    Options: ``pool_ties`` "first" (the true gradient, as TensorFlow) or "all" (the
    sources' rule, for the audit); ``dw_mode`` "batched" or "per-sample" filter gradients.
    """

    name = ""
    input_scale = 1.0
    input_shift = 0.0

    def __init__(self, params: dict[str, np.ndarray] | None = None, *, seed: int = 0,
                 dtype: type = np.float32, pool_ties: str = "first", dw_mode: str = "batched",
                 input_scale: float | None = None, input_shift: float | None = None):
        if pool_ties not in TIE_RULES:
            raise ValueError(f"pool_ties must be one of {TIE_RULES}, got {pool_ties!r}")
        if dw_mode not in DW_MODES:
            raise ValueError(f"dw_mode must be one of {DW_MODES}, got {dw_mode!r}")
        self.dtype = np.dtype(dtype)
        self.pool_ties, self.dw_mode = pool_ties, dw_mode
        if input_scale is not None:
            self.input_scale = float(input_scale)
        if input_shift is not None:
            self.input_shift = float(input_shift)
        self.param_shapes, self.layers = self.architecture()
        self._params: dict[str, np.ndarray] = {}
        self.params = (self.init_params(np.random.default_rng(seed)) if params is None
                       else params)

    # --- what a subclass defines -------------------------------------------------------
    def architecture(self) -> tuple[dict[str, tuple], list[tuple[str, object]]]:
        """-> (param name -> shape, [(output name, layer), ...]); the last output is logits."""
        raise NotImplementedError

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The source's initialisation, drawn from ``rng`` in float64."""
        raise NotImplementedError

    # --- parameters ----------------------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        return self._params

    @params.setter
    def params(self, values: dict[str, np.ndarray]) -> None:
        if set(values) != set(self.param_shapes):
            raise ValueError(f"params must have keys {sorted(self.param_shapes)}, "
                             f"got {sorted(values)}")
        for key, shape in self.param_shapes.items():
            if np.shape(values[key]) != tuple(shape):
                raise ValueError(f"param {key} must have shape {tuple(shape)}, "
                                 f"got {np.shape(values[key])}")
        # Copies: two models built from one dict must not train the same arrays.
        self._params = {k: np.array(values[k], dtype=self.dtype, order="C", copy=True)
                        for k in self.param_shapes}

    # --- hybrid forward and manual backward ----------------------------------------------
    def first_parameter_layer(self) -> int:
        """Index of the first layer with parameters: no gradient is needed below it."""
        return next(i for i, (_n, layer) in enumerate(self.layers) if layer.param_names)

    def scale_inputs(self, x):
        """The source's input scaling, x * input_scale + input_shift (NumPy or TF)."""
        if self.input_scale != 1.0:
            x = x * self.input_scale
        if self.input_shift != 0.0:
            x = x + self.input_shift
        return x

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list]:
        """x [N,28,28,1] -> (logits [N,10], per-layer caches for :meth:`backward`)."""
        h = self.scale_inputs(np.asarray(x, dtype=self.dtype)).astype(self.dtype, copy=False)
        caches = []
        for _name, layer in self.layers:
            h, cache = layer.forward(self._params, h)
            caches.append(cache)
        return h, caches

    def backward(self, dlogits: np.ndarray, caches: list) -> tuple[dict, dict]:
        """dL/dlogits -> (grads keyed like params, {"d" + NAME: dL/dNAME}).

        Intermediate gradients are reported for the output of every layer from the first
        layer with parameters on; nothing below that layer needs a gradient.
        """
        grads: dict[str, np.ndarray] = {}
        names = [name for name, _layer in self.layers]
        first = self.first_parameter_layer()
        inter = {"d" + names[-1]: dlogits}
        dout = dlogits
        for index in range(len(self.layers) - 1, first - 1, -1):
            _name, layer = self.layers[index]
            dout, layer_grads = layer.backward(dout, caches[index], need_dx=index > first)
            grads.update(layer_grads)
            if index > first:
                inter["d" + names[index - 1]] = dout
        return grads, inter

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> dict:
        """One forward and backward pass on x [N,28,28,1], one-hot y [N,10].

        Returns {"loss" (mean softmax cross-entropy), "cost" (the same number, the key
        SeedCNN uses for the printed cost), "logits", "grads", "intermediates"}.
        """
        y = np.asarray(y, dtype=self.dtype)
        logits, caches = self.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        grads, inter = self.backward(dlogits.astype(self.dtype, copy=False), caches)
        return {"loss": loss, "cost": loss, "logits": logits, "grads": grads,
                "intermediates": inter}

    def gradients(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        return self.loss_and_gradients(x, y)["grads"]

    def logits(self, x: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
        return np.concatenate([self.forward(x[i:i + batch_size])[0]
                               for i in range(0, len(x), batch_size)])

    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of images whose largest logit is the true class (labels: int [N])."""
        return float(np.mean(self.logits(x).argmax(axis=1) == labels))

    # --- the same network in plain TensorFlow -------------------------------------------
    def reference_forward(self, params: dict, x, y) -> tuple:
        """(mean softmax cross-entropy, {NAME: tensor}) with TensorFlow ops only.

        ``params``: dict of tf tensors or variables keyed like :attr:`params`, all of one
        dtype, in which the whole loss is computed (whatever the model's own ``dtype``);
        x [N,28,28,1] and one-hot y [N,10] as tensors or arrays. The named tensors are the
        layer outputs whose gradients :meth:`backward` reports (from the first layer with
        parameters on). Max pooling here is TensorFlow's, whose gradient is the true one
        (first maximum), whatever ``pool_ties`` says.
        """
        dtype = tf.as_dtype(next(iter(params.values())).dtype)  # the audit runs float64 too
        h = self.scale_inputs(tf.cast(tf.convert_to_tensor(x), dtype))
        inter = {}
        first = self.first_parameter_layer()
        for index, (name, layer) in enumerate(self.layers):
            h = layer.reference(params, h)
            if index >= first:  # the outputs whose gradients backward reports
                inter[name] = h
        y = tf.convert_to_tensor(y, dtype=h.dtype)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, h))
        return loss, inter
