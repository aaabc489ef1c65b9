"""Which exact TensorFlow formulation computes a convolution's dw, per-sample dw and dx.

Every formulation is a TensorFlow convolution computing the same sums (so they agree to
rounding; in float64 to 1e-12 relative, ``tests/test_conv_formulations.py``). Which is
fastest depends on the shape and on the machine (``scripts/benchmark.py --formulations``
times each against the others; docs/performance.md has the figures):

- dw over the batch: ``backprop-filter`` (TensorFlow's ``Conv2DBackpropFilter``) or
  ``batch-as-channels`` (one forward convolution, the batch as its channels);
- each sample's dw: ``vectorized`` (each sample's convolution under
  ``tf.vectorized_map``, or the stacked taps times dout for several input channels) or
  ``depthwise`` (one depthwise convolution, the batch as its channels);
- dx: ``backprop-input`` (``Conv2DBackpropInput``) or ``flipped-forward`` (a forward
  convolution of the dilated, padded dout with the rotated kernel);
- each compiled by XLA or not.

:func:`choose` picks by a fixed rule, once per layer when the network is built, so a run
and its resumption take the same path (bit-identical in float32). The rule, from the
measurements in docs/performance.md:

- dw over the batch: ``batch-as-channels`` for a stride-1 convolution on an x86 CPU
  without AVX-512 (oneDNN's backward-filter kernel for few channels is several times
  slower there: 20.7 against 3.3 ms for the article's convolution on a 2-core AMD EPYC);
  ``backprop-filter`` otherwise (with AVX-512 it is as fast or faster, and a stride makes
  the forward form slower everywhere measured); no XLA (slower on both machines);
- each sample's dw: ``vectorized`` under XLA (1.5-3 times faster than without XLA for
  one input channel or a stride, about as fast for the article's 9x9 convolution; the
  depthwise form was slower on every shape measured with AVX-512, and faster on one of
  the two measured without: conv8's, 3.2 against 4.5 ms without XLA);
- dx: ``backprop-input``, no XLA (the flipped forward form was never faster);
- small float32 batches: the batch's backward call under XLA when it has at most
  :data:`XLA_MAX_BATCH` samples, and the network's compiled forward when it has at most
  :data:`XLA_FORWARD_MAX_BATCH` (:func:`xla_max_batch`). TensorFlow's per-op cost
  dominates there and XLA runs the call as one program: on the development machine
  (``python -m benchmarks.calls``) XLA made the backward calls 1.0-1.9 times faster up
  to batch 16 and the forward calls 1.05-1.8 times faster up to batch 4, while the
  forward was 1.3-1.4 times slower at batch 16 and every call 1.2-2.3 times slower
  at batch 100. The choice depends only on the batch's size, so a run and its
  resumption take the same path;
- where TensorFlow sees a GPU (not measured): TensorFlow's own kernels, no XLA.

``TFHYBRID_CONV_PLAN=measure`` replaces the rule by a short measurement per convolution
shape (every candidate timed on a random batch, the fastest kept for the process); it
may choose differently from run to run on a busy machine, so a resumed run is then no
longer bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import numpy as np

PLAN_ENV = "TFHYBRID_CONV_PLAN"
PLAN_SOURCES = ("rule", "measure")
MEASURE_BATCH = 100
MEASURE_REPEATS = 5
DX_NAMES = ("backprop-input", "flipped-forward")  # tf_kernels.DX_FORMULATIONS's keys
XLA_MAX_BATCH = 16  # float32 batches up to this size: the backward calls under XLA (above)
XLA_FORWARD_MAX_BATCH = 4  # and up to this size: the compiled forward under XLA


@dataclasses.dataclass(frozen=True)
class ConvPlan:
    """The formulations of one convolution's backward (keys of the tables in
    :mod:`tfhybrid.fast.tf_kernels`) and how they were chosen."""

    dw: str = "backprop-filter"
    per_sample: str = "vectorized"
    dx: str = "backprop-input"
    xla: bool = False  # the batch's backward call (dw and dx) compiled by XLA
    per_sample_xla: bool = True  # the per-sample backward call compiled by XLA
    source: str = "rule"
    xla_max_batch: int = 0  # a batch of at most this many samples: its call under XLA

    def batch_xla(self, batch: int) -> bool:
        """Whether the batch's backward call (dw and dx) of ``batch`` samples uses XLA."""
        return self.xla or batch <= self.xla_max_batch

    def describe(self) -> str:
        """One line, as ``Sequential.summary()`` and the benchmark print it."""

        def xla(flag: bool) -> str:
            return " (XLA)" if flag else ""

        small = (
            f", XLA up to batch {self.xla_max_batch}" if self.xla_max_batch and not self.xla else ""
        )
        return (
            f"dw {self.dw}{xla(self.xla)}, per-sample dw {self.per_sample}"
            f"{xla(self.per_sample_xla)}, dx {self.dx}{xla(self.xla)}{small} [{self.source}]"
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@functools.cache
def cpu_has_avx512() -> bool:
    """True where /proc/cpuinfo lists avx512f, or where it cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return True


@functools.cache
def gpu_visible() -> bool:
    """True where TensorFlow sees a GPU (the convolutions then run there)."""
    from tfhybrid._tf import tf

    return bool(tf.config.list_physical_devices("GPU"))


def xla_max_batch(dtype, forward: bool = False) -> int:
    """The largest batch whose convolution backward calls (``forward``: whose compiled
    forward) run under XLA: :data:`XLA_MAX_BATCH` (:data:`XLA_FORWARD_MAX_BATCH`) for
    float32 on a CPU, else 0 (never; float64 is the audit's, whose many small shapes
    would each be compiled)."""
    if gpu_visible() or np.dtype(dtype) != np.float32:
        return 0
    return XLA_FORWARD_MAX_BATCH if forward else XLA_MAX_BATCH


def rule(x_shape: tuple, w_shape: tuple, stride: int, pad: int, dtype) -> ConvPlan:
    """The fixed rule of the module docstring."""
    if gpu_visible():  # not measured on a GPU: TensorFlow's own kernels, as autodiff
        return ConvPlan(per_sample_xla=False)
    batch_as_channels = stride == 1 and not cpu_has_avx512()
    return ConvPlan(
        dw="batch-as-channels" if batch_as_channels else "backprop-filter",
        xla_max_batch=xla_max_batch(dtype),
    )


def plan_source() -> str:
    source = os.environ.get(PLAN_ENV, "rule") or "rule"
    if source not in PLAN_SOURCES:
        raise ValueError(f"{PLAN_ENV} must be one of {PLAN_SOURCES}, got {source!r}")
    return source


def choose(x_shape: tuple, w_shape: tuple, stride: int, pad: int, dtype) -> ConvPlan:
    """The plan for a convolution of inputs [N, *x_shape], filter ``w_shape``."""
    key = (tuple(x_shape), tuple(w_shape), int(stride), int(pad), np.dtype(dtype).name)
    if plan_source() == "measure":
        return measured(*key)
    return rule(*key)


def candidates(per_sample: bool, need_dx: bool) -> list[dict]:
    """Every combination of formulations for one backward call, as keyword arguments
    of :func:`tfhybrid.fast.tf_kernels.conv_backward_fn`."""
    from tfhybrid.fast import tf_kernels

    dws = tf_kernels.PER_SAMPLE_FORMULATIONS if per_sample else tf_kernels.DW_FORMULATIONS
    dxs = tf_kernels.DX_FORMULATIONS if need_dx else ("backprop-input",)
    return [{"dw": dw, "dx": dx, "xla": xla} for dw in dws for dx in dxs for xla in (False, True)]


def time_candidates(
    x_shape: tuple,
    w_shape: tuple,
    stride: int,
    pad: int,
    dtype,
    *,
    per_sample: bool,
    need_dx: bool,
    batch: int = MEASURE_BATCH,
    repeats: int = MEASURE_REPEATS,
    seed: int = 0,
    rows: list[dict] | None = None,
) -> list[dict]:
    """Median seconds of each candidate backward call on a random batch, interleaved:
    [{"dw", "dx", "xla", "seconds"}], in the order of ``rows`` (default
    :func:`candidates`)."""
    from tfhybrid._tf import tf
    from tfhybrid.fast import tf_kernels

    rng = np.random.default_rng(seed)
    kh, kw, _, f = w_shape
    ho = (x_shape[0] + 2 * pad - kh) // stride + 1
    wo = (x_shape[1] + 2 * pad - kw) // stride + 1
    x = tf.constant(rng.random((batch, *x_shape)).astype(dtype))
    dout = tf.constant(rng.standard_normal((batch, ho, wo, f)).astype(dtype))
    w = tf.constant(rng.standard_normal(w_shape).astype(dtype))
    rows = candidates(per_sample, need_dx) if rows is None else rows
    fns = [
        tf_kernels.conv_backward_fn(
            tf.as_dtype(dtype),
            tuple(x_shape),
            tuple(w_shape),
            stride,
            pad,
            need_dx,
            per_sample,
            **row,
        )
        for row in rows
    ]
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:  # warm up: tracing and XLA compilation
        [np.asarray(t) for t in fn(x, dout, w)]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            [np.asarray(t) for t in fn(x, dout, w)]
            spent.append(time.perf_counter() - start)
    return [
        {**row, "seconds": float(np.median(spent))} for row, spent in zip(rows, times, strict=True)
    ]


@functools.cache
def measured(x_shape: tuple, w_shape: tuple, stride: int, pad: int, dtype: str) -> ConvPlan:
    """The fastest candidates on this machine, timed once per shape in this process."""

    def fastest(**options) -> dict:
        rows = time_candidates(x_shape, w_shape, stride, pad, dtype, **options)
        return min(rows, key=lambda row: row["seconds"])

    batched = fastest(per_sample=False, need_dx=False)
    dx = fastest(
        per_sample=False,
        need_dx=True,
        rows=[{"dw": batched["dw"], "dx": name, "xla": batched["xla"]} for name in DX_NAMES],
    )
    per_sample = fastest(per_sample=True, need_dx=False)
    return ConvPlan(
        dw=batched["dw"],
        per_sample=per_sample["dw"],
        dx=dx["dx"],
        xla=batched["xla"],
        per_sample_xla=per_sample["xla"],
        source="measured",
        xla_max_batch=xla_max_batch(dtype),
    )
