"""The audit through forks: what the tape says about each path of a composite and each use
of a shared layer.

A composite's backward writes the fork's rule by hand: x feeds every path, so dL/dx is
the sum of the paths' dx, and a layer used at two places gets the sum of its uses'
gradients (:mod:`tfhybrid.layers.composite`). The usual slips leave fingerprints the tape
can name: dx equals the true gradient without one path's share (a path not added at the
fork), or with one path's share twice; a shared parameter's gradient equals one use's
share (``=`` where ``+=`` belongs).

:func:`trace` runs one call of a composite's ``reference`` under a float64 tape, its
``_tracer`` hook watching each child's output, and gives each use of a child its input
and upstream gradient (what the per-layer checks feed it), each path's own dx and the
true dx. :func:`fork_causes` and :func:`share_causes` turn them into the candidates
:func:`~tfhybrid.audit.judge.judge_tensor` names as likely causes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tfhybrid.layers.base import Layer
from tfhybrid.layers.composite import Composite

NOT_ADDED = "the gradient from one path was not added at the fork"
TWICE = "a path's gradient counted twice"
ONE_USE = "its gradient is that of one use only (the gradients of its uses must add)"

Options = Callable[[str], dict]  # method ("forward" or "reference") -> its keyword arguments


@dataclasses.dataclass(frozen=True)
class Use:
    """One use of a child inside one call of a composite: ``layer`` at ``position`` of
    path ``path``; ``x`` its input [N, *S] and ``dout`` the tape's upstream gradient at
    its output [N, *T] in that call; ``options(method)``: what its forward and reference
    get there (the composite's mode, state and child generator)."""

    path: str
    position: int
    layer: Layer
    x: np.ndarray
    dout: np.ndarray
    options: Options


@dataclasses.dataclass(frozen=True)
class Trace:
    """One call of a composite on x [N, *S] with upstream gradient dout [N, *T]: its
    children's ``uses`` in path order, the true ``dx`` [N, *S], and ``path_dx``, each
    path's own share of it (dL/dx through that path alone; absent for a path the tape
    cannot separate, such as the second of two identity paths)."""

    uses: list[Use]
    dx: np.ndarray
    path_dx: dict[str, np.ndarray]


def trace(
    composite: Composite,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    dout: np.ndarray,
    options: Options,
) -> Trace:
    """``composite``'s reference on x [N, *S] (its parameters ``params``, under its own
    names) under a float64 tape, differentiated for the scalar sum(dout * out)."""
    from tfhybrid._tf import tf

    tensors = {k: tf.constant(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
    x_tensor = tf.constant(np.asarray(x, dtype=np.float64))
    records: dict[tuple[str, int], tuple[Layer, object]] = {}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x_tensor)

        def tracer(path: str, position: int, layer: Layer, h):
            h = tf.identity(h)  # a tensor of its own: its gradient is this use's alone
            tape.watch(h)
            records.setdefault((path, position), (layer, h))  # a path run twice: its first
            return h

        composite._tracer = tracer
        try:
            out = composite.reference(tensors, x_tensor, **options("reference"))
        finally:
            composite.__dict__.pop("_tracer", None)
        target = tf.reduce_sum(out * tf.constant(np.asarray(dout, dtype=np.float64)))
    keys = list(records)
    gradients = tape.gradient(
        target,
        [x_tensor, *(records[k][1] for k in keys)],
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    upstream = dict(zip(keys, gradients[1:], strict=True))
    uses = []
    for path, position, layer in composite.uses():
        if (path, position) not in records:
            continue  # a reference of one's own that does not run it through path_reference
        before = records.get((path, position - 1))
        if position and before is None:
            continue
        h_in = x_tensor if position == 0 else before[1]
        uses.append(
            Use(
                path,
                position,
                layer,
                np.asarray(h_in, dtype=np.float64),
                np.asarray(upstream[(path, position)], dtype=np.float64),
                _child_options(composite, path, position, layer, options),
            )
        )
    path_dx = _path_gradients(composite, tape, x_tensor, records, upstream)
    dx = np.asarray(gradients[0], dtype=np.float64)
    empty = [p for p, layers in composite.paths.items() if not layers]
    if len(empty) == 1 and len(path_dx) == len(composite.paths) - 1:
        # An identity path's dx is dout at its output, which has no tensor of its own
        # here: it is what the other paths leave of the true dx (dx is their sum).
        path_dx[empty[0]] = dx - sum(path_dx.values(), np.zeros_like(dx))
    return Trace(uses, dx, path_dx)


def _path_gradients(composite, tape, x_tensor, records, upstream) -> dict[str, np.ndarray]:
    """Each path's own dx: its output's upstream gradient carried back to x through that
    path alone (a vector-Jacobian product of the path's last output)."""
    from tfhybrid._tf import tf

    found = {}
    for path, layers in composite.paths.items():
        last = (path, len(layers) - 1)
        if not layers or last not in records:
            continue
        share = tape.gradient(
            records[last][1],
            x_tensor,
            output_gradients=upstream[last],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        found[path] = np.asarray(share, dtype=np.float64)
    return found


def _child_options(composite: Composite, path: str, position: int, layer: Layer, options):
    """The options a child's method gets in the composite's call: the composite's own for
    that method (made afresh each time, so each evaluation replays one draw), cut down to
    the child's by the composite itself."""

    def child(method: str) -> dict:
        return composite._options(path, position, layer, method, options(method))

    return child


def fork_causes(composite: Composite, traced: Trace) -> dict[str, np.ndarray]:
    """The dx a backward gives with the fork's rule broken, each with what it means:
    {description: dx [N, *S]}. Empty for a composite of one path."""
    paths = list(composite.paths)
    if len(paths) < 2 or not traced.path_dx:
        return {}
    found = {}
    for path, share in traced.path_dx.items():
        others = [p for p in paths if p != path]
        kept = (
            f"{_name(composite, others[0])}'s gradient alone"
            if len(others) == 1
            else f"the paths' gradients without {_name(composite, path)}'s"
        )
        found[f"{kept}: {NOT_ADDED} ({_name(composite, path)}'s)"] = traced.dx - share
    for path, share in traced.path_dx.items():
        name = _name(composite, path)
        found[f"the true gradient plus {name}'s once more: {TWICE} ({name}'s)"] = traced.dx + share
        found[f"twice {name}'s gradient: {TWICE} ({name}'s), and the other paths' not added"] = (
            2 * share
        )
    return found


def _name(composite: Composite, path: str) -> str:
    """ "path block", or "the identity path shortcut"."""
    return ("the identity " if not composite.paths[path] else "") + f"path {path}"


def use_share(
    layer: Layer,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    dout: np.ndarray,
    options: Options,
) -> dict[str, np.ndarray]:
    """One use's share of its parameters' gradient: the float64 tape of sum(dout *
    layer(x)) for the use's input x [N, *S] and upstream dout [N, *T], x held fixed (an
    earlier use of the same parameters that feeds x has its own share)."""
    from tfhybrid._tf import tf

    tensors = {k: tf.constant(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        out = layer.reference(tensors, tf.constant(x), **options("reference"))
        target = tf.reduce_sum(out * tf.constant(dout))
    grads = tape.gradient(target, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return {k: np.asarray(g, dtype=np.float64) for k, g in grads.items()}


def share_causes(
    shares: Sequence[tuple[str, str, np.ndarray]],
) -> dict[str, dict[str, np.ndarray]]:
    """{parameter: {description: one use's share}} for each parameter with two or more
    shares; ``shares``: (parameter name, where its use is, that use's share)."""
    grouped: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, where, share in shares:
        grouped.setdefault(name, []).append((where, share))
    return {
        name: {f"the gradient of its use at {where} alone: {ONE_USE}": s for where, s in uses}
        for name, uses in grouped.items()
        if len(uses) > 1
    }


def shared_layers(layers: Sequence[Layer]) -> set[int]:
    """The ids of the layers (not composites) used at more than one place, composites'
    insides included: their parameters' gradients are sums over uses."""
    counts: dict[int, int] = {}

    def visit(layer: Layer) -> None:
        if isinstance(layer, Composite):
            for child in layer.children():
                visit(child)
        else:
            counts[id(layer)] = counts.get(id(layer), 0) + 1

    for layer in layers:
        visit(layer)
    return {key for key, count in counts.items() if count > 1}
