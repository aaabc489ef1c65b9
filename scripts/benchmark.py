"""Time one training step of each network: the hybrid step against TensorFlow's autodiff.

    python scripts/benchmark.py                            # seed-cnn: hybrid and autodiff
    python scripts/benchmark.py --model all --per-example  # every network, + per-example
    python scripts/benchmark.py --model lenet5 --scaling 100,1000,10000 --json bench.json
    python scripts/benchmark.py --model seed-cnn --full-run --data-dir ../shared/mnist
    python scripts/benchmark.py --keras     # seed-cnn per epoch: Keras bridge, Keras, tfhybrid
    python scripts/benchmark.py --model all --formulations  # each convolution's formulations

Figures only, never a pass/fail; benchmarks/ says what is measured and how.
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone, no install

from benchmarks.steps import METHODS  # noqa: E402
from tfhybrid.catalog import MODEL_NAMES  # noqa: E402  (no TensorFlow: quick option errors)
from tfhybrid.cli import OneLineParser  # noqa: E402
from tfhybrid.config import DATA_DIR_ENV, resolve_data_dir  # noqa: E402

DEFAULT_METHODS = ("hybrid", "autodiff", "autodiff-xla")


def count(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def batch_sizes(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated batch sizes >= 1, e.g. 100,1000,10000."""
    parse = count(1)
    sizes = tuple(dict.fromkeys(parse(part.strip()) for part in text.split(",")))
    if not sizes:
        raise argparse.ArgumentTypeError("expected batch sizes like 100,1000,10000")
    return sizes


def method_list(text: str) -> tuple[str, ...]:
    """An argparse type: a comma-separated subset of the methods."""
    methods = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(unknown) or repr(text)}; choose from {','.join(METHODS)}"
        )
    return methods


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="benchmark.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        choices=(*MODEL_NAMES, "all"),
        metavar="NAME",
        help=f"repeatable, or all: {', '.join(MODEL_NAMES)} (default seed-cnn)",
    )
    parser.add_argument(
        "--methods",
        type=method_list,
        default=DEFAULT_METHODS,
        help=f"comma-separated subset of {','.join(METHODS)} (default {','.join(DEFAULT_METHODS)})",
    )
    parser.add_argument(
        "--per-example",
        action="store_true",
        help="also time the hybrid step with per_example=True and its TensorFlow peer "
        "(tf.vectorized_map over a per-sample tape)",
    )
    parser.add_argument(
        "--formulations",
        action="store_true",
        help="also time every convolution's backward formulations against each other",
    )
    parser.add_argument(
        "--batch",
        type=count(1),
        help="batch size for every model (default: each model's source batch)",
    )
    parser.add_argument(
        "--steps",
        type=count(1),
        default=60,
        help="timed steps per method, the median is reported (default 60)",
    )
    parser.add_argument(
        "--warmup", type=count(0), default=10, help="untimed steps per method first (default 10)"
    )
    parser.add_argument(
        "--scaling",
        type=batch_sizes,
        default=(),
        metavar="SIZES",
        help="also time hybrid and autodiff at these batch sizes, e.g. "
        "100,1000,10000 (default: none)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-RSS measurements (a fresh process each)",
    )
    parser.add_argument(
        "--seed",
        type=count(0),
        default=0,
        help="seeds the initial weights and the random batch (default 0)",
    )
    parser.add_argument(
        "--full-run",
        action="store_true",
        help="also run scripts/train.py --model NAME for each model and report "
        f"wall time, peak memory and test accuracy; needs --data-dir or "
        f"${DATA_DIR_ENV}",
    )
    parser.add_argument("--data-dir", help="MNIST folder for --full-run")
    parser.add_argument(
        "--keras",
        action="store_true",
        help="instead: seconds per epoch of seed-cnn trained by model.fit through "
        "tfhybrid.keras, by Keras's own fit (autodiff) and by tfhybrid's loop "
        "(benchmarks/keras_bridge.py; honours --batch, --seed, --json)",
    )
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    chosen = args.model or ["seed-cnn"]
    args.models = MODEL_NAMES if "all" in chosen else tuple(dict.fromkeys(chosen))
    extra = ("per-example", "per-example-peer") if args.per_example else ()
    chosen_methods = {*args.methods, *extra}
    args.methods = tuple(m for m in METHODS if m in chosen_methods)  # in table order
    if args.data_dir is not None and not args.full_run:
        parser.error("--data-dir is only used with --full-run")
    if args.full_run:
        data_dir = resolve_data_dir(args.data_dir)
        if not data_dir:
            parser.error(f"--full-run needs --data-dir (or ${DATA_DIR_ENV})")
        if not Path(data_dir).is_dir():
            parser.error(f"--data-dir {data_dir!r} is not a folder")
        args.data_dir = str(Path(data_dir).resolve())
    if args.json is not None:
        target = Path(args.json)
        if target.is_dir():
            parser.error(f"--json {args.json!r} is a folder; give a file name")
        if not target.resolve().parent.is_dir():
            parser.error(f"--json {args.json!r}: folder {str(target.parent)!r} does not exist")
        if not os.access(target.resolve().parent, os.W_OK):
            parser.error(f"--json {args.json!r}: folder {str(target.parent)!r} is not writable")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.keras:
        return keras_main(args)
    from benchmarks.report import format_report
    from benchmarks.suite import benchmark

    return run_and_publish(
        lambda log: benchmark(
            args.models,
            args.methods,
            batch=args.batch,
            steps=args.steps,
            warmup=args.warmup,
            scaling=args.scaling,
            memory=not args.no_memory,
            data_dir=args.data_dir if args.full_run else None,
            seed=args.seed,
            formulations=args.formulations,
            log=log,
        ),
        format_report,
        args.json,
    )


def run_and_publish(measure, formatter, json_path: str | None) -> int:
    """``measure(log)`` with progress lines on stderr, then :func:`publish` its report;
    130 on Ctrl-C."""
    try:
        report = measure(lambda m: print(m, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print("benchmark.py: interrupted", file=sys.stderr)
        return 130
    return publish(report, formatter, json_path)


def publish(report: dict, formatter, json_path: str | None) -> int:
    """Print ``report`` with ``formatter`` (the command that made it recorded in it), and
    write it as JSON when asked."""
    report["command"] = " ".join(["python", "scripts/benchmark.py", *sys.argv[1:]])
    print(formatter(report))
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0


def keras_main(args) -> int:
    """``--keras``: the bridge's table (benchmarks/keras_bridge.py)."""
    from benchmarks.keras_bridge import benchmark_keras, format_keras

    return run_and_publish(
        lambda log: benchmark_keras(batch=args.batch or 100, seed=args.seed, log=log),
        format_keras,
        args.json,
    )


if __name__ == "__main__":
    sys.exit(main())
