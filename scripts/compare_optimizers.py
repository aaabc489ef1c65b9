"""Doc 004's optimizer experiment: the two-layer net (100 hidden units) trained with SGD,
Momentum, AdaGrad and Adam on the same mini-batches; smoothed loss curves to a PNG.

    python scripts/compare_optimizers.py --data-dir ../shared/mnist
    python scripts/compare_optimizers.py --optimizers sgd,momentum,adagrad,adam,rmsprop

Each optimizer trains its own copy of the network, all starting from the same weights
(seeded by --seed) and seeing the same batches, in the training loop's data order (a
fresh shuffle per epoch, tfhybrid.training.batch_indices). The loss of each step is
measured on its batch just before its update, as training reports it.
Writes OUT/optimizers.png and OUT/optimizers.json (settings, final losses, every loss).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone, no install

from tfhybrid.cli import (  # noqa: E402
    OneLineParser,
    add_data_dir_option,
    add_limit_options,
    run,
)
from tfhybrid.config import resolve_data_dir  # noqa: E402
from tfhybrid.errors import ConfigError  # noqa: E402
from tfhybrid.optimizers import optimizer_names  # noqa: E402
from tfhybrid.runtime import tune_for_training  # noqa: E402

# The source's optimizers with their default hyper-parameters (doc 004's textbook).
SOURCE_LR = {"sgd": 0.01, "momentum": 0.01, "adagrad": 0.01, "adam": 0.001, "rmsprop": 0.01}
LABELS = {
    "sgd": "SGD",
    "momentum": "Momentum",
    "adagrad": "AdaGrad",
    "adam": "Adam",
    "rmsprop": "RMSprop",
}
MARKERS = {"sgd": "o", "momentum": "x", "adagrad": "s", "adam": "D", "rmsprop": "^"}


def smooth(values, window: int = 11, beta: float = 2.0) -> np.ndarray:
    """Weighted moving average with a Kaiser window; the ends are mirrored, length kept."""
    values = np.asarray(values, dtype=float)
    half = window // 2
    if len(values) <= half:
        return values.copy()
    padded = np.concatenate([values[half:0:-1], values, values[-2 : -half - 2 : -1]])
    weights = np.kaiser(window, beta)
    return np.convolve(padded, weights / weights.sum(), mode="valid")


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="compare_optimizers.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=100, help="hidden units of the net")
    parser.add_argument(
        "--optimizers",
        default="sgd,momentum,adagrad,adam",
        help=f"comma-separated, from {','.join(optimizer_names())}",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_data_dir_option(parser)
    add_limit_options(parser, test=False)
    parser.add_argument("--out", default="runs/compare-optimizers", help="output folder")
    return parser


def parse(argv=None):
    args = build_parser().parse_args(argv)
    args.optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    unknown = [name for name in args.optimizers if name not in optimizer_names()]
    if unknown or not args.optimizers:
        raise ConfigError(
            f"--optimizers: unknown {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(optimizer_names())}"
        )
    for flag, value in (
        ("--iterations", args.iterations),
        ("--batch-size", args.batch_size),
        ("--hidden", args.hidden),
    ):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if args.train_limit is not None and args.train_limit < args.batch_size:
        raise ConfigError(
            f"--train-limit must be at least the batch size {args.batch_size}, "
            f"got {args.train_limit}"
        )
    args.data_dir = resolve_data_dir(args.data_dir)
    return args


def compare(args) -> dict:
    from tfhybrid.catalog import build_model
    from tfhybrid.data import load_mnist, one_hot
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import batch_indices, train_step

    data = load_mnist(args.data_dir, args.train_limit)
    x, labels = data.x_train, data.y_train
    start = build_model("two-layer-net", hidden=args.hidden, seed=args.seed).params
    nets = {
        name: build_model("two-layer-net", hidden=args.hidden, params=start)
        for name in args.optimizers
    }
    optimizers = {name: build_optimizer(name, SOURCE_LR[name]) for name in args.optimizers}
    losses = {name: [] for name in args.optimizers}
    started = time.perf_counter()
    batches = batch_indices(len(x), args.batch_size, args.iterations, args.seed)
    for step, index in enumerate(batches):
        xb, yb = x[index], one_hot(labels[index])
        for name, net in nets.items():
            losses[name].append(train_step(net, optimizers[name], xb, yb)["loss"])
        if step % 500 == 0 or step == args.iterations - 1:
            line = "  ".join(f"{LABELS[n]} {losses[n][-1]:.4f}" for n in args.optimizers)
            print(f"iteration {step:5d}  {line}", flush=True)
    seconds = time.perf_counter() - started
    return {
        "settings": {
            "iterations": args.iterations,
            "batch_size": args.batch_size,
            "hidden": args.hidden,
            "seed": args.seed,
            "train_size": len(x),
            "lr": {n: SOURCE_LR[n] for n in args.optimizers},
        },
        "final_smoothed_loss": {n: float(smooth(losses[n])[-1]) for n in args.optimizers},
        "mean_loss_last_100": {n: float(np.mean(losses[n][-100:])) for n in args.optimizers},
        "seconds": round(seconds, 1),
        "losses": losses,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, values in result["losses"].items():
        final = result["final_smoothed_loss"][name]
        ax.plot(
            np.arange(len(values)),
            smooth(values),
            marker=MARKERS[name],
            markevery=100,
            markersize=4,
            label=f"{LABELS[name]} (final {final:.3f})",
        )
    settings = result["settings"]
    ax.set(
        xlabel="iterations",
        ylabel="loss (smoothed)",
        ylim=(0, 1),
        title=f"two-layer net 784-{settings['hidden']}-10, batch {settings['batch_size']}",
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    def job():
        args = parse(argv)
        tune_for_training()  # one BLAS thread: faster for these small products
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result = compare(args)
        plot(result, out / "optimizers.png")
        (out / "optimizers.json").write_text(json.dumps(result, indent=1) + "\n")
        for name, final in result["final_smoothed_loss"].items():
            print(
                f"{LABELS[name]:9s} final smoothed loss {final:.4f}  "
                f"(mean of last 100: {result['mean_loss_last_100'][name]:.4f})"
            )
        print(
            f"wrote {out / 'optimizers.png'} and {out / 'optimizers.json'} ({result['seconds']}s)"
        )

    return run(job)


if __name__ == "__main__":
    sys.exit(main())
