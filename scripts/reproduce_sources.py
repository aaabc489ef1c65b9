"""Train each source network with its source's settings and measure its test accuracy.

    python scripts/reproduce_sources.py --data-dir ../shared/mnist            # all five
    python scripts/reproduce_sources.py --models lenet5,conv8 --out results.json

Settings come from ``tfhybrid.models.registry.TRAINING_DEFAULTS`` (epochs or iterations,
batch size, optimizer, learning rate, the first-N train/test limits); input scaling is
part of each model. Training uses tfds ``train[5000:]`` (55,000 images) as the project's
command line does; the test split is tfds ``test``. Prints one line per model and writes
the results (accuracy, seconds, settings) to --out as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one BLAS thread is faster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone, no install

from tfhybrid.cli import OneLineParser, run  # noqa: E402
from tfhybrid.config import DATA_DIR_ENV  # noqa: E402
from tfhybrid.errors import ConfigError  # noqa: E402
from tfhybrid.models.registry import MODEL_NAMES, training_defaults  # noqa: E402


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="reproduce_sources.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODEL_NAMES),
                        help=f"comma-separated, from {','.join(MODEL_NAMES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None,
                        help=f"folder with the four MNIST .gz files (else ${DATA_DIR_ENV})")
    parser.add_argument("--steps", type=int, default=None,
                        help="override every model's number of updates (quick checks)")
    parser.add_argument("--out", default="runs/reproduce_sources.json", help="JSON results")
    return parser


def parse(argv=None):
    args = build_parser().parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODEL_NAMES]
    if unknown or not args.models:
        raise ConfigError(f"--models: unknown {', '.join(unknown) or '(none given)'}; "
                          f"choose from {','.join(MODEL_NAMES)}")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {args.steps}")
    args.data_dir = args.data_dir or os.environ.get(DATA_DIR_ENV) or None
    return args


def reproduce(name: str, data, seed: int, steps: int | None) -> dict:
    from tfhybrid.loop import fit
    from tfhybrid.models.registry import build_model
    from tfhybrid.optimizers import build_optimizer

    settings = training_defaults(name)
    x, y = data.x_train[:settings.train_limit], data.y_train[:settings.train_limit]
    x_test, y_test = data.x_test[:settings.test_limit], data.y_test[:settings.test_limit]
    steps = steps or settings.steps(len(x))
    model = build_model(name, seed=seed)
    optimizer = build_optimizer(settings.optimizer, settings.lr)
    print(f"{name}: {steps} steps of batch {settings.batch_size} on {len(x)} images, "
          f"{settings.optimizer} lr {settings.lr}", flush=True)
    started = time.perf_counter()
    losses = fit(model, optimizer, x, y, batch_size=settings.batch_size, iterations=steps,
                 seed=seed, log_every=max(steps // 10, 1),
                 log=lambda line: print("  " + line, flush=True))
    train_seconds = time.perf_counter() - started
    accuracy = model.accuracy(x_test, y_test)
    return {"model": name, "test_accuracy": round(accuracy, 4), "test_images": len(x_test),
            "reported": settings.reported, "train_images": len(x), "steps": steps,
            "final_loss": round(float(sum(losses[-100:]) / len(losses[-100:])), 4),
            "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            "seed": seed, "settings": dataclasses.asdict(settings)}


def main(argv=None) -> int:
    def job():
        args = parse(argv)
        from tfhybrid.data import load_mnist

        data = load_mnist(args.data_dir)
        results = []
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            result = reproduce(name, data, args.seed, args.steps)
            results.append(result)
            reported = "none" if result["reported"] is None else f"{result['reported']:.4f}"
            print(f"{name}: test accuracy {result['test_accuracy']:.4f} on "
                  f"{result['test_images']} images (source: {reported}), trained in "
                  f"{result['train_seconds']:.0f}s", flush=True)
            out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")

    return run(job)


if __name__ == "__main__":
    sys.exit(main())
