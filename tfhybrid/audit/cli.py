"""Command line of ``scripts/check_gradients.py``: options -> batch and model -> audit.

Options are checked before TensorFlow is imported; a bad one is one line on stderr
and exit code 2. ``--expect`` names depend on the model's architecture, so they are
checked right after the model is built (before MNIST is read). Exit code 0 when every
gradient matches (or only the ``--expect``ed ones do not), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from tfhybrid.audit import registry
from tfhybrid.audit.registry import CHECK_NAMES, RULES
from tfhybrid.catalog import MODEL_NAMES
from tfhybrid.cli import OneLineParser, add_data_dir_option, run
from tfhybrid.config import _check_choice, _check_int, resolve_data_dir
from tfhybrid.errors import ConfigError

EXIT_MISMATCH = 1
DEFAULT_BATCH = 8
MNIST_TEST_SIZE = 10_000


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="check_gradients.py",
        description="Audit the hand-written gradients: manual vs tf.GradientTape (float32, "
                    "float64) vs float64 finite differences, on real MNIST test images.")
    parser.add_argument("--model", default="seed-cnn", metavar="|".join(MODEL_NAMES),
                        help="the network to audit (default seed-cnn); it scales the "
                             "[0, 1] images itself, as in training")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the initial weights and the finite-difference coordinates")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="N",
                        help="audit on the first N MNIST test images")
    for rule in RULES:
        parser.add_argument(rule.flag, default=None, metavar="|".join(rule.choices),
                            help=f"{rule.help}; only for --model {' or '.join(rule.models)}")
    add_data_dir_option(parser)
    parser.add_argument("--expect", action="append", default=[], metavar="TENSOR",
                        help="a mismatch you know of (e.g. db1 under --bias-grad seed); "
                             "repeatable; it no longer fails the exit code")
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="write every figure of the report as JSON")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="write dw1 heatmaps and per-tensor error bars as PNG")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check every option; raises ConfigError (or exits 2 when unparsable)."""
    args = build_parser().parse_args(argv)
    _check_choice("--model", args.model, MODEL_NAMES)
    _check_int("--seed", args.seed, minimum=0)
    _check_int("--batch", args.batch, minimum=1)
    if args.batch > MNIST_TEST_SIZE:
        raise ConfigError(f"--batch must not exceed the {MNIST_TEST_SIZE} MNIST test images, "
                          f"got {args.batch}")
    args.rules = {}  # model option -> choice, for the rules this model takes
    for rule in RULES:
        value = getattr(args, rule.keyword)
        if args.model not in rule.models:
            if value is not None:
                raise ConfigError(f"{rule.flag} applies only to --model "
                                  f"{' or '.join(rule.models)}, not {args.model}")
            continue
        _check_choice(rule.flag, value if value is not None else rule.default, rule.choices)
        args.rules[rule.keyword] = value if value is not None else rule.default
    if args.plot is not None and Path(args.plot).suffix.lower() != ".png":
        raise ConfigError(f"--plot must name a .png file, got {args.plot!r}")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise ConfigError(f"{flag}: the folder of {path!r} does not exist")
    args.data_dir = resolve_data_dir(args.data_dir)
    return args


def mnist_batch(data_dir: str | None, size: int):
    """The first ``size`` MNIST test images, float32 [N,28,28,1], and one-hot labels."""
    from tfhybrid.data import load_mnist, one_hot  # tensorflow-datasets: imports TensorFlow

    splits = load_mnist(data_dir, train_limit=1)
    return splits.x_test[:size], one_hot(splits.y_test[:size])


def check_expect(names: Sequence[str], model_name: str, known: Sequence[str]) -> None:
    """Every ``--expect`` name must be one of the model's gradient tensors or checks."""
    known = (*known, *CHECK_NAMES)
    for name in names:
        if name not in known:
            raise ConfigError(f"--expect must name one of {', '.join(known)} for --model "
                              f"{model_name}; got {name!r}")


def check_gradients(args: argparse.Namespace, out=None):
    """Run the audit the options describe; print the table; write JSON and plot if asked."""
    from tfhybrid.audit.core import audit
    from tfhybrid.audit.table import format_table

    model = registry.build(args.model, seed=args.seed, **args.rules)
    check_expect(args.expect, args.model, registry.gradient_names(model))
    x, y = mnist_batch(args.data_dir, args.batch)
    twin = registry.exact_twin(args.model, model)  # the update check takes the true step
    report = audit(model, x, y, expect=args.expect, seed=args.seed, update_model=twin)
    print(format_table(report), file=out)
    if args.json:
        record = {"images": f"the first {args.batch} MNIST test images", **report.to_dict()}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if args.plot:
        from tfhybrid.audit.plots import plot_report

        plot_report(report, args.plot)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    outcome = {}

    def job():
        outcome["report"] = check_gradients(parse_options(argv))

    code = run(job)
    if code or "report" not in outcome:
        return code
    return 0 if outcome["report"].ok else EXIT_MISMATCH
