"""Seconds per epoch of the article's network: the Keras bridge against Keras and tfhybrid.

    python scripts/benchmark.py --keras                    # 55,000 images per epoch, 3 epochs
    python -m benchmarks.keras_bridge --images 5000 --epochs 3

Three ways to train the same network (seed-cnn, SGD at 0.1, batch 100, its
sigmoid cross-entropy), each from the same initial weights on the same random images:

- ``bridge``: ``tfhybrid.keras.to_keras`` trained by ``model.fit``: the layers' hand-written
  backward passes inside Keras (one ``tf.numpy_function`` per layer);
- ``keras``: the same network in Keras's own layers (Conv2D, sigmoid, AveragePooling2D,
  Flatten, Dense) trained by ``model.fit``: TensorFlow's autodiff;
- ``tfhybrid``: tfhybrid's own loop (``tfhybrid.training.train_epoch``).

Every method runs one epoch in turn, ``epochs`` rounds; each method's first epoch
(tracing, warm-up) is reported apart, the median of the others is its time per epoch and
their minimum its best (on a shared machine, the epoch least disturbed by other work).
Interleaving means load from other processes hits all three alike. Figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

METHODS = ("bridge", "keras", "tfhybrid")
TRAIN_IMAGES = 55_000
LR = 0.1


def random_data(images: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random((images, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, images)]
    return x, y


def keras_twin(net):
    """The article's network in Keras's own layers, with ``net``'s weights."""
    import keras

    params = net.params
    model = keras.Sequential(
        [
            keras.Input(shape=net.input_shape),
            keras.layers.Conv2D(20, 9, name="z1"),
            keras.layers.Activation("sigmoid", name="s1"),
            keras.layers.AveragePooling2D(2, name="L1"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(10, name="z2"),
        ],
        name="keras_autodiff",
    )
    model.set_weights([params["w1"], params["b1"].ravel(), params["w2"], params["b2"].ravel()])
    return model


def epoch_functions(x, y, batch: int, seed: int) -> dict:
    """method -> a no-argument callable that trains one epoch over x, y."""
    import keras

    import tfhybrid
    from tfhybrid.keras import SigmoidCrossEntropy, to_keras
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import train_epoch

    def fitting(model):
        model.compile(keras.optimizers.SGD(LR), SigmoidCrossEntropy())
        return lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    # The bridge keeps the article's db1 rule (a division), the Keras twin the true one.
    net = tfhybrid.build_model("seed-cnn", seed=seed)
    bridge = fitting(to_keras(net))
    autodiff = fitting(keras_twin(net))
    own = tfhybrid.build_model("seed-cnn", seed=seed)
    optimizer = build_optimizer("sgd", LR)
    counter = iter(range(1, 10**9))

    def loop():
        train_epoch(own, optimizer, x, y, seed=seed, epoch=next(counter), batch_size=batch)

    return {"bridge": bridge, "keras": autodiff, "tfhybrid": loop}


def benchmark_keras(
    images: int = TRAIN_IMAGES, epochs: int = 3, batch: int = 100, seed: int = 0, log=print
) -> dict:
    """Per-epoch seconds of each method (first epoch apart), and the ratios."""
    from benchmarks.machine import load_average, machine_info
    from tfhybrid.runtime import tune_for_training

    if epochs < 2:
        raise ValueError(f"epochs must be >= 2 (the first one is warm-up), got {epochs}")
    if not 1 <= batch <= images:
        raise ValueError(f"batch must be in [1, images={images}], got {batch}")
    report = {
        "machine": machine_info(),
        "runtime_settings": tune_for_training(),
        "settings": {"images": images, "epochs": epochs, "batch": batch, "seed": seed, "lr": LR},
    }
    x, y = random_data(images, seed)
    functions = epoch_functions(x, y, batch, seed)
    times = {method: [] for method in METHODS}
    for epoch in range(1, epochs + 1):
        for method in METHODS:
            start = time.perf_counter()
            functions[method]()
            times[method].append(time.perf_counter() - start)
            log(f"epoch {epoch}/{epochs}: {method} {times[method][-1]:.2f} s")
    steps = images // batch
    rows = []
    for method in METHODS:
        median = statistics.median(times[method][1:])
        rows.append(
            {
                "method": method,
                "first_epoch_s": times[method][0],
                "seconds_per_epoch": median,
                "best_seconds_per_epoch": min(times[method][1:]),
                "ms_per_step": median / steps * 1e3,
                "epochs_s": [round(t, 4) for t in times[method]],
            }
        )
    by = {row["method"]: row["seconds_per_epoch"] for row in rows}
    best = {row["method"]: row["best_seconds_per_epoch"] for row in rows}
    for row in rows:
        row["x_keras"] = row["seconds_per_epoch"] / by["keras"]
        row["x_tfhybrid"] = row["seconds_per_epoch"] / by["tfhybrid"]
        row["best_x_keras"] = row["best_seconds_per_epoch"] / best["keras"]
    report["results"] = rows
    report["machine"]["load_average_after"] = load_average()
    return report


DESCRIPTION = {
    "bridge": "tfhybrid.keras.to_keras + model.fit (hand-written backward)",
    "keras": "Keras layers + model.fit (autodiff)",
    "tfhybrid": "tfhybrid's own loop (train_epoch)",
}


def format_keras(report: dict) -> str:
    s = report["settings"]
    m = report["machine"]
    lines = [
        f"seed-cnn, one epoch of {s['images']:,} random images at batch {s['batch']} "
        f"(SGD {s['lr']}), {s['epochs']} epochs per method interleaved, the first apart",
        f"machine: {m['cpus']} CPUs, {m['processor']}, Python {m['python']}, TensorFlow "
        f"{m['tensorflow']}, NumPy {m['numpy']}; load average {m['load_average']} before, "
        f"{m['load_average_after']} after",
        "",
        "| method | what runs | s/epoch | ms/step | × keras | × tfhybrid | best s/epoch "
        "| best × keras | first epoch s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        lines.append(
            f"| {row['method']} | {DESCRIPTION[row['method']]} | {row['seconds_per_epoch']:.2f} "
            f"| {row['ms_per_step']:.2f} | {row['x_keras']:.2f} | {row['x_tfhybrid']:.2f} "
            f"| {row['best_seconds_per_epoch']:.2f} | {row['best_x_keras']:.2f} "
            f"| {row['first_epoch_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keras_bridge", description=__doc__)
    parser.add_argument("--images", type=int, default=TRAIN_IMAGES, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per method (>= 2)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        report = benchmark_keras(
            args.images,
            args.epochs,
            args.batch,
            args.seed,
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except ValueError as err:
        parser.error(str(err))
    print(format_keras(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
