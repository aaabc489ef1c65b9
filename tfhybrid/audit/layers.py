"""The layer at fault: each layer of a ``Sequential`` checked on its own, in float64.

A wrong gradient in a network shows in every tensor below the layer that made it, so the
network's table alone cannot say where the bug is. Here each layer's backward is fed the
reference's upstream gradient (the float64 tape's dL/d its output) and its own cache at
the same input and weights, and its dx and parameter gradients are judged against the
tape of its own ``reference`` and finite differences of its own ``forward`` (the judge of
:func:`~tfhybrid.audit.check_op`). The first layer in backward order whose own backward
is wrong is at fault; a layer below it whose own backward is right but whose gradients
in the network are wrong inherits its error.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.causes import quantities
from tfhybrid.audit.compare import MATCH
from tfhybrid.audit.judge import (
    MANUAL,
    PER_EXAMPLE,
    PER_EXAMPLE_SUFFIX,
    TAPE32,
    TAPE64,
    TensorCheck,
    judge_tensor,
)
from tfhybrid.audit.ops import OpReport, layer_pair, run_check
from tfhybrid.audit.vote import unanimous

LAYER_FD_SAMPLES = 12  # coordinates per tensor of one layer (the network's table has more)
OK, AT_FAULT, INHERITS, ALSO_WRONG = "ok", "at fault", "inherits", "also wrong"


@dataclasses.dataclass(frozen=True)
class LayerVerdict:
    """Layer ``index`` (``layer``: its class, ``output``: its output's name): ``status``
    ok, at fault, also wrong (its own backward is wrong too, below the one at fault) or
    inherits; ``check``: its own backward's check (inputs x and its parameters under
    their layer names); ``per_example``: its per-example gradients against per-sample
    tapes; ``network``: its tensors that mismatch in the network's audit."""

    index: int
    layer: str
    output: str
    status: str
    check: OpReport
    per_example: tuple[TensorCheck, ...] = ()
    network: tuple[str, ...] = ()

    @property
    def own_ok(self) -> bool:
        return self.check.ok and all(item.matches for item in self.per_example)

    @property
    def own_verdicts(self) -> dict[str, str]:
        out = {k: v for k, v in self.check.verdicts.items() if v != "not checked"}
        out.update({item.name: item.verdict for item in self.per_example if not item.matches})
        return out

    def describe(self) -> str:
        return f"{self.index} ({self.layer}, output {self.output})"

    def __str__(self) -> str:
        return f"layer {self.describe()}: {self.status}\n{self.check}"

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "layer": self.layer,
            "output": self.output,
            "status": self.status,
            "own_ok": self.own_ok,
            "own_verdicts": self.own_verdicts,
            "network_mismatches": list(self.network),
            "check": self.check.to_dict(),
            "per_example": [item.to_dict() for item in self.per_example],
        }


def check_layers(
    model, x: np.ndarray, y: np.ndarray, *, seed: int = 0, per_example: bool = False
) -> list[LayerVerdict]:
    """Each layer from the first with parameters on, in backward order (last first)."""
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

    verdicts = []
    for index in range(len(model.layers) - 1, model.first - 1, -1):
        layer = model.layers[index]
        need_dx = index > model.first
        x_in = inputs[index].numpy()
        dout = upstream[index].numpy()
        local = model.layer_params(index, params)
        check = _own_check(layer, x_in, local, dout, need_dx, seed + index, model, index)
        extra = ()
        if per_example and local:
            extra = tuple(
                _per_example(
                    layer, x_in, local, dout, need_dx, model.param_keys[index], model, index
                )
            )
        verdicts.append(
            LayerVerdict(index, type(layer).__name__, model.names[index], OK, check, extra)
        )
    return verdicts


def _options(model, index: int, method: str = "reference") -> dict:
    """What layer ``index``'s method gets in the network's training pass being audited (the
    draw replayed, a copy of the state); {} for a model without these."""
    call = getattr(model, "call_options", None)
    return call(index, method) if callable(call) else {}


def _own_check(layer, x_in, local, dout, need_dx, seed, model, index) -> OpReport:
    values = {"x": np.array(x_in), **{k: np.array(v) for k, v in local.items()}}
    forward, backward, reference = layer_pair(
        layer, need_dx, options=lambda method: _options(model, index, method)
    )
    return run_check(
        forward,
        backward,
        values,
        reference,
        rng=np.random.default_rng(seed),
        dout=dout,
        fd_samples=LAYER_FD_SAMPLES,
        name=type(layer).__name__,
        seed=seed,
        counts=quantities(x_in.shape, dout.shape, getattr(layer, "cause_counts", None)),
        upstream="the float64 tape's upstream gradient (dL/d its output in the network)",
    )


def _per_example(layer, x_in, local, dout, need_dx, keys, model, index) -> list[TensorCheck]:
    """Each sample's own parameter gradients of the layer against per-sample tapes."""
    from tfhybrid._tf import tf

    _, cache = layer.forward(local, np.array(x_in), **_options(model, index, "forward"))
    _, manual = layer.backward_per_example(np.array(dout), cache, need_dx)
    refs = {dtype: {k: [] for k in local} for dtype in (tf.float64, tf.float32)}
    for n in range(len(x_in)):
        for dtype in refs:
            tensors = {k: tf.constant(v, dtype=dtype) for k, v in local.items()}
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                out = layer.reference(
                    tensors,
                    tf.constant(x_in[n : n + 1], dtype=dtype),
                    **_options(model, index),
                )
                target = tf.reduce_sum(out * tf.constant(dout[n : n + 1], dtype=dtype))
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
    own = {v.index: v for v in verdicts}
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
    out, fault_seen = [], False
    for item in verdicts:  # backward order
        index = item.index
        own = [f"d{key}" for key in model.param_keys[index].values()]
        own += [
            f"d{key}{suffix}"
            for key in model.param_keys[index].values()
            for suffix in (PER_EXAMPLE_SUFFIX, ":sum")
        ]
        if index > model.first and model.layers[index - 1].report_gradient:
            own.append("d" + model.names[index - 1])
        network = tuple(name for name in own if name in mismatched)
        if not item.own_ok:
            status = ALSO_WRONG if fault_seen else AT_FAULT
            fault_seen = True
        elif network and fault_seen:
            status = INHERITS
        else:
            status = OK
        out.append(dataclasses.replace(item, status=status, network=network))
    return out


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
        return ["layers: each layer's own backward matches (fed the tape's upstream gradient)"]
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
        for record in (*item.check.inputs, *item.per_example):
            if record.cause and not record.matches:
                verb = "is off by" if record.verdict.startswith(("off", "sign")) else "equals"
                lines.append(
                    f"  likely cause: layer {item.index} {_local_name(record.label)} {verb} "
                    f"{record.cause}"
                )
    return lines


def fault_text(item: LayerVerdict) -> str:
    """ "2 (ReLU, output a1): its own backward gives dx wrong": what follows
    "layer at fault:"."""
    return f"{item.describe()}: its own backward gives {_wrong(item)}"


def _wrong(item: LayerVerdict) -> str:
    return ", ".join(
        f"{_local_name(name)} {verdict}"
        for name, verdict in item.own_verdicts.items()
        if verdict != "match"
    )


def _local_name(name: str) -> str:
    """A layer's own tensor as a gradient: x -> dx, w -> dw, "w per example" -> dw ..."""
    return "d" + name
