"""``check_op`` and ``check_layer``: the gradient audit for code written outside the project.

    report = check_op(forward, backward, {"x": x, "w": w, "b": b}, reference=None, seed=0)
    report.ok, report.verdicts, print(report), report.to_json()

An op pair is ``forward(**inputs) -> (out, cache)`` and ``backward(dout, cache) ->
{name: gradient}`` in NumPy. The check differentiates the scalar ``sum(dout * out)`` for a
random, seeded upstream gradient ``dout`` (never all ones, so a gradient routed to the
wrong element cannot hide), in float64:

- always against float64 central finite differences of the NumPy forward itself, on up to
  ``fd_samples`` coordinates per input, each tested for a kink (as the model audit);
- with ``reference(**tensors) -> out`` in TensorFlow ops (or any TensorFlow callable
  taking the tensors positionally, in the order of the inputs: ``tf.nn.relu``, the
  factories of :mod:`tfhybrid.audit.references`), also against ``tf.GradientTape`` of
  that reference in float64 (whole tensors) and float32 (where the reference runs in
  it), and the three sources (manual, tape64, fd64) vote.

Each input gets a verdict: ``match``, ``off by a constant factor C``, ``sign flipped``,
``wrong``, ``not checked`` when the backward returns no gradient for it (it does not
count), or ``not checked: WHY`` when nothing could be compared (never a match). The
check runs the user's code on copies (code that writes into its arguments cannot move
the check's points), and judges code that computes in float32 at float32's tolerances.

Randomness is replayed: a ``forward`` (and a ``reference``) that takes an ``rng`` keyword
gets a generator in the same state, seeded ``seed``, on every call, so dropout's mask is
the same in every evaluation; ``seed_global=True`` re-seeds NumPy's global generator
before every call instead, for textbook code that draws from it. A forward that still
gives two outputs at the same point draws fresh randomness on every call: every input
then reads ``not checked: the forward draws fresh random numbers ...``, never a verdict
computed from noise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from tfhybrid.audit import tolerances as tol
from tfhybrid.audit.causes import quantities_of
from tfhybrid.audit.compare import compare, readable_factor
from tfhybrid.audit.confirm import COULD_NOT_VARY, Rerun, SecondShape, second_shape, shape_text
from tfhybrid.audit.judge import (
    HEADER as TABLE_HEADER,
)
from tfhybrid.audit.judge import (
    INPUT,
    NOT_CHECKED,
    Probe,
    TensorCheck,
    aligned,
    judge_tensor,
    left_out,
    notes,
    row,
)
from tfhybrid.audit.reference_call import (
    call_reference,
    dense,
    describe_call,
    factory_hint,
    not_a_tensor,
)

OP_FD_SAMPLES = 24  # coordinates per input: an op is cheap, but every one costs 4 forwards
InputCheck = TensorCheck  # the record of one input (the name of earlier releases)
FD_ONLY = "finite differences only"
TAPES = "tf.GradientTape (float64, float32) and finite differences"
TAPE64_ONLY = (
    "tf.GradientTape (float64; the reference does not run on float32 tensors) "
    "and finite differences"
)
WITHOUT_REFERENCE = (
    "To check the backward without a reference, leave it out (reference=None): the "
    "gradients are then compared with finite differences of the forward alone; or pass "
    "a reference of the forward's own function (the same scale, reduction and layout)"
)
FRESH_RANDOMNESS = (
    "the forward draws fresh random numbers on every call (two calls at the same point "
    "gave different outputs), so no difference of it means anything; draw them from an "
    "rng argument, which the check hands a generator in the same state on every call "
    "(a layer: forward(params, x, *, rng) and reference alike, see tfhybrid.layers.Layer; "
    "an op pair: forward(..., rng)); an op pair that draws from NumPy's global generator "
    "can also be checked with check_op(..., seed_global=True)"
)


@dataclasses.dataclass(frozen=True)
class OpReport:
    """What :func:`check_op` measured; ``print(report)`` shows the table.

    ``precision``: the dtype the user's code computed in (its output's and gradients'),
    whose tolerances judged it. ``parts``: for a composite checked by
    :func:`~tfhybrid.audit.layer_check.check_layer`, each layer inside it checked on its own (a
    :class:`~tfhybrid.audit.layers.LayerVerdict` each, nested composites included), which
    name the layer at fault, or the composite's join when they all match."""

    op: str
    reference: str  # "tf.GradientTape (float64, float32)" or "finite differences only"
    inputs: list[TensorCheck]
    tolerances: dict[str, float]
    seed: int
    precision: str = "float64"
    upstream: str = ""  # where dout came from, when not drawn at random
    problem: str = ""  # why nothing could be checked (a forward that is not a function)
    parts: tuple = ()
    # For a composite: the ``layer at fault:`` lines its parts give, and the one at fault.
    part_lines: tuple[str, ...] = ()
    part_at_fault: str | None = None

    @property
    def verdicts(self) -> dict[str, str]:
        """Each input's verdict; checked at several points, its worst."""
        return {name: self.input(name).verdict for name in dict.fromkeys(self._names)}

    @property
    def mismatches(self) -> list[str]:
        return list(dict.fromkeys(item.name for item in self.inputs if not item.matches))

    @property
    def _names(self) -> list[str]:
        return [item.name for item in self.inputs]

    @property
    def ok(self) -> bool:
        """Every gradient the backward returned matches (inputs it left out do not count;
        a gradient nothing could be compared with is not a match), and it returned one."""
        return (
            not self.problem
            and not self.mismatches
            and any(item.manual is not None for item in self.inputs)
        )

    def input(self, name: str) -> TensorCheck:
        """The record of input ``name``: checked at several points, the first that fails."""
        found = [item for item in self.inputs if item.name == name]
        for item in found:
            if not item.matches:
                return item
        if found:
            return found[0]
        raise KeyError(f"no input {name!r} in the report; it has {list(self.verdicts)}")

    def to_dict(self) -> dict:
        return {
            "op": self.op,
            "reference": self.reference,
            "seed": self.seed,
            "precision": self.precision,
            "ok": self.ok,
            "problem": self.problem or None,
            "mismatches": self.mismatches,
            "verdicts": self.verdicts,
            "tolerances": self.tolerances,
            "inputs": [i.to_dict() for i in self.inputs],
            **(self._parts_dict() if self.parts else {}),
        }

    def _parts_dict(self) -> dict:
        return {
            "layer_at_fault": self.part_at_fault,
            "layers": [item.to_dict() for item in self.parts],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return format_op_table(self)


HEADER = ("input", *TABLE_HEADER[1:])  # the audit table's columns, one row per input


def format_op_table(report: OpReport) -> str:
    """The audit table of ``check_gradients.py``, one row per input of the op."""
    lines = [
        f"gradient check: {report.op}, against {report.reference}, "
        + (report.upstream or f"random upstream gradient (seed {report.seed})")
        + (f"; the code computes in {report.precision}" if report.precision != "float64" else ""),
        "",
        *aligned([HEADER] + [row(item) for item in report.inputs]),
    ]
    outcome = (
        "every gradient matches"
        if report.ok
        else (
            f"NOT CHECKED: {report.problem}"
            if report.problem
            else f"MISMATCH: {', '.join(report.mismatches)}"
            if report.mismatches
            else "NOTHING CHECKED: the backward returned no gradient"
        )
    )
    extra = notes(report.inputs)
    if extra:
        lines += ["", *extra]
    if report.part_lines:  # a composite: the layer inside at fault, or its join
        lines += ["", *report.part_lines]
    if report.reference == FD_ONLY:
        legend = (
            "rel err, cosine, scale c and worst index compare the manual gradient with "
            "central differences of the forward on the sampled coordinates (n sampled, nc of "
            "them across a kink, judged there by one-sided and directional differences); "
            "match within the differences' own accuracy "
            f"(at least {report.tolerances['finite_differences']:g})"
        )
    else:
        legend = (
            "rel err, cosine, scale c and worst index compare the manual gradient with "
            "the float64 tape over the whole tensor; match when rel err <= "
            f"{report.tolerances['manual']:g}; tape32: the float32 tape against it; "
            "fd64: the tape against central differences of the forward (n sampled, nc "
            "across a kink); vote: manual, tape64, fd64"
        )
    lines += ["", f"result: {outcome}", legend]
    return "\n".join(lines)


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
    seed_global: bool = False,
    make_inputs: Callable[[int], Mapping[str, np.ndarray]] | None = None,
) -> OpReport:
    """Check ``backward`` against finite differences (and ``reference``'s tape, if given).

    ``inputs``: name -> float array, passed to ``forward`` as keywords (as float64
    copies). ``reference``: ``reference(**tensors) -> out`` in TensorFlow ops, called by
    name when its signature takes every input name, else positionally in the order of
    the inputs (``tf.nn.relu``, :mod:`tfhybrid.audit.references`); it runs in float64,
    and in float32 beside it where it can (sparse tape gradients are made dense); or a
    Keras layer; for a layer, ``weights`` names the inputs that are its weights, in
    ``layer.weights`` order (a weight of the same size in another shape, such as a bias
    [1,M] for Keras's [M], is reshaped), and the one other input is its call input.
    ``rtol``: the largest relative error that matches (default: that of the precision
    the code computes in, float64's or float32's, or the finite differences' accuracy
    where they are the only reference); ``atol``: absolute differences up to this match
    too. ``seed``: the upstream gradient's, the finite differences' and the generator's
    handed to a ``forward``/``reference`` that takes ``rng`` (the same state every call);
    ``seed_global``: re-seed NumPy's global generator with ``seed`` before every call of
    ``forward`` and ``reference`` (restored afterwards). ``make_inputs(batch) -> inputs``:
    inputs like ``inputs`` for another batch size (and, for images, another size with it),
    with which a likely cause "off by 1/N" is confirmed at a second shape before it is
    printed (it is called with the first input's batch + 1, only when a cause asks);
    without it such a line says "unconfirmed". Bad input raises one ``ValueError`` that
    names the problem.
    """
    values = _checked_inputs(inputs)
    if "rng" in values:
        raise ValueError("'rng' is the generator the check hands the forward; rename that input")
    _check_tolerances(rtol, atol, fd_samples)
    if weights and not _is_keras_layer(reference):
        raise ValueError("weights= names a Keras layer's weights; pass the layer as reference")
    if reference is not None and not _is_keras_layer(reference) and not callable(reference):
        raise ValueError(
            "reference must be a function of the inputs in TensorFlow ops or "
            f"a Keras layer, got {type(reference).__name__}"
        )
    if make_inputs is not None and not callable(make_inputs):
        raise ValueError(f"make_inputs must be a function of a batch size, got {make_inputs!r}")
    rng = np.random.default_rng(seed)
    forward = replayed(forward, seed, seed_global)
    if reference is not None and not _is_keras_layer(reference):
        reference = replayed(reference, seed, seed_global)
    name = name or getattr(forward, "__name__", "op")
    second = f"{COULD_NOT_VARY} (check_op's make_inputs lets it)"
    if make_inputs is not None:
        batch = next(iter(values.values())).shape[:1] or (1,)
        second = second_shape_check(
            forward,
            backward,
            reference,
            lambda: [_named(_checked_inputs(make_inputs(batch[0] + 1)))],
            weights=tuple(weights),
            seed=seed,
            rtol=rtol,
            atol=atol,
            fd_samples=fd_samples,
            name=name,
        )
    return run_check(
        forward,
        backward,
        values,
        reference,
        rng=rng,
        weights=tuple(weights),
        seed=seed,
        rtol=rtol,
        atol=atol,
        fd_samples=fd_samples,
        name=name,
        second=second,
    )


@contextlib.contextmanager
def _global_seed(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded ``seed`` inside, and as it was outside (the legacy
    calls on purpose: the textbook code this serves draws from that generator)."""
    saved = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(saved)  # noqa: NPY002


def replayed(function: Callable, seed: int, seed_global: bool = False) -> Callable:
    """``function`` called with a fresh ``rng`` seeded ``seed`` on every call when it takes
    one (by its signature), and inside a re-seeded global generator if ``seed_global``."""
    from tfhybrid.layers.base import accepted_options

    takes_rng = "rng" in accepted_options(function)
    if not takes_rng and not seed_global:
        return function

    @functools.wraps(function)
    def call(*args, **kwargs):
        if takes_rng:
            kwargs["rng"] = np.random.default_rng(seed)
        if not seed_global:
            return function(*args, **kwargs)
        with _global_seed(seed):
            return function(*args, **kwargs)

    return call


def _differs(first: np.ndarray, second: np.ndarray) -> bool:
    return first.shape != second.shape or not np.array_equal(first, second, equal_nan=True)


def run_check(
    forward: Callable,
    backward: Callable,
    values: dict[str, np.ndarray],
    reference,
    *,
    rng: np.random.Generator,
    dout: np.ndarray | None = None,
    weights: tuple[str, ...] = (),
    seed: int = 0,
    rtol: float | None = None,
    atol: float = 0.0,
    fd_samples: int = OP_FD_SAMPLES,
    name: str = "op",
    counts: Mapping[str, int] | None = None,
    upstream: str = "",
    cause_counts: Mapping[str, float] | None = None,
    candidates: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    second: Callable[[], SecondShape | str] | str | None = None,
) -> OpReport:
    """:func:`check_op` on checked float64 ``values``; ``dout``: the upstream gradient
    (default: drawn from ``rng``), as the per-layer checks of a network pass the tape's.
    ``counts``: the quantities a factor may be named after (default: those of the input
    and output shapes, and ``cause_counts``, a layer's own). ``candidates``: {input:
    {description: gradient}}, what a known slip would give for that input (a composite's
    dx without one path's share), named as the likely cause when the manual one equals it.
    ``second``: the check at a second shape that confirms a factor's cause
    (:func:`second_shape_check`), or why there is none."""
    out, cache, out_dtype = _run_forward(forward, values)
    again = _run_forward(forward, values)[0]
    if _differs(out, again):  # not a function of its inputs: nothing can be differentiated
        return OpReport(
            op=name,
            reference=FD_ONLY if reference is None else TAPES,
            inputs=[
                TensorCheck(k, INPUT, v.shape, f"{NOT_CHECKED}: fresh random numbers", False)
                for k, v in values.items()
            ],
            tolerances=_tolerances(rtol, atol, np.dtype(np.float64)),
            seed=seed,
            upstream=upstream,
            problem=FRESH_RANDOMNESS,
        )
    if dout is None:
        dout = rng.standard_normal(out.shape)
    elif np.shape(dout) != out.shape:
        raise ValueError(f"dout has shape {list(np.shape(dout))}, the output {list(out.shape)}")
    dout = np.asarray(dout, dtype=np.float64)
    manual, grad_dtypes = _run_backward(backward, dout, cache, values)
    # The precision the code computed in: the lowest of its output's and gradients'.
    precision = np.dtype(np.float64)
    if any(np.dtype(d).itemsize < 8 for d in (out_dtype, *grad_dtypes)):
        precision = np.dtype(np.float32)
    tapes = None
    if _is_keras_layer(reference):
        tapes = _keras_tapes(reference, weights, values, dout, out.shape, out)
    elif reference is not None:
        tapes = _tapes(reference, values, dout, out.shape, out)

    def loss_at(point: dict[str, np.ndarray]) -> float:
        result = forward(**{k: np.array(v) for k, v in point.items()})[0]
        return float(np.sum(dout * np.asarray(result, dtype=np.float64)))

    loss = loss_at(values)
    loss_scale = None
    if precision != np.float64:  # each output element rounds on its own scale
        loss_scale = float(np.sum(np.abs(dout * out)))
    manual_rtol = tol.rtol_for(precision) if rtol is None else float(rtol)
    if counts is None:
        counts = quantities_of(values, out.shape, cause_counts)
    rerun = Rerun(  # what a likely cause may run again to be tested (confirm.py)
        doubled=functools.partial(_doubled, forward, backward, values, dout),
        second=second if callable(second) else None,
        why_not=second if isinstance(second, str) else COULD_NOT_VARY,
    )
    checks = []
    for key, value in values.items():
        if key not in manual:
            checks.append(left_out(key, value.shape))
            continue
        checks.append(
            judge_tensor(
                key,
                INPUT,
                manual[key],
                tape64=tapes[0][key] if tapes else None,
                tape32=tapes[1][key] if tapes and tapes[1] is not None else None,
                probe=Probe(loss_at, values, key, loss, precision, loss_scale),
                rng=rng,
                fd_samples=fd_samples,
                manual_rtol=manual_rtol,
                fd_only_rtol=rtol,
                atol=atol,
                counts=counts,
                candidates=(candidates or {}).get(key),
                rerun=rerun,
            )
        )
    label = (
        FD_ONLY
        if not tapes
        else (
            f"keras {type(reference).__name__}: {TAPES}"
            if _is_keras_layer(reference)
            else (TAPES if tapes[1] is not None else TAPE64_ONLY)
        )
    )
    return OpReport(
        op=name,
        reference=label,
        inputs=checks,
        tolerances=_tolerances(manual_rtol, atol, precision),
        seed=seed,
        precision=str(precision),
        upstream=upstream,
    )


def second_shape_check(
    forward: Callable,
    backward: Callable,
    reference,
    points: Callable[[], list[tuple[dict[str, np.ndarray], str]]],
    *,
    cause_counts: Mapping[str, float] | None = None,
    **settings,
) -> Callable[[], SecondShape | str]:
    """The check run again at the first of ``points`` (float64 inputs at other shapes,
    each with its name) the code runs at, once, when a likely cause asks
    (:mod:`tfhybrid.audit.confirm`); ``settings``: :func:`run_check`'s. With a tape the
    factor there is the tape's, so few finite differences are taken."""
    if reference is not None:
        settings["fd_samples"] = min(settings.get("fd_samples", OP_FD_SAMPLES), 4)

    def again(other: dict[str, np.ndarray]) -> OpReport:
        seed = settings.get("seed", 0)
        return run_check(
            forward, backward, other, reference, rng=np.random.default_rng(seed), **settings
        )

    def counts_at(other: dict[str, np.ndarray]):
        out = forward(**{k: v.copy() for k, v in other.items()})[0]
        return quantities_of(other, np.shape(out), cause_counts)

    return second_shape(points, again, counts_at)


def _named(values: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    return values, shape_text(values)


def _doubled(forward, backward, values, dout) -> dict[str, np.ndarray]:
    """The backward's gradients for dout doubled, from a fresh forward: a correct one
    doubles them (the test of a backward that ignores its upstream gradient)."""
    return _run_backward(backward, 2 * dout, _run_forward(forward, values)[1], values)[0]


def _tolerances(rtol: float | None, atol: float, precision: np.dtype) -> dict[str, float]:
    return {
        "manual": tol.rtol_for(precision) if rtol is None else float(rtol),
        "float32": tol.RTOL_FLOAT32,
        "finite_differences": tol.RTOL_FINITE_DIFF if precision == np.float64 else tol.RTOL_FLOAT32,
        "atol": atol,
    }


def _check_tolerances(rtol, atol, fd_samples) -> None:
    if rtol is not None and (
        isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol > 0
    ):
        raise ValueError(f"rtol must be a number > 0 (or None for the default), got {rtol!r}")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise ValueError(f"atol must be a number >= 0, got {atol!r}")
    if isinstance(fd_samples, bool) or not isinstance(fd_samples, int) or fd_samples < 1:
        raise ValueError(f"fd_samples must be an integer >= 1, got {fd_samples!r}")


def _checked_inputs(
    inputs: Mapping[str, np.ndarray], identifiers: bool = True
) -> dict[str, np.ndarray]:
    """Float64 copies of ``inputs``, each checked; ``identifiers``: names must be Python
    names (a user's function takes them as keywords; a layer's pair takes a composite's
    "block.0.w" in ``**params``)."""
    if not isinstance(inputs, Mapping) or not inputs:
        raise ValueError(
            f"inputs must be a non-empty dict of name -> float array, got {type(inputs).__name__}"
        )
    values = {}
    for key, value in inputs.items():
        if not isinstance(key, str) or (identifiers and not key.isidentifier()):
            raise ValueError(
                f"input names must be identifiers (they are passed as keywords), got {key!r}"
            )
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"input {key!r} has dtype {array.dtype}; gradients are checked "
                "for float arrays only (pass it as float, or close over it)"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(
                f"input {key!r} holds NaN or inf: a gradient is checked at finite points"
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
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"forward's out holds NaN or inf on inputs {_shapes(values)}: check the forward "
            "(a gradient is checked where the function is finite)"
        )
    return np.array(out, dtype=np.float64), result[1], out.dtype


def _run_backward(
    backward: Callable, dout: np.ndarray, cache, values: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], list]:
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
    checked, dtypes = {}, []
    for key, grad in grads.items():
        grad = np.asarray(grad)
        if np.issubdtype(grad.dtype, np.floating):
            dtypes.append(grad.dtype)
        grad = np.array(grad, dtype=np.float64)  # a copy: the cache may share its memory
        if grad.shape != values[key].shape:
            raise ValueError(
                f"backward's gradient for {key!r} has shape {list(grad.shape)}, "
                f"but input {key!r} has shape {list(values[key].shape)}"
            )
        checked[key] = grad
    return checked, dtypes


def _tapes(
    reference: Callable,
    values: dict[str, np.ndarray],
    dout: np.ndarray,
    out_shape: tuple,
    forward_out: np.ndarray | None = None,
) -> tuple[dict, dict | None]:
    """(float64 tape gradients, float32 tape gradients) of sum(dout * reference(...)).

    The reference gets the inputs by name or positionally (:mod:`reference_call`). The
    float64 tape is the reference; the float32 one only shows float32's rounding, so a
    reference that runs in float64 alone (one holding float64 NumPy constants) gives
    None there instead of an error."""
    from tfhybrid._tf import tf

    results = []
    for dtype in (tf.float64, tf.float32):
        tensors = {k: tf.constant(v, dtype=dtype) for k, v in values.items()}
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            try:
                out = call_reference(reference, tensors)
            except Exception as err:  # the user's code: report it with what it was given
                if dtype == tf.float32:  # it ran in float64: float32 is not its dtype
                    results.append(None)
                    break
                raise ValueError(
                    f"reference failed on inputs {_shapes(values)} "
                    f"({describe_call(reference, list(values))}): {type(err).__name__}: {err}"
                    f"{factory_hint(reference)}"
                ) from err
            if not tf.is_tensor(out):
                raise ValueError(not_a_tensor(out))
            if dtype == tf.float64:
                _check_same_function(np.asarray(out, dtype=np.float64), forward_out)
            if tuple(out.shape) != tuple(out_shape):
                raise ValueError(
                    f"reference's output has shape {list(out.shape)}, forward's "
                    f"{list(out_shape)}: they must compute the same function. {WITHOUT_REFERENCE}"
                )
            target = tf.reduce_sum(tf.cast(out, dtype) * tf.constant(dout, dtype=dtype))
        grads = tape.gradient(target, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        results.append({k: dense(g) for k, g in grads.items()})
    return results[0], results[1]


def _check_same_function(reference_out: np.ndarray, forward_out: np.ndarray | None) -> None:
    """The reference must compute the forward's function: its float64 output must agree
    with the forward's to float32's tolerance (looser than any rounding, tighter than any
    other function), else no gradient of one says anything about the other."""
    if forward_out is None or reference_out.shape != forward_out.shape:
        return  # a shape mismatch has its own message
    result = compare(reference_out, forward_out, tol.RTOL_FLOAT32)
    if not result.matches:
        raise ValueError(
            f"reference's output differs from forward's (rel err {result.rel_error:.1e} at "
            f"index {result.worst_index}, scale {readable_factor(result.scale)}): they must "
            f"compute the same function. {WITHOUT_REFERENCE}"
        )


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
    forward_out: np.ndarray | None = None,
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
            if dtype == "float64":
                _check_same_function(np.asarray(out, dtype=np.float64), forward_out)
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
        results.append({k: dense(g).reshape(values[k].shape) for k, g in named.items()})
    return results[0], results[1]


def standalone_options(
    layer, *, training: bool = True, seed: int = 0, state: Mapping | None = None
) -> Callable[[str], dict]:
    """method -> the keyword arguments a layer checked on its own gets on each call: the
    mode, a copy of ``state`` (default its :meth:`init_state`) and a generator seeded
    ``seed``, fresh every call (so every evaluation replays one draw)."""
    from tfhybrid.layers.base import call_options

    base = layer.init_state(layer.input_shape) if state is None else state
    takes = {m: layer.options_taken(m) for m in ("forward", "reference")}

    def options(method: str) -> dict:
        return call_options(
            getattr(layer, method),
            training=training,
            state={k: np.array(v, dtype=np.float64) for k, v in base.items()},
            rng=lambda: np.random.default_rng(seed),
            wanted=takes[method],
        )

    return options


def layer_pair(
    layer, need_dx: bool = True, options: Callable[[str], dict] | None = None
) -> tuple[Callable, Callable, Callable]:
    """A layer as the op pair and reference :func:`check_op` takes: ``forward(x, **params)
    -> (out, cache)``, ``backward(dout, cache) -> {"x": dx, **param grads}`` (no "x"
    when ``need_dx`` is False) and ``reference(x, **params)``. ``options(method)``: the
    mode, state and generator its forward and reference take, made afresh on every call
    (default: :func:`standalone_options`, training mode)."""
    options = options or standalone_options(layer)

    def forward(x, **p):
        return layer.forward(p, x, **options("forward"))

    def backward(dout, cache):
        dx, grads = layer.backward(dout, cache, need_dx)
        return {**({"x": dx} if need_dx and dx is not None else {}), **grads}

    def reference(x, **p):
        return layer.reference(p, x, **options("reference"))

    return forward, backward, reference
