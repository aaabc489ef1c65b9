"""Seconds per epoch of the article's network: the Keras bridge against Keras and tfhybrid.

    python scripts/benchmark.py --keras                    # 55,000 images per epoch, 3 epochs
    python -m benchmarks.keras_bridge --images 11000 --epochs 9 --data-dir /path/to/mnist

The ways to train the same network (seed-cnn, SGD at 0.1, batch 100, its
sigmoid cross-entropy), each from the same initial weights on the same images (the first
``images`` MNIST training images with ``--data-dir`` or ``$TFHYBRID_DATA_DIR``, else
random ones):

- ``bridge``: ``tfhybrid.keras.to_keras`` trained by ``model.fit``: the layers' hand-written
  backward passes inside Keras (one ``tf.numpy_function`` per layer);
- ``keras``: the same network in Keras's own layers (Conv2D, sigmoid, AveragePooling2D,
  Flatten, Dense) trained by ``model.fit``: TensorFlow's autodiff;
- ``tfhybrid``: tfhybrid's own loop (``tfhybrid.training.train_epoch``);
- ``bridge-bare``, with ``--bare``: the bridge with its own per-call settings (the BLAS
  limit and the reuse of result buffers, docs/keras.md) switched off: what they buy.

Each method runs in its own fresh Python process, set up as its users run it: ``bridge``
(and ``bridge-bare``) and ``keras`` in a plain Keras process, with none of tfhybrid's
process settings (the bridge limits NumPy's BLAS threads around its own NumPy calls
alone, see ``tfhybrid.runtime.one_blas_thread``); ``tfhybrid`` with
``tfhybrid.runtime.tune_for_training()``, which its training loop applies to its process.
Each process reports its BLAS thread limit at the start and after every epoch, so the
table shows that the bridge left its process's setting as it was.

Every method runs one epoch in turn, ``epochs`` rounds, the processes waiting for their
turn; each method's first epoch (tracing, warm-up) is reported apart, the median of the
others is its time per epoch and their minimum its best (on a shared machine, the epoch
least disturbed by other work). Interleaving means load from other processes hits every
method alike. "CPU ms/step" is the process's CPU time (all its threads) per step, median
over the same epochs: the work done, which other processes' load changes less than the
wall time. The 1-minute load average is sampled after every epoch (the running method
itself adds about one to two). Figures only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ("bridge", "keras", "tfhybrid")
BARE = "bridge-bare"  # with --bare: the bridge with its own per-call settings switched off
TRAIN_IMAGES = 55_000
LR = 0.1
REPO = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "TFHYBRID_DATA_DIR"

# What each method's process has applied: what its users' processes have.
PROCESS_SETTINGS = {
    "bridge": "plain Keras process: no tfhybrid process settings",
    "keras": "plain Keras process: no tfhybrid process settings",
    "tfhybrid": "tune_for_training(), as tfhybrid's training loop applies it",
    BARE: "plain Keras process; the bridge's per-call BLAS limit and buffer reuse off",
}


def random_data(images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``images`` random float32 images [N,28,28,1] in [0, 1) and one-hot labels [N,10]."""
    rng = np.random.default_rng(seed)
    x = rng.random((images, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, images)]
    return x, y


def mnist_data(data_dir: str, images: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``images`` MNIST training images (float32 [N,28,28,1]) and one-hot labels."""
    from tfhybrid.data import load_mnist

    splits = load_mnist(data_dir, images, notice=lambda m: print(m, file=sys.stderr))
    x, labels = splits.x_train[:images], splits.y_train[:images]
    if len(x) < images:
        raise ValueError(f"{data_dir} holds {len(x)} training images, fewer than {images}")
    return np.ascontiguousarray(x, np.float32), np.eye(10, dtype=np.float32)[labels]


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


def epoch_function(method: str, x, y, batch: int, seed: int):
    """A no-argument callable that trains one epoch of ``method`` over x, y."""
    import keras

    import tfhybrid
    from tfhybrid.keras import SigmoidCrossEntropy, to_keras

    def fitting(model):
        model.compile(keras.optimizers.SGD(LR), SigmoidCrossEntropy())
        return lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    # The bridge keeps the article's db1 rule (a division), the Keras twin the true one.
    net = tfhybrid.build_model("seed-cnn", seed=seed)
    if method == BARE:  # what the bridge's own per-call settings buy
        from tfhybrid import keras as bridge
        from tfhybrid import runtime

        runtime._blas = False  # one_blas_thread then limits nothing
        bridge.HANDOVER_BYTES = sys.maxsize  # every result goes over as it is
        return fitting(to_keras(net))
    if method == "bridge":
        return fitting(to_keras(net))
    if method == "keras":
        return fitting(keras_twin(net))
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import train_epoch

    optimizer = build_optimizer("sgd", LR)
    counter = iter(range(1, 10**9))
    return lambda: train_epoch(
        net, optimizer, x, y, seed=seed, epoch=next(counter), batch_size=batch
    )


def blas_threads() -> list[int]:
    """The thread limit of each BLAS library loaded in this process (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    return [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]


def worker(method: str, images: int, batch: int, seed: int, data_dir: str | None) -> int:
    """One method's process: set up as its users run it, then one epoch per "run" line on
    stdin, each answered by one JSON line on stdout."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr  # TensorFlow's and Keras's prints stay off the replies
    from benchmarks.machine import machine_info

    settings = None
    if method == "tfhybrid":
        from tfhybrid.runtime import tune_for_training

        settings = tune_for_training()
    x, y = mnist_data(data_dir, images) if data_dir else random_data(images, seed)
    run = epoch_function(method, x, y, batch, seed)
    ready = {"machine": machine_info(), "settings": settings, "blas_threads": blas_threads()}
    replies.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start, cpu = time.perf_counter(), time.process_time()
        run()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        reply = {"seconds": seconds, "cpu_seconds": cpu, "blas_threads": blas_threads()}
        replies.write(json.dumps(reply) + "\n")
    return 0


def _start(method: str, images: int, batch: int, seed: int, data_dir: str | None):
    command = [sys.executable, "-m", "benchmarks.keras_bridge", "--worker", method]
    command += ["--images", str(images), "--batch", str(batch), "--seed", str(seed)]
    command += ["--data-dir", data_dir] if data_dir else []
    return subprocess.Popen(
        command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )


def _reply(process, method: str) -> dict:
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the {method} process ended (exit status {process.wait()})")
    return json.loads(line)


def benchmark_keras(
    images: int = TRAIN_IMAGES,
    epochs: int = 3,
    batch: int = 100,
    seed: int = 0,
    log=print,
    data_dir: str | None = None,
    bare: bool = False,
) -> dict:
    """Per-epoch seconds of each method (first epoch apart), and the ratios. Each method
    runs in its own process (see the module's docstring); ``data_dir``: MNIST's folder
    (default ``$TFHYBRID_DATA_DIR``; neither: random images). ``bare``: also the bridge
    with its own per-call settings off (``bridge-bare``), to show what they buy."""
    methods = (*METHODS, BARE) if bare else METHODS
    from benchmarks.machine import load_average

    if epochs < 2:
        raise ValueError(f"epochs must be >= 2 (the first one is warm-up), got {epochs}")
    if not 1 <= batch <= images:
        raise ValueError(f"batch must be in [1, images={images}], got {batch}")
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    load_before = load_average()
    processes = {m: _start(m, images, batch, seed, data_dir) for m in methods}
    try:
        ready = {m: _reply(p, m) for m, p in processes.items()}
        times = {m: [] for m in methods}
        cpu = {m: [] for m in methods}
        threads = {m: [ready[m]["blas_threads"]] for m in methods}
        loads = []
        for epoch in range(1, epochs + 1):
            for method in methods:
                processes[method].stdin.write("run\n")
                reply = _reply(processes[method], method)
                times[method].append(reply["seconds"])
                cpu[method].append(reply["cpu_seconds"])
                threads[method].append(reply["blas_threads"])
                loads.append(load_average())
                log(f"epoch {epoch}/{epochs}: {method} {times[method][-1]:.2f} s")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.stdin.close()  # its loop ends; it exits
        for process in processes.values():
            process.wait()
    report = {
        "machine": {**ready["bridge"]["machine"], "load_average": load_before},
        "runtime_settings": {m: ready[m]["settings"] for m in methods},
        "settings": {
            "images": images,
            "epochs": epochs,
            "batch": batch,
            "seed": seed,
            "lr": LR,
            "data": f"MNIST from {data_dir}" if data_dir else "random images",
        },
    }
    steps = math.ceil(images / batch)
    rows = []
    for method in methods:
        median = statistics.median(times[method][1:])
        rows.append(
            {
                "method": method,
                "process": PROCESS_SETTINGS[method],
                "blas_threads_start": threads[method][0],
                "blas_threads_after_epochs": sorted({t for ts in threads[method][1:] for t in ts}),
                "first_epoch_s": times[method][0],
                "seconds_per_epoch": median,
                "best_seconds_per_epoch": min(times[method][1:]),
                "ms_per_step": median / steps * 1e3,
                "cpu_ms_per_step": statistics.median(cpu[method][1:]) / steps * 1e3,
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
    one_minute = [load[0] for load in loads if load]
    report["machine"]["load_1min_during"] = (
        [min(one_minute), statistics.median(one_minute), max(one_minute)] if one_minute else None
    )
    return report


DESCRIPTION = {
    "bridge": "tfhybrid.keras.to_keras + model.fit (hand-written backward)",
    "keras": "Keras layers + model.fit (autodiff)",
    "tfhybrid": "tfhybrid's own loop (train_epoch)",
    BARE: "the bridge as above, its per-call settings off",
}


def format_keras(report: dict) -> str:
    """The report as text: what was run and on what, then one table row per method."""
    s = report["settings"]
    m = report["machine"]
    during = m.get("load_1min_during")
    lines = [
        f"seed-cnn, one epoch of {s['images']:,} images ({s['data']}) at batch {s['batch']} "
        f"(SGD {s['lr']}), {s['epochs']} epochs per method interleaved, the first apart",
        "each method in its own fresh process, as its users run it: bridge (bridge-bare) and "
        "keras in a plain Keras process (no tfhybrid process settings), tfhybrid with "
        "tune_for_training()",
        f"machine: {m['cpus']} CPUs, {m['processor']}, Python {m['python']}, TensorFlow "
        f"{m['tensorflow']}, NumPy {m['numpy']}; load average {m['load_average']} before, "
        f"{m['load_average_after']} after"
        + (f"; 1-min load during the epochs min/median/max {during}" if during else ""),
        "",
        "| method | what runs | process | BLAS threads (start → after each epoch) | s/epoch "
        "| ms/step | × keras | × tfhybrid | best s/epoch | best × keras | CPU ms/step "
        "| first epoch s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        after = ", ".join(map(str, row["blas_threads_after_epochs"]))
        start = ", ".join(map(str, row["blas_threads_start"]))
        lines.append(
            f"| {row['method']} | {DESCRIPTION[row['method']]} | {row['process']} "
            f"| {start} → {after} | {row['seconds_per_epoch']:.2f} "
            f"| {row['ms_per_step']:.2f} | {row['x_keras']:.2f} | {row['x_tfhybrid']:.2f} "
            f"| {row['best_seconds_per_epoch']:.2f} | {row['best_x_keras']:.2f} "
            f"| {row['cpu_ms_per_step']:.2f} | {row['first_epoch_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line: the table on stdout (and the report as JSON with --json)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keras_bridge", description=__doc__)
    parser.add_argument("--images", type=int, default=TRAIN_IMAGES, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per method (>= 2)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir",
        help=f"MNIST's folder: its first --images training images (default ${DATA_DIR_ENV}; "
        "neither: random images)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument(
        "--bare",
        action="store_true",
        help=f"also time {BARE}: the bridge with its per-call BLAS limit and buffer reuse "
        "off (what they buy)",
    )
    parser.add_argument("--worker", choices=(*METHODS, BARE), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.images, args.batch, args.seed, args.data_dir)
    try:
        report = benchmark_keras(
            args.images,
            args.epochs,
            args.batch,
            args.seed,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            data_dir=args.data_dir,
            bare=args.bare,
        )
    except ValueError as err:
        parser.error(str(err))
    report["command"] = " ".join(["python", "-m", "benchmarks.keras_bridge", *sys.argv[1:]])
    print(format_keras(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
