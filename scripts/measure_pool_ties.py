"""How wrong the sources' max-pool tie rule makes the filter gradients, on real MNIST.

    python scripts/measure_pool_ties.py --data-dir ../shared/mnist

Sources 002 and 003 send a pooled gradient to every input equal to the window's maximum.
On MNIST's flat background many windows hold equal values (the convolution of a constant
patch is a constant), so those windows pass their gradient on several times. For
``numpy-cnn`` (doc 002) and ``conv8`` (doc 003) this computes, on the same real images and
the same weights, the gradients of every parameter below a max pool with the true rule
(first maximum, as TensorFlow) and with the sources' rule (every tied maximum), and reports
||g_all|| / ||g_first|| and ||g_all - g_first|| / ||g_first||, at the initial weights and
after some training with the true gradient (the source's optimizer and settings).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone, no install

from tfhybrid.cli import OneLineParser, add_data_dir_option, run  # noqa: E402
from tfhybrid.config import resolve_data_dir  # noqa: E402
from tfhybrid.errors import ConfigError  # noqa: E402
from tfhybrid.runtime import tune_for_training  # noqa: E402

MODELS = ("numpy-cnn", "conv8")


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="measure_pool_ties.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=1024, help="training images the gradients are measured on"
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=500,
        help="true-gradient training steps before the second measurement",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_data_dir_option(parser)
    parser.add_argument("--out", default="runs/pool_ties.json", help="JSON results")
    return parser


def tie_rule_error(model_first, model_all, x, labels, batch_size):
    """Per parameter below a pool: mean over batches of the norm ratio and relative error."""
    from tfhybrid.data import one_hot

    ratios, errors = {}, {}
    for start in range(0, len(x) - batch_size + 1, batch_size):
        xb, yb = x[start : start + batch_size], one_hot(labels[start : start + batch_size])
        first, every = model_first.gradients(xb, yb), model_all.gradients(xb, yb)
        for key in first:
            norm = float(np.linalg.norm(first[key]))
            if np.array_equal(first[key], every[key]) or norm == 0:
                continue  # above the pools: the rule does not reach it
            ratios.setdefault(key, []).append(float(np.linalg.norm(every[key])) / norm)
            errors.setdefault(key, []).append(float(np.linalg.norm(every[key] - first[key])) / norm)
    return {
        key: {
            "norm_ratio": round(float(np.mean(ratios[key])), 3),
            "relative_error": round(float(np.mean(errors[key])), 3),
        }
        for key in ratios
    }


def measure(name: str, data, args) -> dict:
    from tfhybrid.catalog import TRAINING_DEFAULTS, build_model
    from tfhybrid.optimizers import build_optimizer
    from tfhybrid.training import fit

    settings = TRAINING_DEFAULTS[name]
    x, labels = data.x_train[: args.images], data.y_train[: args.images]
    model = build_model(name, seed=args.seed)
    result = {"batch_size": settings.batch_size, "images": len(x)}
    for state in ("init", "trained"):
        if state == "trained":
            train_x = data.x_train[: settings.train_limit]
            train_y = data.y_train[: settings.train_limit]
            fit(
                model,
                build_optimizer(settings.optimizer, settings.lr),
                train_x,
                train_y,
                batch_size=settings.batch_size,
                iterations=args.train_steps,
                seed=args.seed,
            )
        every = build_model(name, seed=args.seed, pool_ties="all")
        every.params = model.params
        result[state] = tie_rule_error(model, every, x, labels, settings.batch_size)
    result["trained_steps"] = args.train_steps
    return result


def main(argv=None) -> int:
    def job():
        args = build_parser().parse_args(argv)
        tune_for_training()  # one BLAS thread: faster for these small products
        for flag in ("images", "train_steps"):
            if getattr(args, flag) < 1:
                raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1")
        from tfhybrid.data import load_mnist

        data = load_mnist(resolve_data_dir(args.data_dir))
        results = {name: measure(name, data, args) for name in MODELS}
        for name, result in results.items():
            for state in ("init", "trained"):
                cells = "  ".join(
                    f"d{k}: x{v['norm_ratio']:.2f} (error {v['relative_error']:.2f})"
                    for k, v in result[state].items()
                )
                print(f"{name:9s} {state:7s} all-ties / first-max  {cells}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")

    return run(job)


if __name__ == "__main__":
    sys.exit(main())
