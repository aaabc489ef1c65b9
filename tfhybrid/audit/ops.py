"""``check_op`` and ``check_layer``: the gradient audit for code written outside the project.

    report = check_op(forward, backward, {"x": x, "w": w, "b": b}, reference=None, seed=0)
    report.ok, report.verdicts, print(report), report.to_json()

An op pair is ``forward(**inputs) -> (out, cache)`` and ``backward(dout, cache) ->
{name: gradient}`` in NumPy. The check differentiates the scalar ``sum(dout * out)`` for a
random, seeded upstream gradient ``dout`` (never all ones, so a gradient routed to the
wrong element cannot hide), in float64:

- always against float64 central finite differences of the NumPy forward itself, on up to
  ``fd_samples`` coordinates per input, each tested for a kink (as the model audit);
- with ``reference(**tensors) -> out`` in TensorFlow ops, also against
  ``tf.GradientTape`` of that reference in float64 (whole tensors) and float32, and the
  three sources (manual, tape64, fd64) vote.

Each input gets a verdict: ``match``, ``off by a constant factor C``, ``sign flipped``,
``wrong``, or ``not checked`` when the backward returns no gradient for it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.compare import MATCH, Comparison, compare, readable_factor
from tfhybrid.audit.core import tape_agreement
from tfhybrid.audit.finite_diff import central_differences, sample_indices
from tfhybrid.audit.report import FD64, MANUAL, TAPE32, TAPE64
from tfhybrid.audit.table import HEADER as TABLE_HEADER
from tfhybrid.audit.table import aligned
from tfhybrid.audit.vote import Vote, vote

NOT_CHECKED = "not checked"
OP_FD_SAMPLES = 24  # coordinates per input: an op is cheap, but every one costs 4 forwards


@dataclasses.dataclass(frozen=True)
class InputCheck:
    """The gradient of one input. ``manual``: the manual gradient against the reference
    (tape64 over the whole tensor; without a reference, fd64 on the sampled coordinates)."""

    name: str
    shape: tuple[int, ...]
    manual: Comparison | None = None
    tape32: Comparison | None = None
    fd_manual: Comparison | None = None
    fd_tape: Comparison | None = None
    fd_count: int = 0
    fd_not_comparable: int = 0
    vote: Vote | None = None

    @property
    def checked(self) -> bool:
        return self.manual is not None

    @property
    def matches(self) -> bool:
        if not self.checked:
            return True
        return self.vote.unanimous if self.vote is not None else self.manual.matches

    @property
    def verdict(self) -> str:
        return self.manual.description if self.checked else NOT_CHECKED

    def to_dict(self) -> dict:
        def figures(item: Comparison | None):
            return None if item is None else item.to_dict()

        return {
            "name": self.name,
            "shape": list(self.shape),
            "verdict": self.verdict,
            "matches": self.matches,
            "manual_vs_reference": figures(self.manual),
            "tape32_vs_tape64": figures(self.tape32),
            "finite_differences": {
                "sampled": self.fd_count,
                "not_comparable": self.fd_not_comparable,
                "manual_vs_fd64": figures(self.fd_manual),
                "tape64_vs_fd64": figures(self.fd_tape),
            },
            "vote": None if self.vote is None else self.vote.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class OpReport:
    """What :func:`check_op` measured; ``print(report)`` shows the table."""

    op: str
    reference: str  # "tf.GradientTape (float64, float32)" or "finite differences only"
    inputs: list[InputCheck]
    tolerances: dict[str, float]
    seed: int

    @property
    def verdicts(self) -> dict[str, str]:
        return {item.name: item.verdict for item in self.inputs}

    @property
    def mismatches(self) -> list[str]:
        return [item.name for item in self.inputs if not item.matches]

    @property
    def ok(self) -> bool:
        """Every gradient the backward returned matches (inputs it left out do not count)."""
        return not self.mismatches

    def input(self, name: str) -> InputCheck:
        for item in self.inputs:
            if item.name == name:
                return item
        raise KeyError(f"no input {name!r} in the report; it has {list(self.verdicts)}")

    def to_dict(self) -> dict:
        return {
            "op": self.op,
            "reference": self.reference,
            "seed": self.seed,
            "ok": self.ok,
            "mismatches": self.mismatches,
            "verdicts": self.verdicts,
            "tolerances": self.tolerances,
            "inputs": [i.to_dict() for i in self.inputs],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return format_op_table(self)


HEADER = ("input", *TABLE_HEADER[1:])  # the audit table's columns, one row per input


def format_op_table(report: OpReport) -> str:
    """The audit table of ``check_gradients.py``, one row per input of the op."""
    rows = [HEADER]
    for item in report.inputs:
        if not item.checked:
            rows.append((item.name, _shape(item.shape), *("-",) * 8, NOT_CHECKED))
            continue
        m = item.manual
        fd_ref = item.fd_tape if item.fd_tape is not None else item.fd_manual
        fd_err = f"{fd_ref.rel_error:.1e}" if fd_ref is not None and fd_ref.count else "n/a"
        rows.append(
            (
                item.name,
                _shape(item.shape),
                f"{m.max_abs_error:.2e}",
                f"{m.rel_error:.1e}",
                f"{m.cosine:.7f}",
                readable_factor(m.scale),
                str(m.worst_index),
                "-" if item.tape32 is None else f"{item.tape32.rel_error:.1e}",
                f"{fd_err} {item.fd_count}/{item.fd_not_comparable}",
                "-" if item.vote is None else item.vote.summary,
                item.verdict,
            )
        )
    lines = [
        f"gradient check: {report.op}, against {report.reference}, "
        f"random upstream gradient (seed {report.seed})",
        "",
        *aligned(rows),
    ]
    outcome = "every gradient matches" if report.ok else f"MISMATCH: {', '.join(report.mismatches)}"
    if report.reference == FD_ONLY:
        legend = (
            "rel err, cosine, scale c and worst index compare the manual gradient with "
            "float64 central differences on the sampled coordinates (n sampled, nc of "
            "them across a kink); match within the differences' own accuracy "
            f"(at least {report.tolerances['finite_differences']:g})"
        )
    else:
        legend = (
            "rel err, cosine, scale c and worst index compare the manual gradient with "
            "the float64 tape over the whole tensor; match when rel err <= "
            f"{report.tolerances['manual']:g}; tape32: the float32 tape against it; "
            "fd64: the tape against float64 central differences (n sampled, nc across "
            "a kink); vote: manual, tape64, fd64"
        )
    lines += ["", f"result: {outcome}", legend]
    return "\n".join(lines)


FD_ONLY = "finite differences only"
TAPES = "tf.GradientTape (float64, float32) and finite differences"


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def check_op(
    forward: Callable,
    backward: Callable,
    inputs: Mapping[str, np.ndarray],
    reference=None,
    *,
    weights: Sequence[str] = (),
    seed: int = 0,
    rtol: float | None = None,
    atol: float = 0.0,
    fd_samples: int = OP_FD_SAMPLES,
    name: str | None = None,
) -> OpReport:
    """Check ``backward`` against finite differences (and ``reference``'s tape, if given).

    ``inputs``: name -> float array, passed to ``forward`` as keywords. ``reference``:
    ``reference(**tensors) -> out`` in TensorFlow ops, or a Keras layer; for a layer,
    ``weights`` names the inputs that are its weights, in ``layer.weights`` order (a
    weight of the same size in another shape, such as a bias [1,M] for Keras's [M], is
    reshaped), and the one other input is its call input. ``rtol``: the largest relative
    error that matches (default: float64's, or the finite differences' where they are the
    reference); ``atol``: absolute differences up to this match too. Bad input raises one
    ``ValueError`` that names the problem.
    """
    values = _checked_inputs(inputs)
    if not isinstance(fd_samples, int) or fd_samples < 1:
        raise ValueError(f"fd_samples must be an integer >= 1, got {fd_samples!r}")
    if weights and not _is_keras_layer(reference):
        raise ValueError("weights= names a Keras layer's weights; pass the layer as reference")
    out, cache = _run_forward(forward, values)
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(out.shape)
    manual = _run_backward(backward, dout, cache, values)
    tapes = None
    if _is_keras_layer(reference):
        tapes = _keras_tapes(reference, tuple(weights), values, dout, out.shape)
    elif reference is not None:
        if not callable(reference):
            raise ValueError(
                "reference must be a function of the inputs in TensorFlow ops or "
                f"a Keras layer, got {type(reference).__name__}"
            )
        tapes = _tapes(reference, values, dout, out.shape)

    def loss_at(point: dict[str, np.ndarray]) -> float:
        return float(np.sum(dout * np.asarray(forward(**point)[0], dtype=np.float64)))

    loss = loss_at(values)
    manual_rtol = tol.RTOL_FLOAT64 if rtol is None else float(rtol)
    checks = []
    for key, value in values.items():
        if key not in manual:
            checks.append(InputCheck(key, value.shape))
            continue
        checks.append(
            _check_input(
                key,
                manual[key],
                tapes,
                values,
                loss_at,
                loss,
                rng,
                fd_samples,
                manual_rtol,
                rtol,
                atol,
            )
        )
    op_name = name or getattr(forward, "__name__", "op")
    label = (
        FD_ONLY
        if not tapes
        else (f"keras {type(reference).__name__}: {TAPES}" if _is_keras_layer(reference) else TAPES)
    )
    return OpReport(
        op=op_name,
        reference=label,
        inputs=checks,
        tolerances={
            "manual": manual_rtol,
            "float32": tol.RTOL_FLOAT32,
            "finite_differences": tol.RTOL_FINITE_DIFF,
            "atol": atol,
        },
        seed=seed,
    )


def _check_input(
    key, grad, tapes, values, loss_at, loss, rng, fd_samples, manual_rtol, rtol, atol
) -> InputCheck:
    ref = tapes[0][key] if tapes else None
    basis = ref if ref is not None else grad
    scale = 2 * float(np.abs(basis).max(initial=0))
    must = [np.unravel_index(int(np.abs(basis).argmax()), basis.shape)] if basis.size else []
    if ref is not None:
        must.append(compare(grad, ref, manual_rtol).worst_index)
    else:
        must.append(np.unravel_index(int(np.abs(grad).argmax()), grad.shape))
    indices = sample_indices(basis.shape, fd_samples, rng, must=tuple(must))
    fd = central_differences(loss_at, values, key, indices, tol.RTOL_FINITE_DIFF, scale=scale)
    kept = [index for index, ok in zip(indices, fd.comparable, strict=True) if ok]
    fd_values = fd.values[fd.comparable]
    fd_rtol = max(tol.fd_rtol(loss, scale), tol.RTOL_FINITE_DIFF)
    picked = np.array([grad[i] for i in kept], dtype=np.float64)
    fd_manual = _judge(
        compare(picked, fd_values, max(manual_rtol, fd_rtol), floor_scale=scale), atol
    )
    common = dict(
        name=key, shape=grad.shape, fd_count=len(indices), fd_not_comparable=fd.not_comparable
    )
    if ref is None:
        # The finite differences are the reference; judge at their tolerance unless told.
        verdict = (
            fd_manual
            if rtol is None
            else _judge(compare(picked, fd_values, float(rtol), floor_scale=scale), atol)
        )
        if kept:  # name the worst coordinate in the input, not in the sample
            verdict = dataclasses.replace(verdict, worst_index=kept[verdict.worst_index[0]])
        return InputCheck(manual=verdict, fd_manual=fd_manual, **common)
    manual_vs_tape = _judge(compare(grad, ref, manual_rtol), atol)
    tape32 = compare(tapes[1][key], ref, tol.RTOL_FLOAT32)
    fd_tape = compare(np.array([ref[i] for i in kept]), fd_values, fd_rtol, floor_scale=scale)
    if kept:
        sources = (MANUAL, TAPE64, FD64)
        agree = {
            (MANUAL, TAPE64): manual_vs_tape.matches,
            (MANUAL, FD64): fd_manual.matches,
            (TAPE64, FD64): fd_tape.matches,
        }
    else:  # every sampled step crosses a kink: the two tapes vote instead
        sources = (MANUAL, TAPE32, TAPE64)
        agree = tape_agreement(grad, tapes[1][key], manual_vs_tape, tape32, manual_rtol)
    return InputCheck(
        manual=manual_vs_tape,
        tape32=tape32,
        fd_manual=fd_manual,
        fd_tape=fd_tape,
        vote=vote(sources, agree),
        **common,
    )


def _judge(item: Comparison, atol: float) -> Comparison:
    """A comparison whose every difference is within ``atol`` matches."""
    if atol and item.verdict != MATCH and item.max_abs_error <= atol:
        return dataclasses.replace(item, verdict=MATCH)
    return item


def _checked_inputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(inputs, Mapping) or not inputs:
        raise ValueError(
            f"inputs must be a non-empty dict of name -> float array, got {type(inputs).__name__}"
        )
    values = {}
    for key, value in inputs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(
                f"input names must be identifiers (they are passed as keywords), got {key!r}"
            )
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"input {key!r} has dtype {array.dtype}; gradients are checked "
                "for float arrays only (pass it as float, or close over it)"
            )
        values[key] = np.array(array, dtype=np.float64)  # the check runs in float64
    return values


def _shapes(values: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {list(np.shape(v))}" for k, v in values.items())


def _run_forward(forward: Callable, values: dict[str, np.ndarray]):
    try:
        result = forward(**{k: v.copy() for k, v in values.items()})
    except Exception as err:  # the user's code: report it with the shapes it was given
        raise ValueError(
            f"forward failed on inputs {_shapes(values)}: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(result, tuple) or len(result) != 2:
        raise ValueError(f"forward must return (out, cache), a pair; got {type(result).__name__}")
    out = np.asarray(result[0])
    if not np.issubdtype(out.dtype, np.floating):
        raise ValueError(f"forward's out must be a float array, got dtype {out.dtype}")
    return out.astype(np.float64), result[1]


def _run_backward(
    backward: Callable, dout: np.ndarray, cache, values: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    try:
        grads = backward(dout.copy(), cache)
    except Exception as err:
        raise ValueError(
            f"backward failed on dout {list(dout.shape)}: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(grads, Mapping):
        raise ValueError(
            f"backward must return a dict of input name -> gradient, got {type(grads).__name__}"
        )
    unknown = sorted(set(grads) - set(values))
    if unknown:
        raise ValueError(
            f"backward returned gradients for {unknown}, which are not inputs "
            f"(inputs: {sorted(values)})"
        )
    checked = {}
    for key, grad in grads.items():
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != values[key].shape:
            raise ValueError(
                f"backward's gradient for {key!r} has shape {list(grad.shape)}, "
                f"but input {key!r} has shape {list(values[key].shape)}"
            )
        checked[key] = grad
    return checked


def _tapes(
    reference: Callable, values: dict[str, np.ndarray], dout: np.ndarray, out_shape: tuple
) -> tuple[dict, dict]:
    """(float64 tape gradients, float32 tape gradients) of sum(dout * reference(...))."""
    from tfhybrid._tf import tf

    results = []
    for dtype in (tf.float64, tf.float32):
        tensors = {k: tf.constant(v, dtype=dtype) for k, v in values.items()}
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = reference(**tensors)
            if tuple(out.shape) != tuple(out_shape):
                raise ValueError(
                    f"reference's output has shape {list(out.shape)}, forward's "
                    f"{list(out_shape)}: they must compute the same function"
                )
            target = tf.reduce_sum(tf.cast(out, dtype) * tf.constant(dout, dtype=dtype))
        grads = tape.gradient(target, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        results.append({k: g.numpy().astype(np.float64) for k, g in grads.items()})
    return results[0], results[1]


def _is_keras_layer(obj) -> bool:
    return any(
        cls.__module__.startswith("keras") and cls.__name__ == "Layer" for cls in type(obj).__mro__
    )


def _keras_tapes(
    layer,
    weights: tuple[str, ...],
    values: dict[str, np.ndarray],
    dout: np.ndarray,
    out_shape: tuple,
) -> tuple[dict, dict]:
    """The tapes of ``sum(dout * layer(x))``, with the layer's weights set from ``values``:
    a copy of the layer in float64 and one in float32 (from its config)."""
    from tfhybrid._tf import tf

    unknown = [w for w in weights if w not in values]
    if unknown:
        raise ValueError(f"weights {unknown} are not inputs (inputs: {sorted(values)})")
    calls = [k for k in values if k not in weights]
    if len(calls) != 1:
        raise ValueError(
            f"a Keras layer takes one call input besides its weights {list(weights)}"
            f"; the other inputs are {calls}: name the rest in weights="
        )
    call = calls[0]
    results = []
    for dtype in ("float64", "float32"):
        copy = type(layer).from_config({**layer.get_config(), "dtype": dtype})
        copy.build((None, *values[call].shape[1:]))
        if len(copy.weights) != len(weights):
            raise ValueError(
                f"{type(layer).__name__} has {len(copy.weights)} weights "
                f"({', '.join(w.name for w in copy.weights)}), but weights= names "
                f"{len(weights)}: {list(weights)}"
            )
        for variable, key in zip(copy.weights, weights, strict=True):
            if int(np.prod(variable.shape)) != values[key].size:
                raise ValueError(
                    f"input {key!r} has shape {list(values[key].shape)}, but "
                    f"{type(layer).__name__}'s {variable.name} has shape "
                    f"{list(variable.shape)}"
                )
            variable.assign(values[key].reshape(variable.shape))
        x = tf.constant(values[call], dtype=dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = copy(x)
            if tuple(out.shape) != tuple(out_shape):
                raise ValueError(
                    f"{type(layer).__name__}'s output has shape {list(out.shape)}, "
                    f"forward's {list(out_shape)}: they must compute the same "
                    "function"
                )
            target = tf.reduce_sum(out * tf.constant(dout, dtype=dtype))
        grads = tape.gradient(
            target, [x, *copy.weights], unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        named = {call: grads[0], **dict(zip(weights, grads[1:], strict=True))}
        results.append(
            {k: np.asarray(g, dtype=np.float64).reshape(values[k].shape) for k, g in named.items()}
        )
    return results[0], results[1]


def check_layer(
    layer,
    input_shape: tuple[int, ...],
    *,
    batch: int = 2,
    seed: int = 0,
    rtol: float | None = None,
    atol: float = 0.0,
    fd_samples: int = OP_FD_SAMPLES,
) -> OpReport:
    """Check one layer of :mod:`tfhybrid.layers` (the user's own included): the gradient of
    its input ``x`` [batch, *input_shape] and of each parameter, against the tape of its
    ``reference`` and finite differences of its ``forward``."""
    shape = tuple(int(d) for d in input_shape)
    rng = np.random.default_rng(seed)
    layer.input_shape = shape
    params = {k: np.asarray(v, dtype=np.float64) for k, v in layer.init_params(rng, shape).items()}
    if "x" in params:
        raise ValueError(f"{type(layer).__name__} names a parameter 'x', the name of its input")
    inputs = {"x": rng.standard_normal((batch, *shape)), **params}

    def forward(x, **p):
        return layer.forward(p, x)

    def backward(dout, cache):
        dx, grads = layer.backward(dout, cache, True)
        return {**({} if dx is None else {"x": dx}), **grads}

    def reference(x, **p):
        return layer.reference(p, x)

    return check_op(
        forward,
        backward,
        inputs,
        reference,
        seed=seed,
        rtol=rtol,
        atol=atol,
        fd_samples=fd_samples,
        name=f"{type(layer).__name__} on [N,{','.join(map(str, shape))}]",
    )
