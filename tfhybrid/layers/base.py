"""The base class of every layer, the project's and a user's own.

A layer is an op pair with a TensorFlow twin::

    forward(params, x)                 -> (out, cache)     the hybrid forward pass
    backward(dout, cache, need_dx)     -> (dx, grads)      the hand-written backward pass
    reference(params, x)               -> tf.Tensor        the same function in TensorFlow ops
    param_shapes(input_shape)          -> {name: shape}    the parameters it owns (default none)

``params`` holds the layer's own parameters under the names of :meth:`param_shapes`
(``"w"``, ``"b"``); :class:`tfhybrid.Sequential` numbers them in layer order (w1, b1,
w2, ...). ``grads`` is keyed the same way. Shapes exclude the batch axis; tensors are NHWC.

Two optional extras, which the built-in layers have:

- :meth:`backward_per_example`: each sample's own parameter gradients, [N, *shape].
- The fused-forward protocol, for a layer whose forward is exactly :meth:`reference`:

  ``fused = True``
      :class:`~tfhybrid.Sequential` then runs each run of consecutive fused layers as one
      compiled TensorFlow call (:mod:`tfhybrid.models.fusion`) instead of calling
      :meth:`forward`. A run is compiled only when it holds a layer with
      ``needs_tf = True`` (a convolution): a run without one stays in NumPy, through
      :meth:`forward`. So whether a layer takes this path depends on its neighbours, and
      both paths must give the same cache.
  ``fused_needs``
      which tensors the call keeps for :meth:`cache_from`: "x" (the layer's input) and/or
      "out" (its output); the others are freed inside the call and arrive as None.
  ``cache_from(params, x, out, batch) -> cache``
      the cache :meth:`forward` would have returned, built from those tensors. They are
      **TensorFlow tensors** (``forward`` gets NumPy arrays): convert what you keep with
      ``np.asarray``. ``params`` are NumPy arrays; ``batch`` is N.

  :func:`tfhybrid.audit.check_layer` checks both paths of a fused layer (rows marked
  "fused path"), so a ``cache_from`` that disagrees with ``forward`` is caught.

Modes, state and randomness
---------------------------
``forward`` and ``reference`` may take any of three keyword arguments; a layer declares
the ones it needs in its signature (as Keras's ``call(inputs, training=None)``) and is
handed only those, so a layer that takes none works unchanged:

``training: bool``
    True in training, in ``loss_and_gradients`` and in every audit; False in ``logits``,
    ``accuracy`` and evaluation. The cache records it for ``backward``.
``state: dict[str, np.ndarray]``
    The layer's state that is not a parameter (batch norm's running mean and variance),
    under the names of :meth:`state_shapes`, first :meth:`init_state`. ``forward`` may
    write new values into it (``state["running_mean"] = ...``) in training mode only;
    no optimizer ever touches it. :class:`~tfhybrid.Sequential` names it like the
    parameters (running_mean3), saves it in checkpoints and shows it in ``summary()``.
``rng: np.random.Generator``
    A fresh generator for this one call, derived from the network's seed, the step and
    the layer's place (:func:`layer_rng`): draw every random number from it, never from
    NumPy's global generator. Handed a generator in the same state, ``forward`` and
    ``reference`` draw the same numbers, which is how the audit replays one draw in
    every evaluation and how a resumed run draws what the uninterrupted run drew.

A layer whose training forward depends on the whole batch (batch norm's statistics)
sets ``couples_batch = True``: its batch is never split into pieces, and it has no
per-example gradients.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

Shape = tuple[int, ...]
CALL_OPTIONS = ("training", "state", "rng")  # the keywords forward and reference may take


def layer_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator layer ``index`` draws from at training step ``step`` of a network
    seeded ``seed``: a function of the three numbers alone (a SeedSequence with spawn key
    (step, index)), so any step can be replayed on its own, as the data order is."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(step, index)))


def accepted_options(function: Callable) -> frozenset[str]:
    """Which of ``training``, ``state`` and ``rng`` ``function`` takes (by its signature)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: it takes none
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return frozenset(CALL_OPTIONS)
    return frozenset(p.name for p in parameters if p.name in CALL_OPTIONS)


def call_options(
    function: Callable,
    *,
    training: bool,
    state: dict | None = None,
    rng: Callable[[], np.random.Generator] | None = None,
    wanted: frozenset[str] | None = None,
) -> dict:
    """The keyword arguments ``function`` takes among the three, ``rng`` made fresh for
    this call (``rng`` is a factory, so each call starts from the same generator state).
    ``wanted``: :func:`accepted_options` of ``function``, when the caller keeps it."""
    wanted = accepted_options(function) if wanted is None else wanted
    out: dict[str, Any] = {}
    if "training" in wanted:
        out["training"] = bool(training)
    if "state" in wanted:
        out["state"] = {} if state is None else state
    if "rng" in wanted:
        out["rng"] = rng() if rng is not None else np.random.default_rng(0)
    return out


def output_shape_of(layer: Layer, input_shape: Shape) -> Shape:
    """The layer's own ``output_shape``, else its ``reference`` run once (eagerly) on one
    zero input, in inference mode with its first state and a fixed generator."""
    if hasattr(layer, "output_shape"):
        return tuple(int(d) for d in layer.output_shape(input_shape))
    from tfhybrid._tf import tf

    with tf.init_scope():  # eagerly, also when first called inside a traced graph (Keras fit)
        zeros = {k: tf.zeros(s, tf.float64) for k, s in layer.param_shapes(input_shape).items()}
        options = call_options(
            layer.reference,
            training=False,
            state=layer.init_state(input_shape),
            rng=lambda: np.random.default_rng(0),
        )
        out = layer.reference(zeros, tf.zeros((1, *input_shape), tf.float64), **options)
    return tuple(int(d) for d in out.shape[1:])


class Layer:
    """Subclass this for a layer of your own; see the module docstring for the contract."""

    fused: bool = False
    fused_needs: tuple[str, ...] = ("x", "out")
    # True for a layer whose forward only TensorFlow runs (the convolution): a run of fused
    # layers without one stays in NumPy, where a small network is faster.
    needs_tf: bool = False
    # True for a built-in layer whose step runs a variant from tfhybrid.fast in place of
    # its definition in tfhybrid.ops: check_layer then checks both (rows "readable path").
    fast_path: bool = False
    # Output name prefix: Sequential names outputs PREFIX + the number of the latest
    # layer with parameters (z1, a1, p1, ...), unless ``name`` is given.
    prefix: str = "h"
    # False: the gradient w.r.t. this layer's output is not reported among the intermediates.
    report_gradient: bool = True
    # True promises that forward and backward never write into the arrays they are given
    # (x, params, dout, and what the cache shares with other layers); Sequential then
    # passes them as they are. Else (None, for a layer whose forward or backward is
    # written outside tfhybrid.layers) it passes copies: code like ``x *= 3`` or a ReLU
    # that zeroes ``dout`` in place cannot corrupt another layer's cache, the weights or
    # the reported gradients.
    pure: bool | None = None
    # True for a layer whose training forward mixes the samples of a batch (batch norm).
    couples_batch: bool = False

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name.isidentifier()):
            raise ValueError(f"layer name must be an identifier string, got {name!r}")
        self.name = name

    # --- what a subclass defines ---------------------------------------------------------
    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """The layer's parameters for one input of ``input_shape`` (no batch axis)."""
        return {}

    def init_params(self, rng: np.random.Generator, input_shape: Shape) -> dict[str, np.ndarray]:
        """Initial values in float64, drawn from ``rng`` in the order of :meth:`param_shapes`.

        Default: standard normal x 0.1 for every parameter (the source article's rule).
        """
        return {
            name: rng.standard_normal(shape) * 0.1
            for name, shape in self.param_shapes(input_shape).items()
        }

    def state_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """The layer's state that is not a parameter (running statistics); default none."""
        return {}

    def init_state(self, input_shape: Shape) -> dict[str, np.ndarray]:
        """The state's first values in float64; default zeros."""
        return {name: np.zeros(shape) for name, shape in self.state_shapes(input_shape).items()}

    def forward(self, params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define forward(params, x)")

    def backward(
        self, dout: np.ndarray, cache: Any, need_dx: bool = True
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        raise NotImplementedError(
            f"{type(self).__name__} must define backward(dout, cache, need_dx)"
        )

    def reference(self, params: dict, x):
        raise NotImplementedError(f"{type(self).__name__} must define reference(params, x)")

    # --- optional ------------------------------------------------------------------------
    def backward_per_example(
        self, dout: np.ndarray, cache: Any, need_dx: bool = True
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """As :meth:`backward`, with each sample's own gradients [N, *shape] (their sum
        over N is the batch gradient). A layer without parameters has nothing to split."""
        dx, grads = self.backward(dout, cache, need_dx)
        if grads:
            raise NotImplementedError(
                f"layer {type(self).__name__} has parameters but no backward_per_example; "
                "define it to get per-example gradients"
            )
        return dx, grads

    def cache_from(self, params: dict[str, np.ndarray], x, out, batch: int) -> Any:
        """For a fused layer: the cache :meth:`forward` would have returned, from the
        tensors named in ``fused_needs`` (the others are None) and the batch size."""
        raise NotImplementedError(f"{type(self).__name__} is fused but has no cache_from")

    def options_taken(self, method: str = "forward") -> frozenset[str]:
        """Which of training, state and rng ``method`` ("forward" or "reference") takes:
        those its signature names (a composite: those its layers take)."""
        return accepted_options(getattr(self, method))

    def takes(self, option: str, method: str = "forward") -> bool:
        """Whether ``method`` ("forward" or "reference") takes ``option`` ("training",
        "state" or "rng")."""
        return option in self.options_taken(method)

    @property
    def random(self) -> bool:
        """Whether the layer draws random numbers (its forward takes ``rng``)."""
        return self.takes("rng")

    def is_pure(self) -> bool:
        """``pure`` if set, else whether forward and backward are the project's own."""
        if self.pure is not None:
            return bool(self.pure)
        cls = type(self)
        return all(
            (getattr(cls, method).__module__ or "").startswith("tfhybrid.layers.")
            for method in ("forward", "backward", "backward_per_example")
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name or ''})"
