"""What one compiled TensorFlow call of the hybrid step costs, by the way it is made.

    python -m benchmarks.calls [--repeats 100]

Three tables, each call's median ms over interleaved rounds (figures only):

- **calling**: a trivial compiled function ([2, 4] inputs) called as TensorFlow's own
  ``ConcreteFunction`` call, then through :func:`tfhybrid.fast.lean_call.lean`, with NumPy
  arrays and with tensors: what the call's bookkeeping costs beside the graph;
- **executor and XLA by batch**: each network's compiled forward (``FusedRun``) and each
  convolution's batch backward call at batches 1, 4, 16 and 100, on TensorFlow's default
  executor, on the single-threaded one the lean call uses, and XLA-compiled: the
  measurements behind ``lean_call.EXECUTOR`` and ``conv_plan.XLA_MAX_BATCH``;
- **padding**: the filter gradient of padded convolutions as ``Conv2DBackpropFilter``
  with explicit paddings (what autodiff of a padded ``tf.nn.conv2d`` runs) and as the
  pre-padded input with "VALID" (what :func:`tfhybrid.fast.tf_kernels.filter_grad` runs).
"""

from __future__ import annotations

import argparse
import functools

import numpy as np

BATCHES = (1, 4, 16, 100)
NETWORKS = ("seed-cnn", "lenet5", "conv8")
# (input H, W, C), (kh, kw, C, F), stride, pad: padded convolutions of the sources' kinds.
PADDED = [
    ((28, 28, 1), (5, 5, 1, 6), 1, 2),
    ((14, 14, 4), (3, 3, 4, 16), 1, 1),
    ((28, 28, 8), (3, 3, 8, 16), 2, 1),
    ((14, 14, 16), (5, 5, 16, 32), 1, 2),
]


def _median_ms(calls: dict, repeats: int) -> dict[str, float]:
    from benchmarks.timing import interleaved_times
    from tfhybrid._tf import tf

    def fetch(fn):  # the results as NumPy, as the step takes them
        return lambda: [np.asarray(t) for t in tf.nest.flatten(fn())]

    times = interleaved_times({k: fetch(f) for k, f in calls.items()}, repeats, warmup=3)
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}


def calling(repeats: int) -> dict[str, float]:
    from tfhybrid._tf import tf
    from tfhybrid.fast.lean_call import lean

    spec = tf.TensorSpec([None, 4], tf.float32)
    concrete = tf.function(lambda a, b: a + b, input_signature=[spec, spec])
    concrete = concrete.get_concrete_function()
    call = lean(concrete)
    array = np.ones((2, 4), np.float32)
    tensor = tf.constant(array)
    return _median_ms(
        {
            "TensorFlow's call, arrays": lambda: concrete(array, array),
            "TensorFlow's call, tensors": lambda: concrete(tensor, tensor),
            "lean call, arrays": lambda: call(array, array),
            "lean call, tensors": lambda: call(tensor, tensor),
        },
        repeats,
    )


def _on(single_threaded: bool, call):
    """The step's lean call of the same function, on the single-threaded executor or on
    TensorFlow's default one."""
    from tfhybrid.fast.lean_call import lean

    return lean(call.concrete, single_threaded=single_threaded)


def executors(repeats: int) -> list[dict]:
    from benchmarks.steps import random_batch
    from tfhybrid._tf import tf
    from tfhybrid.catalog import build_model
    from tfhybrid.fast import tf_kernels

    rows = []
    for model in NETWORKS:
        net = build_model(model, seed=0, dtype=np.float32)
        run = net.runs[0]
        convs = [(i, layer) for i, layer in enumerate(net.layers) if hasattr(layer, "plan")]
        for batch in BATCHES:
            x, _ = random_batch(net, batch)
            h, flat = tf.constant(x), net._flat_tensor()
            calls = {
                ("forward", "default"): functools.partial(_on(False, run.training_call), h, flat),
                ("forward", "single-threaded"): functools.partial(
                    _on(True, run.training_call), h, flat
                ),
                ("forward", "XLA"): functools.partial(run.training_call_xla, h, flat),
            }
            rng = np.random.default_rng(batch)
            for i, layer in convs:
                shape, w = layer.input_shape, net.layer_params(i)["w"]
                args = (
                    tf.constant(rng.random((batch, *shape), np.float32)),
                    tf.constant(rng.random((batch, *layer.output_shape_), np.float32)),
                    tf.constant(w),
                )
                make = functools.partial(
                    tf_kernels.conv_backward_fn,
                    tf.float32,
                    tuple(shape),
                    tuple(w.shape),
                    layer.stride,
                    layer.padding,
                    i > net.first,
                    False,
                )
                name = f"{net.names[i]} backward" + (" (dw and dx)" if i > net.first else "")
                calls[(name, "default")] = functools.partial(_on(False, make()), *args)
                calls[(name, "single-threaded")] = functools.partial(_on(True, make()), *args)
                calls[(name, "XLA")] = functools.partial(make(xla=True), *args)
            times = _median_ms({" / ".join(k): v for k, v in calls.items()}, repeats)
            for (call, how), _ in calls.items():
                rows.append(
                    {
                        "model": model,
                        "batch": batch,
                        "call": call,
                        "how": how,
                        "ms": times[f"{call} / {how}"],
                    }
                )
    return rows


def padding(repeats: int) -> list[dict]:
    from tfhybrid._tf import tf
    from tfhybrid.fast import tf_kernels

    rows = []
    for shape, w_shape, stride, pad in PADDED:
        rng = np.random.default_rng(0)
        ho = (shape[0] + 2 * pad - w_shape[0]) // stride + 1
        wo = (shape[1] + 2 * pad - w_shape[1]) // stride + 1
        x = tf.constant(rng.random((100, *shape), np.float32))
        dout = tf.constant(rng.random((100, ho, wo, w_shape[3]), np.float32))
        explicit = tf.function(
            lambda x=x, dout=dout, w_shape=w_shape, stride=stride, pad=pad: (
                tf.raw_ops.Conv2DBackpropFilter(
                    input=x,
                    filter_sizes=list(w_shape),
                    out_backprop=dout,
                    strides=[1, stride, stride, 1],
                    padding="EXPLICIT",
                    explicit_paddings=[0, 0, pad, pad, pad, pad, 0, 0],
                )
            )
        )
        padded = tf.function(
            lambda x=x, dout=dout, w_shape=w_shape, stride=stride, pad=pad: tf_kernels.filter_grad(
                x, dout, list(w_shape), stride, pad
            )
        )
        times = _median_ms({"explicit": explicit, "padded": padded}, repeats)
        rows.append({"input": shape, "filter": w_shape, "stride": stride, "pad": pad, **times})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    from tfhybrid.runtime import tune_for_training

    tune_for_training()
    print("| call | ms |\n|---|--:|")
    for name, ms in calling(args.repeats * 3).items():
        print(f"| {name} | {ms:.3f} |")
    print("\n| model | batch | call | default executor | single-threaded | XLA |")
    print("|---|--:|---|--:|--:|--:|")
    rows = executors(args.repeats)
    for key in dict.fromkeys((r["model"], r["batch"], r["call"]) for r in rows):
        ms = {r["how"]: r["ms"] for r in rows if (r["model"], r["batch"], r["call"]) == key}
        print(
            f"| {key[0]} | {key[1]} | {key[2]} | {ms['default']:.3f} "
            f"| {ms['single-threaded']:.3f} | {ms['XLA']:.3f} |"
        )
    print("\n| input | filter | stride | pad | explicit paddings ms | pre-padded ms |")
    print("|---|---|--:|--:|--:|--:|")
    for r in padding(args.repeats):
        print(
            f"| {list(r['input'])} | {list(r['filter'])} | {r['stride']} | {r['pad']} "
            f"| {r['explicit']:.2f} | {r['padded']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
