"""The article's program over several seeds: one training run per (variant, seed), then a
report of the spread beside the article's single run.

    python scripts/reproduce.py --seeds 0-4 --data-dir ../shared/mnist

Each run is ``tfhybrid.training.train_and_evaluate`` in its own folder
``OUT/VARIANT/seed-N``. A run already finished is read back; a run with a checkpoint is
resumed; so a killed reproduction continues where it stopped. The report: ``report.md``,
``report.json`` and ``report.png`` in OUT.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfhybrid.checkpoint import CHECKPOINT_NAME
from tfhybrid.config import TrainConfig
from tfhybrid.errors import ConfigError
from tfhybrid.training import ARTICLE_COST, ARTICLE_TEST_ACCURACY, train_and_evaluate

# variant -> the seed-cnn options it changes (the rest are the article's program)
VARIANTS = {
    "article": {},
    "per-sample": {"dw_mode": "per-sample"},
    "exact-bias": {"bias_grad": "exact"},
}
VARIANT_HELP = {
    "article": "the article's program (batched dw1, its db1 rule)",
    "per-sample": "--dw-mode per-sample: each sample's own dw1, as the article",
    "exact-bias": "--bias-grad exact: the true db1 instead of 1/400 of it",
}


def parse_seeds(text: str) -> list[int]:
    """ "0-4" or "0,2,5" (or a mix) -> sorted distinct seeds."""
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(p) for p in part.split("-", 1))
                if high < low:
                    raise ValueError
                seeds.update(range(low, high + 1))
            elif part:
                seeds.add(int(part))
    except ValueError:
        raise ConfigError(
            f"--seeds takes a range or list such as 0-4 or 0,3,7; got {text!r}"
        ) from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds must name seeds >= 0; got {text!r}")
    return sorted(seeds)


def run_one(config: TrainConfig, workdir: Path, log: Callable[[str], object]) -> dict:
    """A finished run's metrics, resuming or starting it as the folder says."""
    metrics_path = workdir / "metrics.json"
    if metrics_path.exists():
        log(f"{workdir}: done, read back")
        return json.loads(metrics_path.read_text())
    resume = (workdir / CHECKPOINT_NAME).exists()
    log(f"{workdir}: {'resuming' if resume else 'training'}")
    return train_and_evaluate(config, workdir, log=lambda line: None, resume=resume)


def reproduce(
    seeds: list[int],
    out: str | Path,
    variants: list[str],
    *,
    log: Callable[[str], object] = print,
    **settings,
) -> dict:
    """Train every (variant, seed); write and return the report. ``settings``: TrainConfig
    fields for every run (epochs, train_limit, test_limit, data_dir, ...)."""
    out = Path(out)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"--variants must be among {', '.join(VARIANTS)}; got {unknown}")
    runs: dict[str, dict[int, dict]] = {}
    for variant in variants:
        runs[variant] = {}
        for seed in seeds:
            config = TrainConfig.for_model(
                "seed-cnn", seed=seed, **VARIANTS[variant], **settings
            ).validated()
            runs[variant][seed] = run_one(config, out / variant / f"seed-{seed}", log)
    report = summarise(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(format_report(report) + "\n")
    plot_report(report, out / "report.png")
    log(f"wrote {out / 'report.md'}, {out / 'report.json'} and {out / 'report.png'}")
    return report


def summarise(runs: dict[str, dict[int, dict]]) -> dict:
    """Per variant: each seed's test accuracy and per-epoch cost, their mean and sd, and
    where the article's test accuracy falls among them."""
    report = {
        "article": {"cost": list(ARTICLE_COST), "test_accuracy": ARTICLE_TEST_ACCURACY},
        "variants": {},
    }
    for variant, by_seed in runs.items():
        seeds = sorted(by_seed)
        accuracy = np.array([by_seed[s]["test_accuracy"] for s in seeds])
        costs = np.array([[row["cost"] for row in by_seed[s]["epochs"]] for s in seeds])
        sd = float(accuracy.std(ddof=1)) if len(seeds) > 1 else 0.0
        report["variants"][variant] = {
            "description": VARIANT_HELP[variant],
            "seeds": seeds,
            "test_accuracy": accuracy.tolist(),
            "test_accuracy_mean": float(accuracy.mean()),
            "test_accuracy_sd": sd,
            "cost_mean": costs.mean(axis=0).tolist(),
            "cost_sd": (
                costs.std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros(costs.shape[1])
            ).tolist(),
            "article_within_range": bool(accuracy.min() <= ARTICLE_TEST_ACCURACY <= accuracy.max()),
            "article_in_sd": (
                (ARTICLE_TEST_ACCURACY - float(accuracy.mean())) / sd if sd else None
            ),
            "epochs": int(costs.shape[1]),
            "images": by_seed[seeds[0]].get("test_images"),
        }
    return report


def format_report(report: dict) -> str:
    article = report["article"]
    lines = ["# The article's program over seeds", ""]
    for variant, item in report["variants"].items():
        seeds = item["seeds"]
        lines += [
            f"## {variant}: {item['description']}",
            "",
            f"Test accuracy over {len(seeds)} seeds ({item['images']} test images): "
            f"**{item['test_accuracy_mean']:.4f} ± {item['test_accuracy_sd']:.4f}** "
            f"(mean ± sd); the article's {article['test_accuracy']} is "
            + (
                f"{item['article_in_sd']:+.1f} sd from the mean"
                if item["article_in_sd"] is not None
                else "compared with one run"
            )
            + (
                ", within the seeds' range."
                if item["article_within_range"]
                else ", outside the seeds' range."
            ),
            "",
            "| seed | " + " | ".join(str(s) for s in seeds) + " |",
            "|---|" + "---:|" * len(seeds),
            "| test accuracy | " + " | ".join(f"{a:.4f}" for a in item["test_accuracy"]) + " |",
            "",
            "| epoch | article's cost | cost, mean ± sd |",
            "|---:|---:|---:|",
        ]
        for epoch, (mean, sd) in enumerate(
            zip(item["cost_mean"], item["cost_sd"], strict=True), start=1
        ):
            ref = f"{article['cost'][epoch - 1]:.4f}" if epoch <= len(article["cost"]) else "-"
            lines.append(f"| {epoch} | {ref} | {mean:.4f} ± {sd:.4f} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def plot_report(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    article = report["article"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant, item in report["variants"].items():
        epochs = np.arange(1, item["epochs"] + 1)
        mean, sd = np.array(item["cost_mean"]), np.array(item["cost_sd"])
        left.plot(epochs, mean, marker="o", markersize=3, label=f"{variant} (mean ± sd)")
        left.fill_between(epochs, mean - sd, mean + sd, alpha=0.25)
    left.plot(np.arange(1, len(article["cost"]) + 1), article["cost"], "k--", label="article")
    left.set(xlabel="epoch", ylabel="cost (softmax cross-entropy)", title="per-epoch cost")
    left.legend()
    names = list(report["variants"])
    for i, variant in enumerate(names):
        item = report["variants"][variant]
        accuracy = np.array(item["test_accuracy"])
        right.scatter(np.full(len(accuracy), i), accuracy, alpha=0.7)
        right.errorbar(
            i + 0.15,
            item["test_accuracy_mean"],
            yerr=item["test_accuracy_sd"],
            fmt="s",
            color="k",
            capsize=4,
        )
    right.axhline(article["test_accuracy"], color="k", linestyle="--", label="article 0.9695")
    right.set_xticks(range(len(names)), names)
    right.set(ylabel="test accuracy", title="test accuracy per seed, mean ± sd")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
