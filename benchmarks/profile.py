"""Where the hybrid training step's time goes, part by part, against TensorFlow alone.

    python -m benchmarks.profile seed-cnn --batch 100 --steps 60

Times, interleaved in rounds (so load from other processes hits every part alike):

- the hybrid step's parts: the compiled forward call (with the caches built from its
  tensors), the loss and its gradient, each layer's backward (an average pool merged
  with the sigmoid below it counts as one), the SGD update;
- TensorFlow alone, on the same batch and weights: the forward as one ``tf.function``
  (``net.reference_forward``), each convolution's backward call as the network chose it
  (dw, and dx where needed), and the whole autodiff step.

The sum of the hybrid parts is the hybrid step. Any hybrid step runs its compiled
forward and each convolution's backward call in TensorFlow. Their sum, each timed as
the step makes it, against the autodiff step (the "TF floor" line) is the lowest ratio
to autodiff the hybrid step can reach on this machine, were its NumPy part free.
Figures only.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks.formulations import conv_layers


def profile(model: str, batch: int, steps: int, warmup: int = 5, seed: int = 0) -> dict:
    from benchmarks.steps import make_step, random_batch
    from benchmarks.timing import summarise
    from tfhybrid._tf import tf
    from tfhybrid.catalog import TRAINING_DEFAULTS, build_model
    from tfhybrid.fast.conv import backward_fn
    from tfhybrid.ops.losses import sigmoid_cross_entropy, softmax_cross_entropy
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.runtime import tune_for_training

    tune_for_training()
    net = build_model(model, seed=seed, dtype=np.float32)
    x, y = random_batch(net, batch, seed)
    optimizer = build_optimizer("sgd", TRAINING_DEFAULTS[model].lr)
    parts: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        parts.setdefault(name, []).append(seconds)

    def hybrid_step(record: bool) -> None:
        start = time.perf_counter()
        xs = net._check_input(x)
        logits, caches = net._forward(xs)
        t_forward = time.perf_counter()
        if net.loss == "sigmoid_cross_entropy":
            _, dlogits = sigmoid_cross_entropy(logits, y)
            softmax_cross_entropy(logits, y)  # the printed cost, as the step computes it
        else:
            _, dlogits = softmax_cross_entropy(logits, y)
        dout = dlogits.astype(net.dtype, copy=False)
        t_loss = time.perf_counter()
        timings = [("forward call + caches", t_forward - start), ("loss", t_loss - t_forward)]
        grads, index = {}, len(net.layers) - 1
        while index >= net.first:
            layer, begin = net.layers[index], time.perf_counter()
            through = getattr(layer, "backward_through", None)
            merged = None
            if through is not None and index - 1 > net.first:
                merged = through(net.layers[index - 1], dout, caches[index], caches[index - 1])
            if merged is not None:
                dout, name, index = merged, f"{net.names[index]}+{net.names[index - 1]}", index - 2
            else:
                dout, local = layer.backward(dout, caches[index], index > net.first)
                grads.update({net.param_keys[index][k]: v for k, v in local.items()})
                name, index = net.names[index], index - 1
            timings.append((f"backward {name}", time.perf_counter() - begin))
        begin = time.perf_counter()
        optimizer.update(net.params, grads)
        timings.append(("SGD update", time.perf_counter() - begin))
        timings.append(("hybrid step (sum)", time.perf_counter() - start))
        if record:
            for name, seconds in timings:
                add(name, seconds)

    variables = {k: tf.constant(v) for k, v in net.params.items()}
    tx, ty = tf.constant(x), tf.constant(y)
    forward_only = tf.function(lambda a, b: net.reference_forward(variables, a, b)[0])
    flat = net._flat_tensor()

    inputs = [tf.zeros((batch, *run.input_shape), net.dtype) for run in net.runs]

    def compiled_forward():
        """The step's own compiled forward calls (what the hybrid forward runs in
        TensorFlow), their results taken as NumPy as the step does."""
        for run, h in zip(net.runs, inputs, strict=True):
            kept, out = run.training(h, flat)
            [np.asarray(t) for t in (*kept, out)]

    convs = []
    for i, layer in enumerate(net.layers):
        if hasattr(layer, "plan"):
            shape, w = layer.input_shape, net.layer_params(i)["w"]
            ho, wo, f = layer.output_shape_
            fn = backward_fn(
                np.float32,
                shape,
                w.shape,
                layer.stride,
                layer.padding,
                i > net.first,
                False,
                layer.plan,
                batch,
            )
            args = (
                tf.constant(np.random.default_rng(i).random((batch, *shape), np.float32)),
                tf.constant(
                    np.random.default_rng(i).standard_normal((batch, ho, wo, f), np.float32)
                ),
                tf.constant(w),
            )
            convs.append((f"TF alone: {net.names[i]} backward call", fn, args))
    autodiff = make_step(model, "autodiff", batch, seed)

    def tensorflow_alone(record: bool) -> None:
        for name, call in [
            ("TF alone: forward (tf.function)", lambda: float(forward_only(tx, ty))),
            ("TF alone: the step's compiled forward", compiled_forward),
            *[(n, (lambda f=f, a=a: [np.asarray(t) for t in f(*a)])) for n, f, a in convs],
            ("TF alone: autodiff step", autodiff),
        ]:
            begin = time.perf_counter()
            call()
            if record:
                add(name, time.perf_counter() - begin)

    for _ in range(warmup):
        hybrid_step(False)
        tensorflow_alone(False)
    for _ in range(steps):
        hybrid_step(True)
        tensorflow_alone(True)
    summary = {name: summarise(values) for name, values in parts.items()}
    tf_parts = ["TF alone: the step's compiled forward"] + [
        name for name in summary if name.startswith("TF alone: ") and "backward call" in name
    ]
    floor = sum(summary[name]["median_ms"] for name in tf_parts)
    autodiff_ms = summary["TF alone: autodiff step"]["median_ms"]
    return {
        # What any hybrid step must run in TensorFlow (its forward and each convolution's
        # backward call), against the whole autodiff step: the hybrid step's ratio to
        # autodiff cannot go below this on this machine, with its NumPy part free.
        "tensorflow_floor": {"ms": floor, "x_autodiff": floor / autodiff_ms},
        "model": model,
        "batch": batch,
        "steps": steps,
        "plans": {name: layer.plan.describe() for _, name, layer in conv_layers(net)},
        "parts": {
            name: {k: v for k, v in s.items() if k != "times_ms"} for name, s in summary.items()
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="seed-cnn")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    report = profile(args.model, args.batch, args.steps)
    print(f"{report['model']} at batch {report['batch']}, median of {report['steps']} steps:")
    for name, plan in report["plans"].items():
        print(f"  {name}: {plan}")
    for name, row in report["parts"].items():
        spread = f"{row['p10_ms']:.3f}-{row['p90_ms']:.3f}"
        print(f"  {name:<40} {row['median_ms']:8.3f} ms  (p10-p90 {spread})")
    floor = report["tensorflow_floor"]
    print(
        f"  {'TF floor: forward + convolution calls':<40} {floor['ms']:8.3f} ms"
        f"  ({floor['x_autodiff']:.2f} x the autodiff step)"
    )
    hybrid = report["parts"]["hybrid step (sum)"]["median_ms"]
    autodiff = report["parts"]["TF alone: autodiff step"]["median_ms"]
    print(f"  {'hybrid step / autodiff step':<40} {hybrid / autodiff:8.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
