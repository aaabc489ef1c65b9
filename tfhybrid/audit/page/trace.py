"""The numbers of the backward-pass page that the report does not hold, per layer.

For each layer of a network, from the top (the loss) down, the page shows the chain rule
at that layer: dL/d its output (upstream), its local derivative, dL/d its input
(downstream), each from the manual backward and from the float64 tape, beside the forward
activations. The report holds the gradients the network reports (``report.gradients``);
this module adds, through the layers' own public methods, what it does not:

- the forward activations: each layer's input and output from its ``reference`` in
  float64, at the audited weights and draw (as the per-layer checks see them);
- the tape's gradient at every layer output (one float64 tape over the layers'
  ``reference``, each output watched, as :func:`tfhybrid.audit.layers.check_layers`);
- the manual gradient at an output the network does not report (a ``Flatten`` with
  ``report_gradient=False``): the manual backward run again from the report's gradient
  above it, one layer at a time (``layer.backward``, as ``Sequential.backward`` runs it);
- a parameter-free layer's local derivative, as its backward applies it: dx for an
  upstream gradient of ones (for an element-wise layer, exactly its derivative: the
  sigmoid's s(1 - s), ReLU's mask; for a pooling layer, where each window sends its
  gradient: max pooling's routing, average pooling's even spread), manual and tape;
- inside a composite, each layer's own backward fed the tape's upstream gradient at its
  output (:func:`tfhybrid.audit.forks.trace`), as the layer-at-fault check feeds it.

Nothing here changes a verdict: the page's verdicts and figures are the report's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np

from tfhybrid.audit.judge import MANUAL, TAPE64
from tfhybrid.layers.composite import Composite

# How a layer's local derivative is drawn (see local_kind).
FILTERS, MATRIX, ONES, PATHS, FORMULA, RESHAPE = (
    "filters",
    "matrix",
    "ones",
    "paths",
    "formula",
    "reshape",
)


@dataclasses.dataclass
class Pair:
    """One tensor from the manual backward and from the float64 tape (either may be None:
    not computed)."""

    manual: np.ndarray | None
    tape: np.ndarray | None


@dataclasses.dataclass
class LayerTrace:
    """One use of a layer: network layer ``index``, or a layer ``inside`` it (the steps
    down the composites, as :class:`tfhybrid.audit.layers.Place`), with its input ``x``
    and output ``out`` (the forward, float64), ``upstream`` dL/d out, ``downstream``
    dL/d x (None where no gradient is computed), its ``local`` derivative (kind
    ``local_kind``; a :class:`Pair` for ONES), ``params`` {its own name: network name},
    and, for a composite, the uses inside it (``children``, in backward order).
    ``fed_tape``: the manual backward was fed the tape's upstream gradient (inside a
    composite) instead of the network's manual one."""

    index: int
    inside: tuple
    layer: object
    x: np.ndarray
    out: np.ndarray
    upstream: Pair
    downstream: Pair | None
    local_kind: str
    local: Pair | None
    params: dict[str, str]
    weights: dict[str, np.ndarray]
    fed_tape: bool = False
    children: list[LayerTrace] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class NetworkTrace:
    """Every layer of a network: ``layers`` in backward order (the last layer first),
    the forward ``inputs`` of the layers before the first with parameters (drawn in the
    diagram only), the logits and labels for the loss."""

    layers: list[LayerTrace]
    x: np.ndarray
    logits: np.ndarray
    y: np.ndarray
    dlogits: Pair
    loss: str


def local_kind(layer) -> str:
    """How the page draws ``layer``'s local derivative: its filters (a 4-D weight ``w``),
    its weight matrix (a 2-D ``w``), the paths of a composite, a reshape, the backward
    of an upstream of ones (a layer without parameters), or its formula alone (batch
    norm: its derivative couples the whole batch and has no picture of one map)."""
    from tfhybrid.layers import Flatten

    if isinstance(layer, Composite):
        return PATHS
    shapes = layer.param_shapes(layer.input_shape)
    if "w" in shapes and len(shapes["w"]) == 4:
        return FILTERS
    if "w" in shapes and len(shapes["w"]) == 2:
        return MATRIX
    if type(layer) is Flatten:
        return RESHAPE
    return FORMULA if shapes else ONES


def trace_network(source, report) -> NetworkTrace:
    """Every layer's numbers for the page, for the network and batch of ``source`` (a
    :class:`~tfhybrid.audit.page.source.PageSource`) and its ``report``."""
    from tfhybrid._tf import tf

    manual_grads = report.gradients.get(MANUAL, {})
    tape_grads = report.gradients.get(TAPE64, {})
    with source.network() as model:
        params64 = {k: np.asarray(v, dtype=np.float64) for k, v in model.params.items()}
        tensors = {k: tf.constant(v) for k, v in params64.items()}
        with tf.GradientTape() as tape:  # every layer output watched, as check_layers
            h = tf.constant(np.asarray(source.x, dtype=np.float64))
            inputs, outputs = [], []
            for index, layer in enumerate(model.layers):
                inputs.append(h)
                h = layer.reference(
                    model.layer_params(index, tensors), h, **model.call_options(index, "reference")
                )
                tape.watch(h)
                outputs.append(h)
            loss = model.reference_loss(h, tf.constant(np.asarray(source.y, dtype=np.float64)))
        upstream = tape.gradient(loss, outputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        inputs = [np.asarray(t) for t in inputs]
        outputs = [np.asarray(t) for t in outputs]
        upstream = [np.asarray(t) for t in upstream]

        _, caches = model.forward(np.array(source.x), training=True)
        last = "d" + model.names[-1]
        dlogits = Pair(manual_grads.get(last), tape_grads.get(last, upstream[-1]))
        layers = []
        carried = dlogits.manual  # the manual dL/d output of the layer being traced
        for index in range(len(model.layers) - 1, model.first - 1, -1):
            layer = model.layers[index]
            name = "d" + model.names[index]
            up = Pair(manual_grads.get(name, carried), tape_grads.get(name, upstream[index]))
            need_dx = index > model.first
            dx = None
            if up.manual is not None:
                dx, _ = layer.backward(np.array(up.manual), _cache(layer, caches[index]), need_dx)
            down = None
            if need_dx:
                below = "d" + model.names[index - 1]
                down = Pair(manual_grads.get(below, dx), tape_grads.get(below, upstream[index - 1]))
            carried = None if down is None else down.manual
            options = _network_options(model, index)
            kind = local_kind(layer)
            local = None
            if kind == ONES:
                ones = np.ones((len(source.x), *layer.output_shape_), dtype=model.dtype)
                manual_local = layer.backward(ones, _cache(layer, caches[index]), True)[0]
                local = Pair(
                    manual_local,
                    _vjp(layer, {}, inputs[index], np.ones_like(outputs[index]), options)[1],
                )
            own = model.layer_params(index, params64)
            trace = LayerTrace(
                index=index,
                inside=(),
                layer=layer,
                x=inputs[index],
                out=outputs[index],
                upstream=up,
                downstream=down,
                local_kind=kind,
                local=local,
                params=dict(model.param_keys[index]),
                weights=own,
            )
            if kind == PATHS:
                trace.children = _inside(
                    layer, own, inputs[index], upstream[index], options, index, (), trace.params
                )
            layers.append(trace)
        return NetworkTrace(
            layers=layers,
            x=np.asarray(source.x),
            logits=outputs[-1],
            y=np.asarray(source.y),
            dlogits=dlogits,
            loss=model.loss,
        )


def _cache(layer, cache):
    """The cache as it is for a layer that never writes into it, else a copy (a backward
    of one's own may write into its cache, and the page runs it twice)."""
    return cache if layer.is_pure() else copy.deepcopy(cache)


def _network_options(model, index: int) -> Callable[[str], dict]:
    return lambda method: model.call_options(index, method)


def _vjp(layer, params64: dict, x64: np.ndarray, dout64: np.ndarray, options):
    """(out, dx, {param: gradient}) of ``layer``'s reference at x for upstream dout,
    all float64, under a tape."""
    from tfhybrid._tf import tf

    tensors = {k: tf.constant(np.asarray(v, dtype=np.float64)) for k, v in params64.items()}
    x = tf.constant(np.asarray(x64, dtype=np.float64))
    with tf.GradientTape() as tape:
        tape.watch(x)
        tape.watch(tensors)
        out = layer.reference(tensors, x, **options("reference"))
        target = tf.reduce_sum(out * tf.constant(np.asarray(dout64, dtype=np.float64)))
    dx, grads = tape.gradient(
        target, [x, tensors], unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return np.asarray(out), np.asarray(dx), {k: np.asarray(v) for k, v in grads.items()}


def _inside(composite, params64, x64, dout64, options, index, inside, names) -> list[LayerTrace]:
    """Each use inside ``composite`` at input x and the tape's upstream dout, in backward
    order: its own backward fed the tape's upstream at its output (float64), against the
    tape's dx, as the layer-at-fault check runs it."""
    from tfhybrid.audit.forks import trace
    from tfhybrid.audit.layers import Place

    traced = trace(composite, params64, x64, dout64, options)
    found = []
    for use in reversed(traced.uses):
        layer = use.layer
        local = composite._local(layer, params64)
        owner = composite._owner(layer)
        own_names = {k: names.get(owner + k, owner + k) for k in local}
        out, dx_tape, _ = _vjp(layer, local, use.x, use.dout, use.options)
        values = {k: np.array(v) for k, v in local.items()}
        _, cache = layer.forward(values, np.array(use.x), **use.options("forward"))
        dx, _ = layer.backward(np.array(use.dout), copy.deepcopy(cache), True)
        kind = local_kind(layer)
        local_pair = None
        if kind == ONES:
            ones = np.ones_like(out)
            manual_local = layer.backward(ones, copy.deepcopy(cache), True)[0]
            local_pair = Pair(manual_local, _vjp(layer, {}, use.x, ones, use.options)[1])
        step = (*inside, Place(use.path, use.position, type(layer).__name__))
        item = LayerTrace(
            index=index,
            inside=step,
            layer=layer,
            x=use.x,
            out=out,
            upstream=Pair(None, use.dout),
            downstream=Pair(dx, dx_tape),
            local_kind=kind,
            local=local_pair,
            params=own_names,
            weights=local,
            fed_tape=True,
        )
        if kind == PATHS:
            item.children = _inside(
                layer, local, use.x, use.dout, use.options, index, step, own_names
            )
        found.append(item)
    return found
