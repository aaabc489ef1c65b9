"""``CodeLayer``: code in another convention as a layer of a :class:`tfhybrid.Sequential`.

    net = tfhybrid.Sequential([
        layer_object(MyConv(W, b)).layer(references.conv(pad=1, layout="NCHW"), layout="NCHW"),
        ReLU(), Flatten(), Dense(10)])
    audit(net, x, y)          # its backward is checked on its own too: the layer at fault

The network's tensors are NHWC with a batch axis. A layer in NCHW gets its input and its
upstream gradient transposed to NCHW and its output and dx transposed back; a layer
written for one image (HWC, CHW) runs once per image, its parameter gradients summed
over the images. Only 4-D tensors are transposed: a [N, D] tensor (after a flatten)
passes as it is. The parameters stay in the code's own layout ((F, C, HH, WW)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from tfhybrid.audit.layouts import NETWORK, checked_layout, has_batch, permutation, with_batch
from tfhybrid.audit.reference_call import call_reference
from tfhybrid.layers.base import Layer, Shape

if TYPE_CHECKING:  # pair.py makes CodeLayers: it imports this module
    from tfhybrid.audit.conventions.pair import OpPair


def to_code(x, layout: str, transpose=np.transpose):
    """A network tensor (batched NHWC) in the code's ``layout``, still batched."""
    if len(x.shape) != 4:
        return x
    return transpose(x, permutation(NETWORK, with_batch(layout)))


def to_network(x, layout: str, transpose=np.transpose):
    """The inverse of :func:`to_code`: a batched tensor in ``layout`` as NHWC."""
    if len(x.shape) != 4:
        return x
    return transpose(x, permutation(with_batch(layout), NETWORK))


def narrowed(value, like: np.ndarray) -> np.ndarray:
    """``value`` as an array, cast down to ``like``'s dtype where it is wider: textbook
    code makes float64 arrays (``np.zeros(shape)``) inside a float32 network, which takes
    its own dtype back. A narrower result stays as it is, so a check still sees code that
    computes in float32 and judges it at float32's tolerance."""
    array = np.asarray(value)
    if array.dtype.kind == "f" and array.dtype.itemsize > np.dtype(like.dtype).itemsize:
        return array.astype(like.dtype)
    return array


class CodeLayer(Layer):
    """An :class:`~tfhybrid.audit.conventions.pair.OpPair` as a layer.

    ``reference``: the same function in TensorFlow ops, taking the code's tensors (its
    input first, then the parameters, by name or positionally as check_op calls it) in
    the code's layout: the audit differentiates it (:mod:`tfhybrid.audit.references`).
    ``params``: the initial parameters, name -> array in the code's shapes. ``layout``:
    the code's input layout (NHWC, NCHW, or HWC, CHW for code without a batch axis);
    ``out_layout``: its output's (default: ``layout``). ``training``: the name of the
    code's keyword that takes the mode (Deep Learning from Scratch's ``train_flg``),
    handed the network's (True in training and every audit, False in evaluation).
    Outputs and gradients wider than the network's dtype are cast down to it.
    Raises ValueError for a missing reference or parameters that are not the code's.
    """

    def __init__(
        self,
        op: OpPair,
        reference: Callable,
        params: Mapping[str, np.ndarray],
        *,
        layout: str = "NHWC",
        out_layout: str | None = None,
        training: str | None = None,
        name: str | None = None,
    ):
        super().__init__(name)
        if not callable(reference):
            raise ValueError(
                "a network layer needs a reference, the same function in TensorFlow ops "
                "(the audit differentiates it): e.g. tfhybrid.audit.references.conv(...); "
                f"got {type(reference).__name__}"
            )
        expected = set(op.arguments[1:])
        if not isinstance(params, Mapping) or set(params) != expected:
            got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(
                f"params must hold {op.name}'s parameters {sorted(expected)}, got {got}"
            )
        if training is not None and (not isinstance(training, str) or not training.isidentifier()):
            raise ValueError(f"training must name the code's mode keyword, got {training!r}")
        self.op, self.code_reference, self.training = op, reference, training
        self.layout = checked_layout(layout)
        self.out_layout = self.layout if out_layout is None else checked_layout(out_layout)
        self.initial = {k: np.array(params[k], dtype=np.float64) for k in op.arguments[1:]}

    def __repr__(self) -> str:
        return f"CodeLayer({self.op.name}, {self.layout})"

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {k: v.shape for k, v in self.initial.items()}

    def init_params(self, rng: np.random.Generator, input_shape: Shape) -> dict[str, np.ndarray]:
        """The code's own parameters (``rng`` is not drawn from)."""
        return {k: v.copy() for k, v in self.initial.items()}

    def options_taken(self, method: str = "forward") -> frozenset[str]:
        """``training`` for the forward when the code takes a mode; nothing else."""
        return frozenset({"training"}) if self.training and method == "forward" else frozenset()

    @property
    def batched(self) -> bool:
        return has_batch(self.layout)

    def _run(self, x, params, extra) -> tuple[np.ndarray, object]:
        result = self.op.run({self.op.input: x, **params}, extra)
        if not isinstance(result, tuple) or len(result) != 2:
            raise ValueError(
                f"{self.op.name}'s forward must give (out, cache); got {type(result).__name__}"
            )
        return np.asarray(result[0]), result[1]

    def forward(self, params, x, training: bool = True):
        extra = {self.training: bool(training)} if self.training else {}
        code_x = to_code(x, self.layout)
        if self.batched:
            out, cache = self._run(code_x, params, extra)
        else:
            pieces = [self._run(sample, params, extra) for sample in code_x]
            out, cache = np.stack([out for out, _ in pieces]), [cache for _, cache in pieces]
        return narrowed(to_network(out, self.out_layout), x), cache

    def backward(self, dout, cache, need_dx: bool = True):
        code_dout = to_code(dout, self.out_layout)
        if self.batched:
            grads = dict(self.op.backward(code_dout, cache))
        else:
            each = [dict(self.op.backward(d, c)) for d, c in zip(code_dout, cache, strict=True)]
            grads = {k: sum(np.asarray(g[k]) for g in each) for k in self.initial if k in each[0]}
            if all(self.op.input in g for g in each):
                grads[self.op.input] = np.stack([np.asarray(g[self.op.input]) for g in each])
        missing = [k for k in self.initial if k not in grads]
        if missing:
            raise ValueError(f"{self.op.name}'s backward gave no gradient for {missing}")
        dx = None
        if need_dx:
            if grads.get(self.op.input) is None:
                raise ValueError(
                    f"{self.op.name}'s backward gave no dx, but the layer below needs it"
                )
            dx = narrowed(to_network(np.asarray(grads[self.op.input]), self.layout), dout)
        return dx, {k: narrowed(grads[k], dout) for k in self.initial}

    def reference(self, params, x):
        from tfhybrid._tf import tf

        def call(sample):
            tensors = {self.op.input: sample, **{k: params[k] for k in self.initial}}
            return call_reference(self.code_reference, tensors)

        code_x = to_code(x, self.layout, tf.transpose)
        if self.batched:
            out = call(code_x)
        else:  # code for one image: its reference too, once per image
            out = tf.stack([call(code_x[i]) for i in range(int(code_x.shape[0]))])
        return to_network(out, self.out_layout, tf.transpose)
