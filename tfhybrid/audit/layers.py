"""The layer at fault: each layer of a ``Sequential`` checked on its own, in float64.

A wrong gradient in a network shows in every tensor below the layer that made it, so the
network's table alone cannot say where the bug is. Here each layer's backward is fed the
reference's upstream gradient (the float64 tape's dL/d its output) and its own cache at
the same input and weights, and its dx and parameter gradients are judged against the
tape of its own ``reference`` and finite differences of its own ``forward`` (the judge of
:func:`~tfhybrid.audit.check_op`). The first layer in backward order whose own backward
is wrong is at fault; a layer below it whose own backward is right but whose gradients
in the network are wrong inherits its error.

Through forks: every layer inside a composite is checked so too, at its input and the
tape's upstream gradient at its output inside the composite (:mod:`tfhybrid.audit.forks`),
nested composites included, and each composite as a whole. A composite whose own
backward is wrong while every layer inside it matches has its fault in its join (how it
hands dout to its paths and adds their dx at the fork); one with a wrong layer inside
merely holds that layer's fault. A layer inside is named by its path from the network's
layer: ``3 (Residual, output res3) > block > 1 (Conv2D)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.compare import MATCH
from tfhybrid.audit.confirm import Borrowed, other_shapes, shape_text
from tfhybrid.audit.forks import fork_causes, share_causes, shared_layers, trace, use_share
from tfhybrid.audit.judge import (
    MANUAL,
    PER_EXAMPLE,
    PER_EXAMPLE_SUFFIX,
    TAPE32,
    TAPE64,
    TensorCheck,
    cause_text,
    judge_tensor,
)
from tfhybrid.audit.ops import OpReport, layer_pair, run_check, second_shape_check
from tfhybrid.audit.vote import unanimous
from tfhybrid.layers.composite import Composite

LAYER_FD_SAMPLES = 12  # coordinates per tensor of one layer (the network's table has more)
OK, AT_FAULT, INHERITS, ALSO_WRONG = "ok", "at fault", "inherits", "also wrong"
HOLDS = "holds the fault"  # a composite whose own backward is wrong by a layer inside it
NETWORK_UPSTREAM = "the float64 tape's upstream gradient (dL/d its output in the network)"
JOIN_AT_FAULT = (
    "every layer inside matches on its own, so the fault is in its join (how its backward "
    "hands dout to each path and adds the paths' gradients at the fork)"
)


@dataclasses.dataclass(frozen=True)
class Place:
    """One step into a composite: the child at ``position`` of path ``path``, of class
    ``layer``."""

    path: str
    position: int
    layer: str

    def __str__(self) -> str:
        return f"{self.path} > {self.position} ({self.layer})"


@dataclasses.dataclass(frozen=True)
class LayerVerdict:
    """Layer ``index`` (``output``: its output's name; ``outer``: its class), or a layer
    ``inside`` it (the steps down the composites), of class ``layer``: ``status`` ok, at
    fault, also wrong (its own backward is wrong too, below the one at fault), inherits
    or holds the fault (a composite with a wrong layer inside); ``check``: its own
    backward's check (inputs x and its parameters under their layer names);
    ``per_example``: its per-example gradients against per-sample tapes; ``network``: its
    tensors that mismatch in the network's audit. ``joins``: a composite checked as a
    whole (its join and fork included); ``prefix``: its parameters' names inside layer
    ``index`` ("block.0."); ``shares``: for a layer used at several places, this use's
    share of each parameter's gradient, named inside layer ``index``. ``index`` is None
    for a composite checked on its own (:func:`~tfhybrid.audit.check_layer`)."""

    index: int | None
    layer: str
    output: str
    status: str
    check: OpReport
    per_example: tuple[TensorCheck, ...] = ()
    network: tuple[str, ...] = ()
    outer: str = ""
    inside: tuple[Place, ...] = ()
    joins: bool = False
    prefix: str = ""
    shares: dict[str, np.ndarray] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def own_ok(self) -> bool:
        return self.check.ok and all(item.matches for item in self.per_example)

    @property
    def own_verdicts(self) -> dict[str, str]:
        out = {k: v for k, v in self.check.verdicts.items() if v != "not checked"}
        out.update({item.name: item.verdict for item in self.per_example if not item.matches})
        return out

    def describe(self) -> str:
        """ "2 (ReLU, output a1)", or "3 (Residual, output res3) > block > 1 (Conv2D)"."""
        top = self.outer or self.layer
        head = top if self.index is None else f"{self.index} ({top}, output {self.output})"
        return " > ".join([head, *map(str, self.inside)])

    def short(self) -> str:
        """The name on a "likely cause:" line: "2", or "3 > block > 1 (Conv2D)"."""
        head = (self.outer or self.layer) if self.index is None else str(self.index)
        return " > ".join([head, *map(str, self.inside)])

    def contains(self, other: LayerVerdict) -> bool:
        """Whether ``other`` is a layer inside this one (a composite)."""
        depth = len(self.inside)
        return (
            other.index == self.index
            and len(other.inside) > depth
            and other.inside[:depth] == self.inside
        )

    def __str__(self) -> str:
        return f"layer {self.describe()}: {self.status}\n{self.check}"

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "layer": self.layer,
            "output": self.output,
            "where": self.describe(),
            "inside": [dataclasses.asdict(step) for step in self.inside],
            "joins": self.joins,
            "status": self.status,
            "own_ok": self.own_ok,
            "own_verdicts": self.own_verdicts,
            "network_mismatches": list(self.network),
            "check": self.check.to_dict(),
            "per_example": [item.to_dict() for item in self.per_example],
        }


@dataclasses.dataclass(frozen=True)
class At:
    """Where a use sits: in layer ``index`` (``output``, class ``outer``) of a network, or
    in the composite checked on its own (``index`` None), the steps ``inside``; its
    parameters are named ``prefix`` + their own names inside that layer."""

    index: int | None
    output: str
    outer: str
    inside: tuple[Place, ...] = ()
    prefix: str = ""

    def down(self, composite: Composite, path: str, position: int, layer) -> At:
        step = Place(path, position, type(layer).__name__)
        return dataclasses.replace(
            self, inside=(*self.inside, step), prefix=self.prefix + composite._owner(layer)
        )


@dataclasses.dataclass(frozen=True)
class Scope:
    """What every check of one audit shares: the ids of the layers used at several places
    (their shares are kept), whether per-example gradients are checked, where the
    upstream gradient comes from (for the table's header) and the coordinates per tensor."""

    shared: frozenset[int] = frozenset()
    per_example: bool = False
    upstream: str = NETWORK_UPSTREAM
    fd_samples: int = LAYER_FD_SAMPLES


def check_layers(
    model, x: np.ndarray, y: np.ndarray, *, seed: int = 0, per_example: bool = False
) -> list[LayerVerdict]:
    """Each layer from the first with parameters on, in backward order (last first); a
    composite's own check is followed by those of the layers inside it."""
    from tfhybrid._tf import tf

    params = {k: np.asarray(v, dtype=np.float64) for k, v in model.params.items()}
    tensors = {k: tf.constant(v) for k, v in params.items()}
    with tf.GradientTape() as tape:  # every layer output watched: its upstream gradient
        h = tf.constant(np.asarray(x, dtype=np.float64))
        inputs, outputs = [], []
        for index, layer in enumerate(model.layers):
            inputs.append(h)
            h = layer.reference(model.layer_params(index, tensors), h, **_options(model, index))
            tape.watch(h)
            outputs.append(h)
        loss = model.reference_loss(h, tf.constant(np.asarray(y, dtype=np.float64)))
    upstream = tape.gradient(loss, outputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    scope = Scope(frozenset(shared_layers(model.layers)), per_example)
    verdicts = []
    for index in range(len(model.layers) - 1, model.first - 1, -1):
        layer = model.layers[index]
        verdicts += check_use(
            layer,
            model.layer_params(index, params),
            inputs[index].numpy(),
            upstream[index].numpy(),
            _network_options(model, index),
            At(index, model.names[index], type(layer).__name__),
            scope,
            need_dx=index > model.first,
            seed=seed + index,
        )
    return verdicts


def _options(model, index: int, method: str = "reference") -> dict:
    """What layer ``index``'s method gets in the network's training pass being audited (the
    draw replayed, a copy of the state); {} for a model without these."""
    call = getattr(model, "call_options", None)
    return call(index, method) if callable(call) else {}


def _network_options(model, index: int) -> Callable[[str], dict]:
    return lambda method: _options(model, index, method)


def check_use(
    layer,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    dout: np.ndarray,
    options: Callable[[str], dict],
    at: At,
    scope: Scope,
    *,
    need_dx: bool = True,
    seed: int = 0,
) -> list[LayerVerdict]:
    """One use of ``layer`` checked on its own at input x [N, *S], upstream gradient dout
    [N, *T] and ``params`` (its own names): its verdict, and for a composite the verdicts
    of the layers inside it after it (:func:`check_inside`)."""
    inside = Inside([], {}, False)
    if isinstance(layer, Composite):
        inside = check_inside(layer, params, x, dout, options, at, scope, seed=seed)
    check = _own_check(layer, x, params, dout, need_dx, seed, options, scope, inside.candidates)
    extra = ()
    if scope.per_example and params:
        extra = tuple(_per_example(layer, x, params, dout, need_dx, options))
    shares = {}
    if id(layer) in scope.shared:  # its uses' gradients add: keep this one's share
        found = use_share(layer, params, x, dout, options)
        shares = {at.prefix + k: v for k, v in found.items()}
    verdict = LayerVerdict(
        at.index,
        type(layer).__name__,
        at.output,
        OK,
        check,
        extra,
        outer=at.outer,
        inside=at.inside,
        joins=inside.complete,
        prefix=at.prefix,
        shares=shares,
    )
    return [verdict, *inside.verdicts]


class Inside(NamedTuple):
    """The layers inside one call of a composite, each checked on its own (in backward
    order), the candidates of the composite's likely causes ({input: {description:
    gradient}}), and whether every use inside was traced (else nothing is claimed of
    them: a reference of one's own that does not run its paths through path_reference)."""

    verdicts: list[LayerVerdict]
    candidates: dict[str, dict[str, np.ndarray]]
    complete: bool


def check_inside(
    composite: Composite,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    dout: np.ndarray,
    options: Callable[[str], dict],
    at: At,
    scope: Scope,
    *,
    seed: int = 0,
) -> Inside:
    """Each use of a layer inside ``composite`` checked on its own, fed the float64 tape's
    upstream gradient at its output for the composite's upstream dout [N, *T] at input x
    [N, *S], in backward order (the last path's last layer first); and the candidates the
    composite's own check names as likely causes: {input: {description: gradient}} (dx
    with the fork's rule broken, a shared parameter's gradient of one use alone)."""
    traced = trace(composite, params, x, dout, options)
    if len(traced.uses) != len(composite.uses()):
        return Inside([], {}, False)
    inner: list[LayerVerdict] = []
    for number in range(len(traced.uses) - 1, -1, -1):
        use = traced.uses[number]
        inner += check_use(
            use.layer,
            composite._local(use.layer, params),
            use.x,
            use.dout,
            use.options,
            at.down(composite, use.path, use.position, use.layer),
            scope,
            seed=seed + 1 + number,
        )
    depth = len(at.inside)
    shares = [
        (name[len(at.prefix) :], " > ".join(map(str, item.inside[depth:])), share)
        for item in inner
        for name, share in item.shares.items()
        if name.startswith(at.prefix)
    ]
    return Inside(inner, {"x": fork_causes(composite, traced), **share_causes(shares)}, True)


def shared_candidates(verdicts: list[LayerVerdict], model) -> dict[str, dict[str, np.ndarray]]:
    """{network parameter: {description: one use's share}} for each parameter of a layer
    used at several places: what its gradient is when one use's overwrote the others'."""
    shares = [
        (model.param_keys[item.index][name], f"layer {item.describe()}", share)
        for item in verdicts
        for name, share in item.shares.items()
    ]
    return share_causes(shares)


def _own_check(
    layer, x_in, local, dout, need_dx, seed, options, scope: Scope, candidates
) -> OpReport:
    values = {"x": np.array(x_in), **{k: np.array(v) for k, v in local.items()}}
    forward, backward, reference = layer_pair(layer, need_dx, options=options)
    cause_counts = getattr(layer, "cause_counts", None)
    settings = dict(fd_samples=scope.fd_samples, name=type(layer).__name__, seed=seed)
    # A factor's cause is confirmed at another batch and image size, the weights kept.
    second = second_shape_check(
        forward,
        backward,
        reference,
        lambda: varied_points(layer, np.shape(x_in), seed, local),
        cause_counts=cause_counts,
        **settings,
    )
    return run_check(
        forward,
        backward,
        values,
        reference,
        rng=np.random.default_rng(seed),
        dout=dout,
        upstream=scope.upstream,
        cause_counts=cause_counts,
        candidates=candidates,
        second=second,
        **settings,
    )


def varied_points(
    layer, x_shape: tuple[int, ...], seed: int, params: Mapping[str, np.ndarray] | None = None
) -> list[tuple[dict[str, np.ndarray], str]]:
    """A layer's inputs at the other shapes a cause is confirmed at
    (:func:`~tfhybrid.audit.confirm.other_shapes`), each named ("x [3,10,10,2]"): a random
    x, with ``params`` (its weights: the channels kept), or its parameters drawn afresh
    for each shape (the channels varied too). A shape it cannot take is left out."""
    rng = np.random.default_rng(seed + 1)
    points = []
    for shape in other_shapes(tuple(x_shape), channels=params is None):
        try:
            drawn = params if params is not None else layer.init_params(rng, shape[1:])
        except Exception:  # a layer of one's own built for one shape: not this one
            continue
        values = {"x": rng.standard_normal(shape)}
        values.update({k: np.array(v, dtype=np.float64) for k, v in drawn.items()})
        points.append((values, shape_text(values)))
    return points


def borrowed_causes(verdicts: list[LayerVerdict], model, names) -> dict[str, Borrowed]:
    """{network tensor: the causes its layer's own check gives it}: a factor is made by
    the backward of the layer that computes the tensor (the owner of dKEY, the layer
    above output dNAME), whose own check confirmed its cause at a second shape."""
    own = {v.index: v for v in verdicts if not v.inside}
    found = {}
    for name in names:
        index = _owner(name, model)
        if index not in own:
            continue
        base = name.split(":")[0][1:]  # dKEY -> KEY, dNAME -> NAME
        local = next((n for n, key in model.param_keys[index].items() if key == base), "x")
        check = own[index].check
        found[name] = Borrowed(check.input(local) if local in check.verdicts else None)
    return found


def _per_example(layer, x_in, local, dout, need_dx, options) -> list[TensorCheck]:
    """Each sample's own parameter gradients of the layer against per-sample tapes (for a
    layer that draws random numbers, the whole batch's tape, one sample's dout kept)."""
    from tfhybrid._tf import tf

    _, cache = layer.forward(local, np.array(x_in), **options("forward"))
    _, manual = layer.backward_per_example(np.array(dout), cache, need_dx)
    refs = {dtype: {k: [] for k in local} for dtype in (tf.float64, tf.float32)}
    # A layer that draws random numbers draws one mask for the whole batch: sample n's
    # share is then the whole batch's tape with every other sample's dout zeroed (one
    # sample alone would draw a mask of its own).
    whole = layer.random or layer.takes("rng", "reference")
    for n in range(len(x_in)):
        rows = slice(None) if whole else slice(n, n + 1)
        upstream = np.zeros_like(dout) if whole else dout[rows]
        if whole:
            upstream[n] = dout[n]
        for dtype in refs:
            tensors = {k: tf.constant(v, dtype=dtype) for k, v in local.items()}
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                out = layer.reference(
                    tensors, tf.constant(x_in[rows], dtype=dtype), **options("reference")
                )
                target = tf.reduce_sum(out * tf.constant(upstream, dtype=dtype))
            grads = tape.gradient(
                target, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            for k in local:
                refs[dtype][k].append(np.asarray(grads[k], dtype=np.float64))
    records = []
    for k in local:
        if k not in manual:
            continue
        records.append(
            judge_tensor(
                f"{k}{PER_EXAMPLE_SUFFIX}",
                PER_EXAMPLE,
                np.asarray(manual[k], dtype=np.float64),
                tape64=np.stack(refs[tf.float64][k]),
                tape32=np.stack(refs[tf.float32][k]),
                manual_rtol=tol.RTOL_FLOAT64,
            )
        )
    return records


def _owner(name: str, model) -> int | None:
    """The index of the layer whose backward computes network tensor ``name``: the owner
    of parameter dKEY (or dKEY:per-example), or the layer above output dNAME (its dx)."""
    base = name.split(":")[0]
    for index, keys in enumerate(model.param_keys):
        if base in {f"d{key}" for key in keys.values()}:
            return index
    for index, output in enumerate(model.names[:-1]):
        if base == f"d{output}":
            return index + 1
    return None


def explained_by_layers(
    tensors: list[TensorCheck], verdicts: list[LayerVerdict], model
) -> list[TensorCheck]:
    """Network tensors that depart from the tape only because layers chose a valid
    subgradient at a kink: when the layer computing a tensor and every layer above it
    match on their own, and one of them departs from TensorFlow's convention at a kink
    (a ReLU'(0) = 1, a tie shared), the tensor follows their valid choices: it matches,
    with a note. Intermediates have no finite differences of their own; this is how
    their departures are judged."""
    own = {v.index: v for v in verdicts if not v.inside}  # each network layer as a whole
    departing = {
        v.index for v in verdicts if any(r.departures for r in (*v.check.inputs, *v.per_example))
    }
    out = []
    for item in tensors:
        index = _owner(item.name, model)
        above = [i for i in own if index is not None and i >= index]
        if (
            item.matches
            or index is None
            or not above
            or not all(own[i].own_ok for i in above)
            or not departing.intersection(above)
        ):
            out.append(item)
            continue
        at = sorted(departing.intersection(above))
        sources = item.vote.sources if item.vote is not None else (MANUAL, TAPE32, TAPE64)
        out.append(
            dataclasses.replace(
                item,
                verdict=MATCH,
                matches=True,
                vote=unanimous(sources),
                departures=max(item.manual.count if item.manual else 0, 1),
                note=(
                    "follows the valid subgradients of layer "
                    + ", ".join(f"{i} ({own[i].layer})" for i in at)
                    + ", which depart from TensorFlow's convention where the function has no "
                    "derivative; every layer from here up matches on its own"
                ),
            )
        )
    return out


def locate_fault(verdicts: list[LayerVerdict], model, mismatched: set[str]) -> list[LayerVerdict]:
    """Statuses from the layers' own checks and the network's mismatching tensors."""
    return locate(
        verdicts,
        lambda item: tuple(name for name in _network_names(item, model) if name in mismatched),
    )


def locate(
    verdicts: list[LayerVerdict], network: Callable[[LayerVerdict], tuple[str, ...]]
) -> list[LayerVerdict]:
    """Statuses, in backward order: the first layer whose own backward is wrong is at
    fault, a later one also wrong, and one that matches but whose tensors ``network(item)``
    mismatch in the network inherits; a composite whose own check fails by a wrong layer
    inside it holds that fault (the layer inside is named instead)."""
    out, fault_seen = [], False
    for item in verdicts:
        found = network(item)
        if not item.own_ok:
            inside = [v for v in verdicts if item.contains(v) and not v.own_ok]
            if item.joins and inside:
                status = HOLDS
            else:
                status = ALSO_WRONG if fault_seen else AT_FAULT
                fault_seen = True
        elif found and fault_seen:
            status = INHERITS
        else:
            status = OK
        out.append(dataclasses.replace(item, status=status, network=found))
    return out


def _network_names(item: LayerVerdict, model) -> list[str]:
    """The network's tensors a layer's backward computes: its parameters' gradients (a
    layer inside a composite: those named under its prefix), with their per-example
    records, and a network layer's dx (the gradient of the output below it)."""
    keys = model.param_keys[item.index]
    keys = [key for name, key in keys.items() if name.startswith(item.prefix)]
    own = [f"d{key}" for key in dict.fromkeys(keys)]
    own += [f"{name}{suffix}" for name in list(own) for suffix in (PER_EXAMPLE_SUFFIX, ":sum")]
    index = item.index
    if not item.inside and index > model.first and model.layers[index - 1].report_gradient:
        own.append("d" + model.names[index - 1])
    return own


def fault_lines(verdicts: list[LayerVerdict], any_mismatch: bool) -> list[str]:
    """The ``layer at fault:`` line and the lines of the layers that inherit."""
    if not verdicts:
        return []
    at_fault = [v for v in verdicts if v.status == AT_FAULT]
    if not at_fault:
        if any_mismatch:
            return [
                "layer at fault: none; every layer's own backward matches at these inputs "
                "(look at the loss, or at how the network joins its layers)"
            ]
        inside = any(v.joins for v in verdicts)
        return [
            "layers: each layer's own backward matches (fed the tape's upstream gradient)"
            + (", inside composites too, and so does each composite's join" if inside else "")
        ]
    lines = []
    for item in verdicts:
        if item.status == AT_FAULT:
            lines.append(f"layer at fault: {fault_text(item)}")
        elif item.status == ALSO_WRONG:
            lines.append(f"  layer {item.describe()} is wrong on its own too: {_wrong(item)}")
        elif item.status == INHERITS:
            lines.append(
                f"  layer {item.describe()} inherits the error: its own backward matches, "
                f"its gradients in the network ({', '.join(item.network)}) do not"
            )
    for item in verdicts:
        if item.status == HOLDS:
            continue  # its gradients are wrong by the layer inside: their causes are not its
        for record in (*item.check.inputs, *item.per_example):
            if record.cause and not record.matches:
                lines.append(
                    f"  likely cause: layer {item.short()} {_local_name(record.label)} "
                    f"{cause_text(record)}"
                )
    return lines


def fault_text(item: LayerVerdict) -> str:
    """ "2 (ReLU, output a1): its own backward gives dx wrong": what follows
    "layer at fault:"; a composite whose layers inside all match adds that its join is
    at fault."""
    text = f"{item.describe()}: its own backward gives {_wrong(item)}"
    return f"{text}; {JOIN_AT_FAULT}" if item.joins else text


def _wrong(item: LayerVerdict) -> str:
    return ", ".join(
        f"{_local_name(name)} {verdict}"
        for name, verdict in item.own_verdicts.items()
        if verdict != "match"
    )


def _local_name(name: str) -> str:
    """A layer's own tensor as a gradient: x -> dx, w -> dw, "w per example" -> dw ..."""
    return "d" + name


def _root(report: OpReport) -> LayerVerdict:
    """A composite checked on its own (:func:`~tfhybrid.audit.check_layer`) as the verdict
    above its parts': at fault when it is wrong and every layer inside matches. Its
    causes are left out here: the table's notes under its own rows show them."""
    name = report.parts[0].outer
    inputs = [dataclasses.replace(item, cause=None) for item in report.inputs]
    check = dataclasses.replace(report, inputs=inputs, parts=())
    status = OK
    if not report.ok:
        status = HOLDS if any(not v.own_ok for v in report.parts) else AT_FAULT
    return LayerVerdict(None, name, "", status, check, outer=name, joins=True)


def composite_fault(report: OpReport) -> LayerVerdict | None:
    """The layer at fault of a composite checked on its own: a layer inside it, or the
    composite itself (its join); None when nothing is wrong."""
    return next((v for v in (_root(report), *report.parts) if v.status == AT_FAULT), None)


def composite_lines(report: OpReport) -> list[str]:
    """The ``layer at fault:`` lines of a composite checked on its own."""
    return fault_lines([_root(report), *report.parts], not report.ok)
