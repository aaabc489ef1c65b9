"""Step-time benchmark: the hand-written hybrid step against TensorFlow's own autodiff.

Measured side by side on one machine, one batch shape and one network (the source
article's CNN), after warm-up:

- ``per-sample``: the hybrid step with ``--dw-mode per-sample`` (each sample's own dw1);
- ``hybrid``: the hybrid step with ``--dw-mode batched`` (what training uses by default);
- ``autodiff``: ``tf.GradientTape`` of the same loss inside one ``tf.function``, SGD included;
- ``keras``: the same network as a Keras model, ``train_on_batch``;
- the floor: the step's floating-point operations / the matrix-multiply rate of this machine.

Step times of the four methods are taken in one process, interleaved in short rounds, so
load from other processes hits them alike and their ratios hold on a busy machine. Memory
is measured per method and batch size in a fresh subprocess (``peak RSS``). Every figure
is a measurement of this run; nothing is estimated except the floor, which says how.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("per-sample", "hybrid", "autodiff", "keras")
STEPS_PER_EPOCH = 550  # 55,000 training images / batch 100
LR = 0.1
SEED = 0
IMAGE = (28, 28, 1)
CONV_POSITIONS = 20 * 20
FILTER_TAPS = 9 * 9
FILTERS = 20
DENSE_IN, DENSE_OUT = 2000, 10
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- work counts
def step_flops(batch: int) -> dict[str, int]:
    """Floating-point operations of one training step, multiply-add counted as 2.

    Counted (``matmul`` total, the floor's numerator): the convolution forward, the
    convolution giving dw1 (the same multiply-adds as the forward, with dz1 in place of
    w1), the dense forward, and the dense backward's two products (dL1 = dz2 w2ᵀ and
    dw2 = L1ᵀ dz2). No input gradient of the first convolution: x needs none.

    Listed but left out of the floor (``elementwise``): the sigmoid, pool, their
    backwards, the losses and the SGD update, about 25 operations per conv activation
    (counted as one each, a transcendental as one). They are memory-bound, under 3 % of
    the matmul work, and a matmul rate says nothing about them; leaving them out makes
    the floor lower, so the ratio to it harder to meet, not easier.
    """
    conv_macs = batch * CONV_POSITIONS * FILTER_TAPS * FILTERS
    dense_macs = batch * DENSE_IN * DENSE_OUT
    counts = {
        "conv_forward": 2 * conv_macs,
        "conv_dw1": 2 * conv_macs,
        "dense_forward": 2 * dense_macs,
        "dense_backward": 2 * 2 * dense_macs,
    }
    counts["matmul"] = sum(counts.values())
    activations = batch * CONV_POSITIONS * FILTERS
    counts["elementwise"] = 25 * activations + 3 * (DENSE_IN * DENSE_OUT + FILTER_TAPS * FILTERS)
    return counts


def matmul_rate(size: int = 1024, repeats: int = 30) -> dict[str, float]:
    """Float32 GFLOP/s of a size x size matrix product, NumPy and TensorFlow; median of repeats.

    The floor uses the faster of the two: the best this machine multiplies matrices.
    """
    from tfhybrid._tf import tf

    rng = np.random.default_rng(SEED)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    tf_matmul = tf.function(lambda: tf.matmul(ta, tb))
    flops = 2 * size**3
    rates = {}
    for name, fn in (("numpy", lambda: a @ b), ("tensorflow", lambda: tf_matmul().numpy())):
        times = time_calls(fn, repeats, warmup=3)
        rates[name] = flops / float(np.median(times)) / 1e9
    rates["best"] = max(rates["numpy"], rates["tensorflow"])
    return rates


# ---------------------------------------------------------------------------------- steps
def random_batch(batch: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Random images in [0, 1) [batch,28,28,1] and one-hot labels [batch,10], float32."""
    from tfhybrid.data import one_hot

    rng = np.random.default_rng(seed)
    x = rng.random((batch, *IMAGE), dtype=np.float32)
    return x, one_hot(rng.integers(0, 10, batch))


def sgd_step(model, optimizer, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """What the training loop does per batch: ``loss_and_gradients``, then the optimizer's
    update of the params in place. Returns (loss, cost) from before the update."""
    result = model.loss_and_gradients(x, y)
    optimizer.update(model.params, result["grads"])
    return result["loss"], result["cost"]


def hybrid_step(dw_mode: str, x: np.ndarray, y: np.ndarray):
    """The training loop's step (:func:`sgd_step`) on the article's network."""
    from tfhybrid.models import SeedCNN
    from tfhybrid.optimizers import SGD

    model, optimizer = SeedCNN(seed=SEED, dw_mode=dw_mode), SGD(LR)
    return lambda: sgd_step(model, optimizer, x, y)[0]


def autodiff_step(x: np.ndarray, y: np.ndarray):
    """tf.GradientTape of the same loss, SGD update and cost, all in one tf.function.

    Its inputs are handed over as tensors once, so no conversion is timed against it.
    """
    from tfhybrid._tf import tf
    from tfhybrid.models.seed_cnn import init_params

    variables = [tf.Variable(v) for v in init_params(SEED).values()]
    w1, b1, w2, b2 = variables

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            z1 = tf.nn.conv2d(x, w1, strides=1, padding="VALID") + b1
            pooled = tf.nn.avg_pool2d(tf.sigmoid(z1), ksize=2, strides=2, padding="VALID")
            z2 = tf.reshape(pooled, [tf.shape(x)[0], -1]) @ w2 + b2
            per_sample = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(y, z2), axis=1)
            loss = tf.reduce_mean(per_sample)
        grads = tape.gradient(loss, variables)
        for variable, grad in zip(variables, grads, strict=True):
            variable.assign_sub(LR * grad)
        cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, z2))
        return loss, cost

    tx, ty = tf.constant(x), tf.constant(y)
    return lambda: float(step(tx, ty)[0])


def sum_of_sigmoid_cross_entropy(y, z):
    """The article's loss per sample: the sigmoid cross-entropy summed over the 10 outputs."""
    from tfhybrid._tf import tf

    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(y, z), axis=-1)


def keras_step(x: np.ndarray, y: np.ndarray):
    """The same network in Keras (its default compile settings), ``train_on_batch``."""
    from tfhybrid._tf import tf
    from tfhybrid.models.seed_cnn import init_params

    keras = tf.keras
    model = keras.Sequential([
        keras.Input(IMAGE),
        keras.layers.Conv2D(FILTERS, 9, activation="sigmoid"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(DENSE_OUT),
    ])
    params = init_params(SEED)
    model.set_weights([params["w1"], params["b1"].ravel(), params["w2"], params["b2"].ravel()])
    model.compile(optimizer=keras.optimizers.SGD(LR), loss=sum_of_sigmoid_cross_entropy)
    return lambda: float(model.train_on_batch(x, y))


def make_step(method: str, batch: int):
    """A no-argument callable running one full training step of ``method``."""
    x, y = random_batch(batch)
    if method == "per-sample":
        return hybrid_step("per-sample", x, y)
    if method == "hybrid":
        return hybrid_step("batched", x, y)
    if method == "autodiff":
        return autodiff_step(x, y)
    if method == "keras":
        return keras_step(x, y)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


# ------------------------------------------------------------------------------- timing
def time_calls(fn, repeats: int, warmup: int = 0) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved_times(steps: dict, repeats: int, warmup: int, chunk: int = 10) -> dict:
    """Time every step function in turn, ``chunk`` steps at a time, until each has
    ``repeats`` timed steps; returns {name: [seconds per step]}."""
    for fn in steps.values():
        time_calls(fn, warmup)
    times = {name: [] for name in steps}
    while any(len(t) < repeats for t in times.values()):
        for name, fn in steps.items():
            times[name] += time_calls(fn, min(chunk, repeats - len(times[name])))
    return times


def summarise(times: list[float]) -> dict:
    ms = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)), "steps": len(ms)}


def status_mb(field: str, pid: int | str = "self") -> float | None:
    """A memory field of /proc/PID/status (VmHWM: peak RSS, VmRSS: current), in MB."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    VmHWM where Linux has it: ``ru_maxrss`` of a process started by another counts the
    starter's memory too (the kernel carries it over at exec), which would charge the
    benchmark's own footprint to every method it launches.
    """
    peak = status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS


def current_rss_mb() -> float:
    rss = status_mb("VmRSS")
    return float("nan") if rss is None else rss


def worker(method: str, batch: int, repeats: int, warmup: int) -> dict:
    """Run in a fresh process: one method at one batch size, its step time and memory."""
    from tfhybrid._tf import tf  # noqa: F401  (imported before the baseline is read)
    from tfhybrid.runtime import tune_for_training

    tune_for_training()
    baseline = current_rss_mb()
    step = make_step(method, batch)
    times = time_calls(step, repeats, warmup)
    return {"method": method, "batch": batch, **summarise(times),
            "rss_before_mb": baseline, "peak_rss_mb": peak_rss_mb()}


def run_subprocess(args: list[str], stdout, timeout: float | None = None) -> tuple[int, float]:
    """Run ``args``; return (exit code, the child's own peak RSS in MB).

    The peak is the child's VmHWM, read every 20 ms while it runs (it only grows); where
    /proc is missing, ``ru_maxrss`` from wait4, which may include this process's memory.
    """
    proc = subprocess.Popen(args, stdout=stdout, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = None if timeout is None else time.monotonic() + timeout
    watched = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        watched = status_mb("VmHWM", proc.pid) or watched
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if watched is not None:
        return proc.returncode, watched
    return proc.returncode, usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def run_worker(method: str, batch: int, repeats: int, warmup: int) -> dict:
    """:func:`worker` in a fresh Python process, so its memory is its own."""
    args = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--worker", method,
            "--batch", str(batch), "--steps", str(repeats), "--warmup", str(warmup)]
    with tempfile.TemporaryFile("w+") as out:
        code, _ = run_subprocess(args, out, timeout=1800)
        out.seek(0)
        text = out.read()
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        return {"method": method, "batch": batch, "error": text.strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def full_run(data_dir: str, extra_args: list[str]) -> dict:
    """``scripts/train.py`` end to end (imports, data loading, 10 epochs, evaluation):
    its wall time, peak RSS and the metrics it wrote."""
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryFile("w+") as log:
        args = [sys.executable, str(REPO / "scripts" / "train.py"), "--data-dir", data_dir,
                "--out", out, *extra_args]
        start = time.perf_counter()
        code, peak = run_subprocess(args, log)
        wall = time.perf_counter() - start
        log.seek(0)
        text = log.read()
        metrics_path = Path(out) / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return {"command": " ".join(["python", "scripts/train.py", "--data-dir", data_dir,
                                 *extra_args]),
            "exit_code": code, "wall_seconds": wall, "peak_rss_mb": peak,
            "data_seconds": metrics.get("data_seconds"),
            "train_seconds": metrics.get("total_seconds"),
            "epoch_seconds": [row["seconds"] for row in metrics.get("epochs", [])],
            "test_accuracy": metrics.get("test_accuracy"),
            "log_tail": text.strip().splitlines()[-3:]}


# ------------------------------------------------------------------------------ the run
def machine_info() -> dict:
    from tfhybrid._tf import tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "numpy": np.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def benchmark(batch: int = 100, repeats: int = 60, warmup: int = 10,
              methods: tuple[str, ...] = METHODS, scaling: tuple[int, ...] = (100, 1000, 10000),
              data_dir: str | None = None, log=print) -> dict:
    """The whole benchmark; returns the dict written by ``--json``."""
    from tfhybrid.runtime import tune_for_training

    report = {"batch": batch, "machine": machine_info(), "lr": LR,
              "runtime_settings": tune_for_training()}  # as training applies them
    log(f"timing {', '.join(methods)} at batch {batch}: {repeats} steps each after "
        f"{warmup} warm-up steps, interleaved (load average {report['machine']['load_average']})")
    steps = {method: make_step(method, batch) for method in methods}
    rate_before = matmul_rate()
    times = interleaved_times(steps, repeats, warmup)
    rate_after = matmul_rate()
    del steps
    rate = max(rate_before["best"], rate_after["best"])
    flops = step_flops(batch)
    floor_ms = flops["matmul"] / (rate * 1e9) * 1e3
    report["flops"] = flops
    report["matmul_gflops"] = {"before": rate_before, "after": rate_after, "used": rate}
    report["floor_ms"] = floor_ms
    results = {method: summarise(t) for method, t in times.items()}
    reference = results.get("autodiff", {}).get("median_ms")
    for row in results.values():
        row["x_autodiff"] = row["median_ms"] / reference if reference else None
        row["x_floor"] = row["median_ms"] / floor_ms
        row["seconds_per_epoch"] = row["median_ms"] * STEPS_PER_EPOCH / 1e3
    report["methods"] = results
    report["scaling"] = scaling_table(scaling, log) if scaling else []
    log(f"peak memory of each method at batch {batch}, each in a fresh process")
    for method in methods:
        memory = memory_of(method, batch, report["scaling"])
        results[method]["peak_rss_mb"] = memory.get("peak_rss_mb")
        results[method]["rss_before_mb"] = memory.get("rss_before_mb")
    if data_dir is not None:
        log("full run: scripts/train.py, 10 epochs, data loading included")
        report["full_run"] = full_run(data_dir, [])
    report["machine"]["load_average_after"] = (list(os.getloadavg())
                                               if hasattr(os, "getloadavg") else None)
    return report


def scaling_steps(batch: int) -> int:
    """Timed steps per method in the scaling table: 50 up to batch 100, fewer above."""
    return 50 if batch <= 100 else 20 if batch <= 1000 else 5


def scaling_table(sizes: tuple[int, ...], log=print) -> list[dict]:
    """Hybrid and autodiff at each batch size: times interleaved in this process (so their
    ratio holds under load), memory from a fresh process per method and size."""
    rows = []
    for size in sizes:
        count = scaling_steps(size)
        log(f"scaling: hybrid and autodiff at batch {size}, {count} steps each, interleaved")
        steps = {method: make_step(method, size) for method in ("hybrid", "autodiff")}
        times = interleaved_times(steps, count, warmup=2, chunk=max(1, min(10, count // 5)))
        del steps
        for method, samples in times.items():
            log(f"scaling: peak memory of {method} at batch {size} (fresh process)")
            memory = run_worker(method, size, repeats=3, warmup=1)
            rows.append({"method": method, "batch": size, **summarise(samples),
                         "peak_rss_mb": memory.get("peak_rss_mb"),
                         "rss_before_mb": memory.get("rss_before_mb")})
    return rows


def memory_of(method: str, batch: int, scaling: list[dict]) -> dict:
    """Peak RSS of ``method`` at ``batch``: from the scaling table if it has it."""
    for row in scaling:
        if row["method"] == method and row["batch"] == batch and row.get("peak_rss_mb"):
            return row
    return run_worker(method, batch, repeats=10, warmup=3)


def format_report(report: dict) -> str:
    """The tables printed at the end of a run."""
    lines = [f"batch {report['batch']}; matmul rate {report['matmul_gflops']['used']:.0f} "
             f"GFLOP/s; step work {report['flops']['matmul'] / 1e6:.1f} MFLOP (matmul), "
             f"{report['flops']['elementwise'] / 1e6:.1f} MFLOP elementwise (not in floor)",
             "",
             f"| {'method':<10} | {'ms/step':>8} | {'p10-p90 ms':>13} | {'x autodiff':>10} | "
             f"{'x floor':>7} | {'s/epoch':>7} | {'peak RSS MB':>11} |",
             f"|{'-' * 12}|{'-' * 10}:|{'-' * 15}|{'-' * 11}:|{'-' * 8}:|{'-' * 8}:|"
             f"{'-' * 12}:|"]
    for method, row in report["methods"].items():
        rss = row.get("peak_rss_mb")
        lines.append(
            f"| {method:<10} | {row['median_ms']:>8.2f} | "
            f"{row['p10_ms']:>6.2f}-{row['p90_ms']:<6.2f} | "
            f"{row['x_autodiff']:>10.2f} | {row['x_floor']:>7.2f} | "
            f"{row['seconds_per_epoch']:>7.2f} | {rss if rss is None else round(rss):>11} |")
    floor = report["floor_ms"]
    autodiff = report["methods"].get("autodiff", {"median_ms": float("nan")})["median_ms"]
    lines.append(f"| {'floor':<10} | {floor:>8.2f} | {'':>13} | {floor / autodiff:>10.2f}"
                 f" | {1:>7.2f} | {floor * STEPS_PER_EPOCH / 1e3:>7.2f} | {'':>11} |")
    if report.get("scaling"):
        lines += ["", "| batch | method | ms/step | ms/sample | peak RSS MB | RSS growth MB |",
                  "|---:|---|---:|---:|---:|---:|"]
        for row in report["scaling"]:
            if row.get("peak_rss_mb") is None:
                lines.append(f"| {row['batch']} | {row['method']} | {row['median_ms']:.1f} | "
                             f"{row['median_ms'] / row['batch']:.3f} | failed | |")
                continue
            lines.append(
                f"| {row['batch']} | {row['method']} | {row['median_ms']:.1f} | "
                f"{row['median_ms'] / row['batch']:.3f} | {row['peak_rss_mb']:.0f} | "
                f"{row['peak_rss_mb'] - row['rss_before_mb']:.0f} |")
    run = report.get("full_run")
    if run:
        lines += ["", f"full run: `{run['command']}`: exit {run['exit_code']}, "
                      f"{run['wall_seconds']:.1f} s wall (data {run['data_seconds'] or 0:.1f} s), "
                      f"peak RSS {run['peak_rss_mb']:.0f} MB, test accuracy {run['test_accuracy']}"]
    return "\n".join(lines)
