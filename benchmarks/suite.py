"""The whole benchmark in order, returned as one dict (what ``--json`` writes).

1. step times of each network's methods, interleaved in one process;
2. optionally the batch-size scaling of hybrid and autodiff, interleaved likewise;
3. peak RSS of every (network, method, batch), each in a fresh process, after all the
   timing so their start-ups do not load the cores being timed;
4. optionally ``scripts/train.py`` end to end for each network.
"""

from __future__ import annotations

from benchmarks.formulations import plans, time_formulations
from benchmarks.full_run import full_run
from benchmarks.machine import load_average, machine_info
from benchmarks.memory import measure
from benchmarks.steps import NUMPY_CONV, PEERS, SEED, make_step
from benchmarks.timing import interleaved_times, summarise

TRAIN_IMAGES = 55_000  # MNIST training images (the other 5,000 are the validation set)
SCALING_METHODS = ("hybrid", "autodiff")


def steps_per_epoch(batch: int) -> int:
    """Whole batches in 55,000 images, as training counts them."""
    return max(TRAIN_IMAGES // batch, 1)


def scaling_steps(batch: int, steps: int) -> int:
    """Timed steps per method in the scaling table: up to 50 to batch 100, fewer above."""
    return min(steps, 50 if batch <= 100 else 20 if batch <= 1000 else 5)


def time_model(
    model: str, methods: tuple[str, ...], batch: int, steps: int, warmup: int, seed: int, log
) -> list[dict]:
    """One row per method: step-time summary, ratio to autodiff, seconds per epoch."""
    from tfhybrid.catalog import MODEL_OPTIONS, TRAINING_DEFAULTS, build_model

    layers = build_model(model).layers
    if any(layer.couples_batch or layer.random for layer in layers):
        # Batch norm couples the samples; dropout draws one mask per batch, which the
        # TensorFlow peer (a one-sample tape per image) cannot replay: nothing to compare.
        left = [m for m in methods if m.startswith("per-example")]
        if left:
            log(
                f"{model}: no per-example gradients (batch norm or dropout): "
                f"{', '.join(left)} left out"
            )
        methods = tuple(m for m in methods if m not in left)
    if NUMPY_CONV in methods and "conv" not in MODEL_OPTIONS[model]:
        log(f"{model}: no convolution, so no {NUMPY_CONV}")
        methods = tuple(m for m in methods if m != NUMPY_CONV)

    log(
        f"{model}: timing {', '.join(methods)} at batch {batch}, {steps} steps each after "
        f"{warmup} warm-up steps, interleaved (load average {load_average()})"
    )
    step_fns = {method: make_step(model, method, batch, seed) for method in methods}
    times = interleaved_times(step_fns, steps, warmup)
    del step_fns
    rows = {method: summarise(times[method]) for method in methods}

    def ratio(row: dict, method: str | None):
        return row["median_ms"] / rows[method]["median_ms"] if method in rows else None

    per_epoch = steps_per_epoch(batch)
    return [
        {
            "model": model,
            "method": method,
            "batch": batch,
            "lr": TRAINING_DEFAULTS[model].lr,
            "source_batch": TRAINING_DEFAULTS[model].batch_size,
            "source_train_limit": TRAINING_DEFAULTS[model].train_limit,
            **row,
            "x_autodiff": ratio(row, "autodiff"),
            "x_autodiff_xla": ratio(row, "autodiff-xla"),
            "peer": PEERS.get(method),
            "x_peer": ratio(row, PEERS.get(method)),
            "steps_per_epoch": per_epoch,
            "seconds_per_epoch": row["median_ms"] * per_epoch / 1e3,
            "peak_rss_mb": None,
            "rss_before_mb": None,
        }
        for method, row in rows.items()
    ]


def scaling_rows(
    model: str, sizes: tuple[int, ...], steps: int, warmup: int, memory: bool, seed: int, log
) -> list[dict]:
    """Hybrid and autodiff at each batch size: times interleaved in this process (so their
    ratio holds under load), memory from a fresh process per method and size."""
    rows = []
    for size in sizes:
        count = scaling_steps(size, steps)
        log(
            f"{model}: scaling, hybrid and autodiff at batch {size}, {count} steps each, "
            "interleaved"
        )
        step_fns = {method: make_step(model, method, size, seed) for method in SCALING_METHODS}
        times = interleaved_times(
            step_fns, count, warmup=min(warmup, 2), chunk=max(1, min(10, count // 5))
        )
        del step_fns
        for method, samples in times.items():
            row = {"model": model, "method": method, "batch": size, **summarise(samples)}
            row["ms_per_image"] = row["median_ms"] / size
            row.update(peak_rss_mb=None, rss_before_mb=None)
            rows.append(row)
    if memory:
        for row in rows:
            log(f"{model}: peak memory of {row['method']} at batch {row['batch']} (fresh process)")
            add_memory(row, measure(model, row["method"], row["batch"], seed))
    return rows


def add_memory(row: dict, measured: dict) -> None:
    row["peak_rss_mb"] = measured.get("peak_rss_mb")
    row["rss_before_mb"] = measured.get("rss_before_mb")
    if "error" in measured:
        row["memory_error"] = measured["error"]


def benchmark(
    models: tuple[str, ...],
    methods: tuple[str, ...],
    *,
    batch: int | None = None,
    steps: int = 60,
    warmup: int = 10,
    scaling: tuple[int, ...] = (),
    memory: bool = True,
    data_dir: str | None = None,
    seed: int = SEED,
    formulations: bool = False,
    log=print,
) -> dict:
    """The whole benchmark. ``batch`` None: each model's source batch size."""
    from tfhybrid.catalog import TRAINING_DEFAULTS
    from tfhybrid.runtime import tune_for_training

    report = {
        "machine": machine_info(),
        "runtime_settings": tune_for_training(),  # as training applies them
        "settings": {
            "models": list(models),
            "methods": list(methods),
            "batch": batch,
            "steps": steps,
            "warmup": warmup,
            "scaling": list(scaling),
            "memory": memory,
            "formulations": formulations,
            "seed": seed,
            "optimizer": "sgd",
            "train_images": TRAIN_IMAGES,
        },
        "results": [],
        "conv_plans": {model: plans(model) for model in models},
        "formulations": [],
        "scaling": [],
        "full_runs": [],
    }
    for model in models:
        size = batch or TRAINING_DEFAULTS[model].batch_size
        report["results"] += time_model(model, methods, size, steps, warmup, seed, log)
        if formulations and report["conv_plans"][model]:
            log(f"{model}: timing every convolution's backward formulations at batch {size}")
            report["formulations"] += time_formulations(model, size, seed=seed)
    for model in models if scaling else ():
        report["scaling"] += scaling_rows(model, scaling, steps, warmup, memory, seed, log)
    if memory:
        for row in report["results"]:
            known = [
                r
                for r in report["scaling"]
                if r.get("peak_rss_mb") is not None
                and (r["model"], r["method"], r["batch"])
                == (row["model"], row["method"], row["batch"])
            ]
            if known:
                add_memory(row, known[0])
                continue
            log(
                f"{row['model']}: peak memory of {row['method']} at batch {row['batch']} "
                "(fresh process)"
            )
            add_memory(row, measure(row["model"], row["method"], row["batch"], seed))
    for model in models if data_dir is not None else ():
        log(f"{model}: full run, scripts/train.py at its source settings, data loading included")
        report["full_runs"].append(full_run(model, data_dir))
    report["machine"]["load_average_after"] = load_average()
    return report
