"""``--plot FILE.png``: the first convolution's filter gradient, manual, tape and their
difference, one 9x9 (kh x kw) heatmap per filter; below, each tensor's errors as bars."""

from __future__ import annotations

import os

import numpy as np

from tfhybrid.audit.report import MANUAL, PARAMETER, TAPE64, AuditReport

ROWS = (("manual", MANUAL), ("tape float64", TAPE64))
ERROR_FLOOR_ON_PLOT = 1e-17  # log axis: a zero error is drawn at this height


def _filter_tensor(report: AuditReport) -> str | None:
    """The first parameter gradient shaped [kh, kw, c_in, filters] (dw1 for seed-cnn)."""
    for item in report.tensors:
        if item.kind == PARAMETER and len(item.shape) == 4:
            return item.name
    return None


def plot_report(report: AuditReport, path: str | os.PathLike) -> None:
    """Write the figure as PNG to ``path`` (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = _filter_tensor(report)
    filters = report.gradients[MANUAL][name].shape[3] if name else 0
    fig = plt.figure(figsize=(max(12, 0.9 * filters), 9), layout="constrained")
    grid = fig.add_gridspec(
        4 if name else 1, max(filters, 1), height_ratios=[1, 1, 1, 2.2] if name else [1]
    )
    if name:
        _heatmaps(fig, grid, report, name, filters)
    _error_bars(fig.add_subplot(grid[-1, :]), report)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _heatmaps(fig, grid, report: AuditReport, name: str, filters: int) -> None:
    manual = report.gradients[MANUAL][name][:, :, 0, :]  # input channel 0
    tape = report.gradients[TAPE64][name][:, :, 0, :]
    diff = manual - tape
    limit = float(max(np.abs(manual).max(), np.abs(tape).max(), 1e-30))
    diff_limit = float(max(np.abs(diff).max(), 1e-30))
    rows = [
        *((label, report.gradients[src][name][:, :, 0, :], limit) for label, src in ROWS),
        ("manual - tape", diff, diff_limit),
    ]
    for r, (label, values, lim) in enumerate(rows):
        for f in range(filters):
            ax = fig.add_subplot(grid[r, f])
            image = ax.imshow(values[:, :, f], cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"filter {f}", fontsize=8)
            if f == 0:
                ax.set_ylabel(label, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(
        f"{report.model}: {name} (input channel 0), manual vs tf.GradientTape; "
        f"largest |difference| {diff_limit:.2e}"
    )


def _error_bars(ax, report: AuditReport) -> None:
    names = [t.name for t in report.tensors]
    series = {
        "manual vs tape64": [t.manual.rel_error for t in report.tensors],
        "tape32 vs tape64": [t.tape32.rel_error for t in report.tensors],
        "tape64 vs fd64": [t.fd_tape.rel_error if t.fd_tape else np.nan for t in report.tensors],
    }
    width = 0.8 / len(series)
    positions = np.arange(len(names))
    for i, (label, values) in enumerate(series.items()):
        heights = np.maximum(np.asarray(values, dtype=float), ERROR_FLOOR_ON_PLOT)
        ax.bar(positions + (i - 1) * width, heights, width, label=label)
    tol = report.tolerances
    for key, style in (("manual", "-"), ("finite_differences", ":")):
        ax.axhline(
            tol[key],
            color="black",
            linestyle=style,
            linewidth=1,
            label=f"tolerance {key.replace('_', ' ')} ({tol[key]:g})",
        )
    ax.set_yscale("log")
    ax.set_xticks(
        positions, [f"{t.name}\n{t.manual.description}" for t in report.tensors], fontsize=8
    )
    ax.set_ylabel("max relative error")
    ax.set_title(
        f"per tensor: max symmetric relative error (floor {tol['rel_error_floor']:g} x scale)"
    )
    ax.legend(fontsize=8, loc="upper right")
