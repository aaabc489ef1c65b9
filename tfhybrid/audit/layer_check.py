"""Checking one layer on its own: :func:`check_layer` (built from its input shape) and
:func:`check_layer_at` (at a given input and parameters), a composite's layers inside and
its join included.

Apart from :mod:`tfhybrid.audit.ops` (the op pairs' check), because a composite's check
reads the per-layer verdicts of :mod:`tfhybrid.audit.layers`, which itself runs op checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from tfhybrid.audit.forks import shared_layers
from tfhybrid.audit.layers import (
    At,
    Scope,
    check_inside,
    composite_fault,
    composite_lines,
    locate,
    varied_points,
)
from tfhybrid.audit.ops import (
    OP_FD_SAMPLES,
    OpReport,
    _check_tolerances,
    _checked_inputs,
    layer_pair,
    run_check,
    second_shape_check,
    standalone_options,
)
from tfhybrid.layers.base import Layer
from tfhybrid.layers.composite import Composite

TIE_POINT = "integer-valued x"  # ties and exact zeros, as in MNIST's 0..255 images


def check_layer(
    layer,
    input_shape: tuple[int, ...],
    *,
    x: np.ndarray | None = None,
    ties: bool = True,
    batch: int = 2,
    seed: int = 0,
    rtol: float | None = None,
    atol: float = 0.0,
    fd_samples: int = OP_FD_SAMPLES,
    training: bool = True,
) -> OpReport:
    """Check one layer of :mod:`tfhybrid.layers` (the user's own included): the gradient of
    its input ``x`` [batch, *input_shape] and of each parameter, against the tape of its
    ``reference`` and finite differences of its ``forward``.

    ``x``: the input to check at (default: standard normal, seeded). ``ties``: also check
    at an integer-valued input in -2..2, where max pooling has tied maxima and ReLU exact
    zeros, which a normal draw never has; the report then has a row per input and point,
    and each input's verdict is its worst. A ``fused`` layer is checked on both of its
    paths: its own ``forward``, and the compiled one (``reference`` for the output and
    ``cache_from`` for the cache, fed TensorFlow tensors), rows marked ``fused``.

    ``training``: the mode its forward and reference run in (a layer that takes
    ``training``; normalization is checked in training mode by default). A layer that takes
    ``rng`` gets a generator seeded ``seed`` on every call, so each evaluation replays the
    same draw; one that takes ``state`` gets a copy of its :meth:`init_state` each call.

    A composite (a Residual, Branches, one's own) is checked as a whole, its parameters
    named by their paths (block.0.w), and each layer inside it on its own at every point,
    fed the float64 tape's upstream gradient at its output inside the composite (nested
    composites too): the report's ``parts``, and a ``layer at fault:`` line naming the
    layer inside (``Residual > block > 1 (Conv2D)``) or, when they all match, the
    composite's join. Its likely causes include a path's gradient not added at the fork
    or counted twice, and a shared layer's gradient of one use only.
    """

    if not isinstance(layer, Layer):
        raise ValueError(
            f"check_layer checks a tfhybrid.layers.Layer, got {type(layer).__name__}; "
            "for a pair of functions use check_op"
        )
    if (
        not isinstance(input_shape, (tuple, list))
        or not input_shape
        or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in input_shape)
    ):
        raise ValueError(
            f"input_shape must be a tuple of positive sizes without the batch axis, such "
            f"as (28, 28, 1), got {input_shape!r}"
        )
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    _check_tolerances(rtol, atol, fd_samples)
    shape = tuple(int(d) for d in input_shape)
    rng = np.random.default_rng(seed)
    layer.input_shape = shape
    params = {k: np.asarray(v, dtype=np.float64) for k, v in layer.init_params(rng, shape).items()}
    if "x" in params:
        raise ValueError(f"{type(layer).__name__} names a parameter 'x', the name of its input")
    if x is None:
        points = [("", rng.standard_normal((batch, *shape)))]
    else:
        given = np.asarray(x)
        if given.ndim != len(shape) + 1 or tuple(given.shape[1:]) != shape:
            raise ValueError(
                f"x must have shape [N,{','.join(map(str, shape))}] for input_shape "
                f"{shape}, got {list(given.shape)}"
            )
        points = [("your x", given)]
    if ties:
        points.append((TIE_POINT, rng.integers(-2, 3, size=(len(points[0][1]), *shape))))

    options = standalone_options(layer, training=bool(training), seed=seed)
    forward, backward, reference = layer_pair(layer, options=options)

    def fused_forward(x, **p):
        """The forward as Sequential runs a fused layer: its reference in TensorFlow, and
        the cache from cache_from, fed TensorFlow tensors as in the compiled call."""
        from tfhybrid._tf import tf

        tx = tf.constant(x)
        out = layer.reference({k: tf.constant(v) for k, v in p.items()}, tx, **options("reference"))
        needs = layer.fused_needs
        cache = layer.cache_from(
            p, tx if "x" in needs else None, out if "out" in needs else None, len(x)
        )
        return out.numpy(), cache

    name = f"{type(layer).__name__} on [N,{','.join(map(str, shape))}]"
    if layer.takes("training") or layer.takes("training", "reference"):
        name += ", training mode" if training else ", inference mode"
    runs = [(label, point, forward, backward) for label, point in points]
    if layer.fused:  # the compiled path builds the cache another way: check it too
        runs += [
            (f"{label}, fused path" if label else "fused path", point, fused_forward, backward)
            for label, point in points
        ]
    if layer.fast_path and type(layer).__module__.startswith("tfhybrid.layers"):
        # Training runs tfhybrid.fast's variant: check the definition in tfhybrid.ops too.
        runs += [
            (
                f"{label}, readable path" if label else "readable path",
                point,
                _on_readable_path(forward),
                _on_readable_path(backward),
            )
            for label, point in points
        ]
    inside = _Inside(layer, options, seed, fd_samples) if isinstance(layer, Composite) else None
    settings = dict(seed=seed, rtol=rtol, atol=atol, fd_samples=fd_samples, name=name)
    # A factor's cause is confirmed once, at another batch, image size and channel count
    # (the parameters drawn afresh), for the rows of every point.
    settings["second"] = second_shape_check(
        forward,
        backward,
        reference,
        lambda: varied_points(layer, np.shape(points[0][1]), seed),
        cause_counts=getattr(layer, "cause_counts", None),
        **settings,
    )
    reports = [
        _check_point(
            layer,
            (path, path_backward, reference),
            _checked_inputs({"x": np.asarray(point, dtype=np.float64), **params}, False),
            np.random.default_rng(seed + index % len(points)),
            label,
            inside,
            **settings,
        )
        for index, (label, point, path, path_backward) in enumerate(runs)
    ]
    rows = [
        dataclasses.replace(item, point=label)
        for (label, *_), report in zip(runs, reports, strict=True)
        for item in report.inputs
    ]
    first = reports[0]
    report = dataclasses.replace(
        first,
        inputs=rows,
        precision=max((r.precision for r in reports), key=lambda p: p != "float64"),
    )
    return _with_parts(report, inside)


def _on_readable_path(fn: Callable) -> Callable:
    """``fn`` run with the layers on their definitions in tfhybrid.ops (tfhybrid.fast off)."""
    from tfhybrid import fast

    def on_readable_path(*args, **kwargs):
        previous = fast.set_readable(True)
        try:
            return fn(*args, **kwargs)
        finally:
            fast.set_readable(previous)

    return on_readable_path


def check_layer_at(
    layer,
    x: np.ndarray,
    params: Mapping[str, np.ndarray],
    *,
    options: Callable[[str], dict] | None = None,
    seed: int = 0,
    rtol: float | None = None,
    atol: float = 0.0,
    fd_samples: int = OP_FD_SAMPLES,
    name: str | None = None,
) -> OpReport:
    """One built layer checked at the input x [N, *S] and parameters ``params`` (its own
    names; a composite's "block.0.w" included) it is given, as a layer taken out of a
    network is (the Keras bridge's): :func:`check_layer` at one point, against a random
    upstream gradient (seed ``seed``), a composite's layers inside and its join included
    (``parts``). ``options(method)``: what its forward and reference take (default
    :func:`standalone_options`, training mode)."""

    _check_tolerances(rtol, atol, fd_samples)
    values = _checked_inputs({"x": x, **params}, False)
    layer.input_shape = tuple(values["x"].shape[1:])  # as check_layer does
    options = options or standalone_options(layer, seed=seed)
    inside = _Inside(layer, options, seed, fd_samples) if isinstance(layer, Composite) else None
    pair = layer_pair(layer, options=options)
    settings = dict(seed=seed, rtol=rtol, atol=atol, fd_samples=fd_samples)
    settings["name"] = name or type(layer).__name__
    params = {k: v for k, v in values.items() if k != "x"}
    settings["second"] = second_shape_check(  # another batch and size, these weights
        *pair,
        lambda: varied_points(layer, values["x"].shape, seed, params),
        cause_counts=getattr(layer, "cause_counts", None),
        **settings,
    )
    report = _check_point(layer, pair, values, np.random.default_rng(seed), "", inside, **settings)
    return _with_parts(report, inside)


def _with_parts(report: OpReport, inside) -> OpReport:
    """``report`` with a composite's layers inside (``inside``, None for another layer),
    and the ``layer at fault:`` lines and name they give."""
    if inside is None:
        return report
    report = dataclasses.replace(report, parts=inside.parts())
    if not report.parts:
        return report
    fault = composite_fault(report)
    return dataclasses.replace(
        report,
        part_lines=tuple(composite_lines(report)),
        part_at_fault=None if fault is None else fault.describe(),
    )


def _check_point(
    layer, pair: tuple, values: dict, rng: np.random.Generator, label: str, inside, **settings
) -> OpReport:
    """:func:`run_check` of a layer's (forward, backward, reference) ``pair`` at one point;
    for a composite (``inside``), its layers inside checked first at the same upstream
    gradient, which also gives the candidates of its likely causes."""
    dout = candidates = None
    if inside is not None:  # the draw run_check would make, made here to share it
        shape = layer.output_shape(tuple(values["x"].shape[1:]))
        dout = rng.standard_normal((len(values["x"]), *shape))
        candidates = inside.check(label, values, dout)
    forward, backward, reference = pair
    return run_check(
        forward,
        backward,
        values,
        reference,
        rng=rng,
        dout=dout,
        cause_counts=getattr(layer, "cause_counts", None),
        candidates=candidates,
        **settings,
    )


class _Inside:
    """The layers inside a composite checked on its own at each point of
    :func:`check_layer`: fed the float64 tape's upstream gradient at their outputs for the
    composite's upstream gradient there; their rows are labelled by point, as the
    composite's own."""

    def __init__(self, composite, options: Callable[[str], dict], seed: int, fd_samples: int):

        self.composite, self.options, self.seed = composite, options, seed
        self.at = At(None, "", type(composite).__name__)
        self.scope = Scope(
            frozenset(shared_layers([composite])),
            upstream="the float64 tape's upstream gradient (dL/d its output inside the "
            "composite, for the composite's random upstream gradient)",
            fd_samples=fd_samples,
        )
        self.points: list[tuple[str, list]] = []
        self.complete = True  # every use inside traced at every point

    def check(self, label: str, values: dict, dout: np.ndarray) -> dict:
        """Check the layers inside at this point; the candidates of the composite's own
        check there ({input: {description: gradient}})."""

        params = {k: v for k, v in values.items() if k != "x"}
        found = check_inside(
            self.composite,
            params,
            values["x"],
            dout,
            self.options,
            self.at,
            self.scope,
            seed=self.seed,
        )
        self.points.append((label, found.verdicts))
        self.complete = self.complete and found.complete
        return found.candidates

    def parts(self) -> tuple:
        """Each layer inside, its rows from every point, with its status; none where
        some use could not be traced (nothing is then said of the inside)."""

        if not self.complete:
            return ()
        merged = []
        for found in zip(*(inner for _, inner in self.points), strict=True):
            rows = [
                dataclasses.replace(row, point=label)
                for (label, _), item in zip(self.points, found, strict=True)
                for row in item.check.inputs
            ]
            check = dataclasses.replace(found[0].check, inputs=rows)
            merged.append(dataclasses.replace(found[0], check=check))
        return tuple(locate(merged, lambda item: ()))
