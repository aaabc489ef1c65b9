"""Runs of consecutive fused layers, each compiled into one TensorFlow call.

A layer with ``fused = True`` computes its forward exactly as its ``reference``; so a run
of such layers is one ``tf.function``, a concrete function with a fixed signature per
dtype: no retracing, no argument inspection per call. The call returns only the tensors
the layers' backward passes need (``fused_needs``) and the run's output, so TensorFlow
frees the rest inside the call. Each layer then builds its cache from them.

Parameters enter as one flat vector (every parameter of the network, in order), so a
step converts one array for TensorFlow, not one per parameter.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tfhybrid._tf import tf
from tfhybrid.fast.conv_plan import xla_max_batch
from tfhybrid.fast.lean_call import lean


@dataclasses.dataclass
class FusedRun:
    """Layers ``start`` .. ``stop - 1`` of a network, all fused.

    ``kept``: indices k whose output (activation k) the call returns for the caches;
    activation ``start - 1`` is the run's input, which the caller already holds.
    ``cached``: indices of the layers whose caches are built (their backward runs).
    ``slices``: per layer, {local name: (offset, shape)} in the flat parameter vector.
    """

    start: int
    stop: int
    kept: tuple[int, ...]
    cached: tuple[int, ...]
    layers: list
    slices: list[dict[str, tuple[int, tuple]]]
    input_shape: tuple
    dtype: np.dtype
    size: int  # length of the flat parameter vector
    # A batch of at most this many samples runs the XLA-compiled training call
    # (ops.conv_plan.xla_max_batch; 0 for a run holding a layer of your own, see _own);
    # None until that call has run once, then whether XLA compiled it.
    xla_max_batch: int = 0
    xla_compiles: bool | None = None

    def _run(self, x, flat, keep_everything: bool):
        kept = []
        h = x
        for offset, (layer, slices) in enumerate(zip(self.layers, self.slices, strict=True)):
            local = {
                name: tf.reshape(flat[at : at + int(np.prod(shape))], shape)
                for name, (at, shape) in slices.items()
            }
            h = layer.reference(local, h)
            if keep_everything and self.start + offset in self.kept:
                kept.append(h)
        return kept, h

    def _compile(self, keep_everything: bool, xla: bool = False):
        spec = functools.partial(tf.TensorSpec, dtype=tf.as_dtype(self.dtype))
        fn = tf.function(
            lambda x, flat: self._run(x, flat, keep_everything),
            input_signature=[spec([None, *self.input_shape]), spec([self.size])],
            jit_compile=xla,
        )
        return lean(fn.get_concrete_function())

    @functools.cached_property
    def training_call(self):
        """f(x, flat params) -> ([activation k for k in kept], the run's output)."""
        return self._compile(True)

    @functools.cached_property
    def training_call_xla(self):
        """:attr:`training_call` compiled by XLA, for small batches."""
        return self._compile(True, xla=True)

    def training(self, x, flat):
        """:attr:`training_call` of x [N, *input_shape], by XLA when N is at most
        :attr:`xla_max_batch` (and XLA compiles the run)."""
        if len(x) <= self.xla_max_batch and self.xla_compiles is not False:
            try:
                result = self.training_call_xla(x, flat)
            except Exception:
                if self.xla_compiles:
                    raise  # it compiled and ran before: the error is this call's own
                self.xla_compiles = False
            else:
                self.xla_compiles = True
                return result
        return self.training_call(x, flat)

    @functools.cached_property
    def predict_call(self):
        """f(x, flat params) -> ([], the run's output): nothing kept, for evaluation."""
        return self._compile(False)


def _own(layer) -> bool:
    """Whether the layer's ``reference`` is the project's own. Only such runs take XLA:
    XLA drops the assertions and numeric checks a reference of your own may hold."""
    return (type(layer).reference.__module__ or "").startswith("tfhybrid.layers.")


def plan_runs(
    layers: list,
    param_keys: list[dict[str, str]],
    offsets: dict[str, int],
    first: int,
    dtype: np.dtype,
    size: int,
) -> list[FusedRun]:
    """Group consecutive fused layers that include a layer only TensorFlow runs
    (``needs_tf``); ``first``: the first layer whose backward runs (no cache below it);
    ``offsets``: each global parameter's place in the flat vector of ``size``."""
    runs, index = [], 0
    while index < len(layers):
        if not layers[index].fused:
            index += 1
            continue
        start = index
        while index < len(layers) and layers[index].fused:
            index += 1
        if not any(layer.needs_tf for layer in layers[start:index]):
            continue
        cached = tuple(range(max(start, first), index))
        kept = set()
        for i in cached:
            needs = layers[i].fused_needs
            if "x" in needs and i - 1 >= start:
                kept.add(i - 1)
            if "out" in needs:
                kept.add(i)
        kept.discard(index - 1)  # the run's output is returned anyway
        slices = [
            {
                local: (offsets[key], layer.param_shapes(layer.input_shape)[local])
                for local, key in param_keys[i].items()
            }
            for i, layer in zip(range(start, index), layers[start:index], strict=True)
        ]
        runs.append(
            FusedRun(
                start,
                index,
                tuple(sorted(kept)),
                cached,
                layers[start:index],
                slices,
                layers[start].input_shape,
                dtype,
                size,
                xla_max_batch(dtype, forward=True) if all(map(_own, layers[start:index])) else 0,
            )
        )
    return runs
