"""The benchmark's dict (:func:`benchmarks.suite.benchmark`) as markdown tables."""

from __future__ import annotations

import statistics

DASH = "-"


def number(value, digits: int | None = None) -> str:
    """A figure to about 3 significant digits (or ``digits`` decimals); '-' for none."""
    if value is None:
        return DASH
    if digits is not None:
        return f"{value:.{digits}f}"
    size = abs(value)
    return (
        f"{value:.3f}"
        if size < 1
        else f"{value:.2f}"
        if size < 10
        else (f"{value:.1f}" if size < 1000 else f"{value:.0f}")
    )


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """A markdown table with padded columns; ``right``: indexes of right-aligned columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    return [line(headers), rule, *(line(r) for r in rows)]


def rss(row: dict) -> str:
    if row.get("peak_rss_mb") is None:
        return "failed" if row.get("memory_error") else DASH
    return number(row["peak_rss_mb"], 0)


def limits(rows: list[dict]) -> str:
    """A note naming the models whose source trains on fewer images than 55,000."""
    limited = {r["model"]: r["source_train_limit"] for r in rows if r.get("source_train_limit")}
    notes = [
        f"{model}'s source trains on its first {limit:,} only" for model, limit in limited.items()
    ]
    return f" ({'; '.join(notes)})" if notes else ""


def peer(row: dict) -> str:
    """The ratio to the method's TensorFlow peer, with the peer's name."""
    if row.get("x_peer") is None:
        return DASH
    return f"{row['x_peer']:.2f} ({row['peer']})"


def plans_table(report: dict) -> list[str]:
    """The formulations each convolution chose (net.summary()'s backward line)."""
    rows = [
        [model, plan["layer"], plan["text"]]
        for model, chosen in report.get("conv_plans", {}).items()
        for plan in chosen
    ]
    return table(["model", "conv", "backward formulations"], rows, right=set()) if rows else []


def formulations_table(report: dict) -> list[str]:
    rows = []
    for r in report["formulations"]:
        others = sorted(r["candidates"], key=lambda c: c["ms"])
        rows.append(
            [
                r["model"],
                r["layer"],
                r["call"],
                str(r["batch"]),
                f"{r['chosen']} {number(r['chosen_ms'])}",
                f"{number(r['chosen_ms'] / r['fastest_ms'], 2)}",
                "; ".join(
                    f"{c['dw']}{'/' + c['dx'] if c['dx'] else ''}{' XLA' if c['xla'] else ''} "
                    f"{number(c['ms'])}"
                    for c in others
                ),
            ]
        )
    return table(
        ["model", "conv", "call", "batch", "chosen, ms", "× fastest", "every candidate, ms"],
        rows,
        right={3, 5},
    )


def step_table(report: dict) -> list[str]:
    settings = report["settings"]
    rows = [
        [
            r["model"],
            r["method"],
            str(r["batch"]),
            number(r["median_ms"]),
            f"{number(r['p10_ms'])}-{number(r['p90_ms'])}",
            number(r["x_autodiff"], 2),
            number(r.get("x_autodiff_xla"), 2),
            peer(r),
            number(r["seconds_per_epoch"]),
            rss(r),
        ]
        for r in report["results"]
    ]
    lines = table(
        [
            "model",
            "method",
            "batch",
            "ms/step",
            "p10-p90 ms",
            "× autodiff",
            "× XLA autodiff",
            "× TF peer",
            "s/epoch",
            "peak RSS MB",
        ],
        rows,
        right={2, 3, 4, 5, 6, 7, 8, 9},
    )
    batch = (
        "each model's source batch size"
        if settings["batch"] is None
        else f"--batch {settings['batch']} for every model"
    )
    lines += [
        "",
        f"One training step (forward, backward, plain SGD at the model's source lr) on "
        f"random data; median of {settings['steps']} steps after {settings['warmup']} "
        "warm-up steps, a model's methods interleaved in rounds.",
        f"batch: {batch}. s/epoch: ms/step × (55,000 // batch) steps, one pass over "
        f"MNIST's 55,000 training images{limits(report['results'])}.",
        "× XLA autodiff: over autodiff-xla, the same tape step compiled with "
        "jit_compile=True. × TF peer: over the method's TensorFlow peer (hybrid: autodiff; "
        "per-example: per-example-peer, tf.vectorized_map over a per-sample tape).",
        "peak RSS: VmHWM of a fresh process running only that method at that batch "
        "(Python, TensorFlow and NumPy included)."
        if settings["memory"]
        else "peak RSS: not measured (--no-memory).",
    ]
    return lines


def scaling_table(report: dict) -> list[str]:
    rows = [
        [
            r["model"],
            r["method"],
            str(r["batch"]),
            number(r["median_ms"]),
            number(r["ms_per_image"], 4),
            rss(r),
        ]
        for r in report["scaling"]
    ]
    return table(
        ["model", "method", "batch", "ms/step", "ms/image", "peak RSS MB"], rows, right={2, 3, 4, 5}
    )


def full_run_table(report: dict) -> list[str]:
    rows = []
    for run in report["full_runs"]:
        epochs = [s for s in run["epoch_seconds"] if isinstance(s, int | float)]
        rows.append(
            [
                run["model"],
                str(run["exit_code"]),
                number(run["wall_seconds"], 1),
                number(run["data_seconds"], 1),
                number(run["total_seconds"], 1),
                number(statistics.median(epochs)) if epochs else DASH,
                number(run["peak_rss_mb"], 0),
                DASH if run["test_accuracy"] is None else f"{run['test_accuracy']:.4f}",
            ]
        )
    lines = table(
        [
            "model",
            "exit",
            "wall s",
            "data s",
            "total s",
            "s/epoch (median)",
            "peak RSS MB",
            "test accuracy",
        ],
        rows,
        right={1, 2, 3, 4, 5, 6, 7},
    )
    lines += [
        "",
        "`python scripts/train.py --model NAME --data-dir DIR` at the model's source "
        "settings, in a fresh process. data s, total s (data loading included) and "
        "s/epoch as its metrics.json records them; wall s adds Python's and "
        "TensorFlow's start-up; peak RSS: the process's VmHWM.",
    ]
    for run in report["full_runs"]:
        if run["exit_code"] != 0:
            lines.append(
                f"{run['model']} exited {run['exit_code']}: " + " / ".join(run["log_tail"])
            )
    return lines


def format_report(report: dict) -> str:
    """The tables printed at the end of a run."""
    machine = report["machine"]
    lines = [
        f"Machine: {machine['cpus']} CPUs ({machine['processor']}), Python "
        f"{machine['python']}, TensorFlow {machine['tensorflow']}, NumPy "
        f"{machine['numpy']}; load average {machine['load_average']} before, "
        f"{machine.get('load_average_after')} after.",
        "",
    ]
    lines += step_table(report)
    if report.get("conv_plans") and any(report["conv_plans"].values()):
        lines += ["", "Each convolution's backward, as chosen when the network was built:", ""]
        lines += plans_table(report)
    if report.get("formulations"):
        lines += [
            "",
            "Each convolution's backward call by formulation (median of interleaved calls "
            "on a random batch; batch: dw, and dx where needed; per-sample: each sample's dw):",
            "",
        ]
        lines += formulations_table(report)
    if report["scaling"]:
        lines += ["", "Batch-size scaling (times interleaved per batch size):", ""]
        lines += scaling_table(report)
    if report["full_runs"]:
        lines += ["", "Full training runs:", ""]
        lines += full_run_table(report)
    return "\n".join(lines)
