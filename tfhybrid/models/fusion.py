"""Runs of consecutive fused layers, each compiled into one TensorFlow call.

A layer with ``fused = True`` computes its forward exactly as its ``reference``; so a
run of such layers is one ``tf.function`` (a concrete function with a fixed signature
per dtype: no retracing, no argument inspection per call). The call returns only the
tensors the layers' backward passes need (``fused_needs``) and the run's output, so
TensorFlow frees the rest inside the call. Each layer then builds its cache from them.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tfhybrid._tf import tf


@dataclasses.dataclass
class FusedRun:
    """Layers ``start`` .. ``stop - 1`` of a network, all fused.

    ``kept``: indices k whose output (activation k) the call returns for the caches;
    activation ``start - 1`` is the run's input, which the caller already holds.
    """

    start: int
    stop: int
    kept: tuple[int, ...]
    layers: list
    param_keys: list[dict[str, str]]
    input_shape: tuple
    dtype: np.dtype

    @functools.cached_property
    def _signature(self):
        spec = functools.partial(tf.TensorSpec, dtype=tf.as_dtype(self.dtype))
        params = [[spec(shape) for shape in layer.param_shapes(layer.input_shape).values()]
                  for layer in self.layers]
        return spec([None, *self.input_shape]), params

    def _run(self, x, params, keep):
        outputs = []
        h = x
        for offset, (layer, values) in enumerate(zip(self.layers, params, strict=True)):
            local = dict(zip(layer.param_shapes(layer.input_shape), values, strict=True))
            h = layer.reference(local, h)
            if self.start + offset in keep:
                outputs.append(h)
        return outputs + [h]

    @functools.cached_property
    def training_call(self):
        """f(x, params) -> [activation k for k in kept] + [the run's output]."""
        x_spec, p_spec = self._signature
        keep = set(self.kept)
        fn = tf.function(lambda x, params: self._run(x, params, keep),
                         input_signature=[x_spec, p_spec])
        return fn.get_concrete_function()

    @functools.cached_property
    def predict_call(self):
        """f(x, params) -> [the run's output] (nothing kept: for evaluation)."""
        x_spec, p_spec = self._signature
        fn = tf.function(lambda x, params: self._run(x, params, set()),
                         input_signature=[x_spec, p_spec])
        return fn.get_concrete_function()

    def param_values(self, params: dict[str, np.ndarray]) -> list[list[np.ndarray]]:
        return [[params[key] for key in keys.values()] for keys in self.param_keys]


def plan_runs(layers: list, param_keys: list[dict[str, str]], first: int,
              dtype: np.dtype) -> list[FusedRun]:
    """Group consecutive fused layers; ``first``: the first layer whose backward runs
    (no cache is kept below it)."""
    runs, index = [], 0
    while index < len(layers):
        if not layers[index].fused:
            index += 1
            continue
        start = index
        while index < len(layers) and layers[index].fused:
            index += 1
        kept = set()
        for i in range(max(start, first), index):
            needs = layers[i].fused_needs
            if "x" in needs and i - 1 >= start:
                kept.add(i - 1)
            if "out" in needs:
                kept.add(i)
        kept.discard(index - 1)  # the run's output is returned anyway
        runs.append(FusedRun(start, index, tuple(sorted(kept)), layers[start:index],
                             param_keys[start:index], layers[start].input_shape, dtype))
    return runs
