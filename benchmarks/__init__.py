"""The step-time and memory benchmark of every network (``scripts/benchmark.py``).

For each network of :mod:`tfhybrid.catalog`, one full training step (forward, backward,
plain SGD update) is timed by method, on random data of the network's input shape:

- ``hybrid``: the training loop's step, the hand-written backward pass;
- ``per-example``: the same with ``per_example=True`` (each sample's own gradient);
- ``autodiff``: ``tf.GradientTape`` over the same network in plain TensorFlow ops
  (``net.reference_forward``), SGD included, in one ``tf.function``;
- ``autodiff-xla``: the same compiled by XLA (``jit_compile=True``);
- ``per-example-peer``: TensorFlow's per-example gradients, ``tf.vectorized_map`` over
  a per-sample tape (as TF Privacy), their mean for the SGD update.

One concern per module:

- :mod:`benchmarks.steps`: the step functions and their random batch;
- :mod:`benchmarks.timing`: interleaved timing in rounds, median / p10 / p90;
- :mod:`benchmarks.formulations`: each convolution's chosen backward formulations and
  every candidate's time (``--formulations``);
- :mod:`benchmarks.profile`: the hybrid step part by part against TensorFlow alone
  (``python -m benchmarks.profile MODEL``);
- :mod:`benchmarks.calls`: one compiled call by how it is made (TensorFlow's call or
  the lean one, the executor, XLA by batch size, padding; ``python -m benchmarks.calls``);
- :mod:`benchmarks.memory`: peak RSS (VmHWM) of one method in a fresh subprocess;
- :mod:`benchmarks.full_run`: ``scripts/train.py`` end to end, its wall time and memory;
- :mod:`benchmarks.machine`: what the figures were measured on;
- :mod:`benchmarks.suite`: the whole run, in order, as one dict (what ``--json`` writes);
- :mod:`benchmarks.report`: that dict as markdown tables.

Figures only, never a pass/fail. ``tfhybrid.runtime.tune_for_training()`` is applied
once per process, before any step is built, so every method runs under it alike.
Nothing here imports TensorFlow at module level.
"""
