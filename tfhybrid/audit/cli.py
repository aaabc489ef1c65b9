"""Command line of ``scripts/check_gradients.py``: options -> batch and model -> audit.

The network is one of the catalog's, one defined outside the project (``--model
MODULE:NAME`` or ``--model path/to/file.py:NAME``), or a training run's at its saved
parameters (``--from RUN_DIR``).

Options are checked before TensorFlow is imported (an outside network's module is
imported right after); a bad one is one line on stderr and exit code 2. ``--expect``
names depend on the model's architecture, so they are checked right after the model is
built (before MNIST is read). Exit code 0 when every gradient matches (or only the
``--expect``ed ones do not), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from tfhybrid.audit import external, registry, saved_run
from tfhybrid.audit.registry import CHECK_NAMES, OPTION_FLAGS
from tfhybrid.catalog import MODEL_NAMES
from tfhybrid.cli import OneLineParser, add_data_dir_option, program_name, run
from tfhybrid.config import _check_choice, _check_int, resolve_data_dir
from tfhybrid.errors import ConfigError

EXIT_MISMATCH = 1
DEFAULT_BATCH = 8
MNIST_TEST_SIZE = 10_000
MNIST_SHAPE, MNIST_CLASSES = (28, 28, 1), 10


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=program_name("check_gradients.py"),
        description="Audit the hand-written gradients: manual vs tf.GradientTape (float32, "
        "float64) vs float64 finite differences, on real MNIST test images.",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="|".join(MODEL_NAMES) + "|MODULE:NAME|FILE.py:NAME",
        help="the network to audit (default seed-cnn); it scales the "
        "[0, 1] images itself, as in training. MODULE:NAME or "
        "FILE.py:NAME: a tfhybrid.Sequential defined outside the "
        "project, or a function returning one (called with no "
        "arguments), taking [28,28,1] images to 10 classes",
    )
    parser.add_argument(
        "--from",
        dest="run_dir",
        default=None,
        metavar="RUN_DIR",
        help="audit a training run at its saved parameters (RUN_DIR/params.npz, "
        "else its checkpoint), with its model and options",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seeds the initial weights and the finite-difference coordinates "
        "(default 0; with --from, the run's seed, and the weights are the "
        "run's; for MODULE:NAME, the weights are the network's own)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help="audit on the first N MNIST test images",
    )
    for rule in OPTION_FLAGS:
        parser.add_argument(
            rule.flag,
            default=None,
            metavar="|".join(rule.choices),
            help=f"{rule.help}; only for --model {' or '.join(rule.models)}",
        )
    add_data_dir_option(parser)
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="TENSOR",
        help="a mismatch you know of (e.g. db1 under --bias-grad seed); "
        "repeatable; it no longer fails the exit code",
    )
    parser.add_argument(
        "--per-example",
        action="store_true",
        help="also audit each image's own gradient of every parameter against a "
        "per-image tape and finite differences, and their sum against the batch gradient",
    )
    parser.add_argument(
        "--json", default=None, metavar="FILE", help="write every figure of the report as JSON"
    )
    parser.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="write dw1 heatmaps and per-tensor error bars as PNG",
    )
    parser.add_argument(
        "--html",
        default=None,
        metavar="FILE.html",
        help="write the backward-pass page: one self-contained HTML file, each layer "
        "as the chain rule in pictures, manual beside the tape (opens offline)",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check every option; raises ConfigError (or exits 2 when unparsable).

    Sets ``args.external`` (a :class:`external.External` or None), ``args.run`` (a
    :class:`saved_run.SavedRun` or None) and ``args.rules`` / ``args.options`` (the model
    options the network is built with: the gradient rules / every option).
    """
    args = build_parser().parse_args(argv)
    args.external = args.run = None
    if args.run_dir is not None:
        args.run = saved_run.read_run(args.run_dir)
        if args.model is not None and args.model != args.run.model:
            raise ConfigError(
                f"--model {args.model} contradicts --from {args.run_dir}, a run "
                f"of {args.run.model}; leave --model out"
            )
        args.model = args.run.model
    elif args.model is not None and external.is_external(args.model):
        args.external = external.parse_external(args.model)
    args.model = args.model or "seed-cnn"
    if args.external is None:
        _check_model_name(args.model)
    if args.seed is None:
        args.seed = args.run.seed if args.run is not None else 0
    _check_int("--seed", args.seed, minimum=0)
    _check_int("--batch", args.batch, minimum=1)
    if args.batch > MNIST_TEST_SIZE:
        raise ConfigError(
            f"--batch must not exceed the {MNIST_TEST_SIZE} MNIST test images, got {args.batch}"
        )
    args.rules = _rules(args)
    # A saved run's own options, but for one computed alike that the command line chose.
    args.options = {**args.run.options, **args.rules} if args.run is not None else dict(args.rules)
    if args.plot is not None and Path(args.plot).suffix.lower() != ".png":
        raise ConfigError(f"--plot must name a .png file, got {args.plot!r}")
    if args.html is not None and Path(args.html).suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--html must name a .html file, got {args.html!r}")
    for flag, path in (("--json", args.json), ("--plot", args.plot), ("--html", args.html)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise ConfigError(f"{flag}: the folder of {path!r} does not exist")
        if path is not None:
            _check_writable(flag, Path(path))
    args.data_dir = resolve_data_dir(args.data_dir)
    return args


def _check_writable(flag: str, path: Path) -> None:
    """Write the file once now, empty, so an unwritable place fails before the audit runs
    (a file that was not there is removed again)."""
    if path.is_dir():
        raise ConfigError(f"{flag}: {str(path)!r} is a folder; give a file name")
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as err:
        raise ConfigError(
            f"{flag}: cannot write {str(path)!r} ({err.strerror}); choose another place"
        ) from None


def _check_model_name(name: str) -> None:
    if name in MODEL_NAMES:
        return
    if name.endswith(".py"):
        raise ConfigError(
            f"--model {name}: name the network in the file after a colon, --model {name}:NAME"
        )
    raise ConfigError(
        f"--model must be one of {', '.join(MODEL_NAMES)}, or "
        f"{external.EXTERNAL_FORMS} for a network of your own; got {name!r}"
    )


def _rules(args: argparse.Namespace) -> dict[str, str]:
    """Model option -> choice, for the options (gradient rules and others) this model takes."""
    rules = {}
    for rule in OPTION_FLAGS:
        value = getattr(args, rule.keyword)
        if args.external is not None:
            if value is not None:
                raise ConfigError(
                    f"{rule.flag} applies only to the built-in "
                    f"{', '.join(rule.models)}, not to --model {args.model}: "
                    "give its layers the rule you want"
                )
            continue
        if args.model not in rule.models:
            if value is not None:
                raise ConfigError(
                    f"{rule.flag} applies only to --model "
                    f"{' or '.join(rule.models)}, not {args.model}"
                )
            continue
        if args.run is not None and not (rule.computes_alike and value is not None):
            saved = args.run.options.get(rule.keyword, rule.default)
            if value is not None and value != saved:
                raise ConfigError(
                    f"{rule.flag} {value} contradicts --from {args.run_dir}, "
                    f"trained with {rule.flag} {saved}; leave {rule.flag} out"
                )
            value = saved
        _check_choice(rule.flag, value if value is not None else rule.default, rule.choices)
        rules[rule.keyword] = value if value is not None else rule.default
    return rules


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
            raise ConfigError(
                f"--expect must name one of {', '.join(known)} for --model "
                f"{model_name}; got {name!r}"
            )


def check_mnist_shapes(model, name: str) -> None:
    """An outside network must take MNIST images [N,28,28,1] and give 10 classes."""
    shape, classes = tuple(model.input_shape), tuple(model.output_shape)
    if shape != MNIST_SHAPE:
        raise ConfigError(
            f"--model {name} takes inputs {shape}; the audit feeds MNIST images "
            f"{MNIST_SHAPE}: build it with input_shape={MNIST_SHAPE}"
        )
    if classes != (MNIST_CLASSES,):
        raise ConfigError(
            f"--model {name} gives {classes[-1]} outputs; MNIST has "
            f"{MNIST_CLASSES} classes: end it with Dense({MNIST_CLASSES})"
        )


def check_per_example(model, name: str) -> None:
    """--per-example needs samples with gradients of their own, and for a network that
    draws one mask per batch, a loss linear in the labels (per_example.whole_batch_shares)."""
    from tfhybrid.audit.per_example import whole_batch_shares

    for index, layer in enumerate(getattr(model, "layers", ())):
        if getattr(layer, "couples_batch", False):
            raise ConfigError(
                f"--per-example: --model {name} has layer {index} ({type(layer).__name__}), "
                "whose batch statistics couple the samples, so no sample has a gradient of "
                "its own; leave out --per-example"
            )
    try:
        whole_batch_shares(model)
    except ValueError as err:
        raise ConfigError(f"--per-example: {err}") from None


def network(args: argparse.Namespace):
    """(the network to audit, the twin whose update step is checked, a line saying where
    the network and its weights come from, or None)."""
    if args.external is not None:
        model = external.load_external(args.external)
        check_mnist_shapes(model, args.model)
        return model, model, f"network: {args.model} ({model.name}, weights its own)"
    if args.run is not None:
        model = saved_run.build_from_run(args.run, args.options)
        about = f"parameters: {args.run.source} ({args.run.model} {args.run.when})"
    else:
        model = registry.build(args.model, seed=args.seed, **args.options)
        about = None
    return model, registry.exact_twin(args.model, model), about


def check_gradients(args: argparse.Namespace, out=None):
    """Run the audit the options describe; print the table; write JSON, plot and page if
    asked."""
    from tfhybrid.audit.core import audit
    from tfhybrid.audit.table import format_table

    model, twin, about = network(args)  # twin: the update check takes the true step
    if args.per_example:
        check_per_example(model, args.model)
    check_expect(args.expect, args.model, registry.gradient_names(model))
    x, y = mnist_batch(args.data_dir, args.batch)
    try:
        report = audit(
            model,
            x,
            y,
            expect=args.expect,
            seed=args.seed,
            update_model=twin,
            per_example=args.per_example,
        )
    except Exception as err:
        if args.external is None:
            raise  # the project's own networks: a bug of ours, with its traceback
        # A network of one's own whose code fails (a backward that raises, or returns dx of
        # the wrong shape): one line that names it, as every other bad input gets.
        raise ConfigError(
            f"--model {args.model}: the network's own code failed in the audit "
            f"({type(err).__name__}: {err}); fix it, then check its layers one by one with "
            "tfhybrid.audit.check_layer"
        ) from None
    if about:
        print(about, file=out)
    print(format_table(report), file=out)
    if args.json:
        record = {
            "images": f"the first {args.batch} MNIST test images",
            "network": args.model,
            **({"parameters": args.run.source} if args.run is not None else {}),
            **report.to_dict(),
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if args.plot:
        from tfhybrid.audit.plots import plot_report

        plot_report(report, args.plot)
    if args.html:
        from tfhybrid.audit.html import write_html

        write_html(report, args.html, title=args.model)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    outcome = {}

    def job():
        outcome["report"] = check_gradients(parse_options(argv))

    code = run(job)
    if code or "report" not in outcome:
        return code
    return 0 if outcome["report"].ok else EXIT_MISMATCH
