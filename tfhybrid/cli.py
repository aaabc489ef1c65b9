"""Command line of ``scripts/train.py``: arguments -> TrainConfig -> train_and_evaluate.

Every option is checked before TensorFlow is imported. Errors a user can fix are
printed as one line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence

from tfhybrid.catalog import CONVENTIONAL_LR, MODEL_NAMES, MODELS, OPTIONS
from tfhybrid.config import DATA_DIR_ENV, DATASETS, TrainConfig, saved_config
from tfhybrid.errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ConfigError,
    Interrupted,
    TfhybridError,
)
from tfhybrid.optimizers import optimizer_names
from tfhybrid.schedules import SCHEDULES


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option yields one line (no usage block) and exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def program_name(script: str) -> str:
    """How the user called this program: ``script`` (python scripts/NAME.py) or the name of
    the installed console command (tfhybrid-train, ...), for usage lines and hints."""
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return called if called.startswith("tfhybrid-") else script


def command_line(script: str) -> str:
    """The command a user types to run this program again: ``python scripts/NAME.py`` from
    a clone, or the console command when installed."""
    name = program_name(script)
    return name if name.startswith("tfhybrid-") else f"python scripts/{script}"


def resume_command(workdir) -> str:
    """The command that resumes a training run, as the user started it (script or
    console command)."""
    return f"{command_line('train.py')} --resume {shlex.quote(str(workdir))}"


def add_limit_options(parser: argparse.ArgumentParser, *, test: bool = True) -> None:
    """``--train-limit`` and (unless ``test=False``) ``--test-limit``, as every training
    command line takes them."""
    parser.add_argument(
        "--train-limit",
        type=int,
        metavar="N",
        help="use only the first N training images (quick runs)",
    )
    if test:
        parser.add_argument(
            "--test-limit", type=int, metavar="N", help="evaluate on the first N test images only"
        )


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, as every command line of the project takes it (resolve the value
    with :func:`tfhybrid.config.resolve_data_dir`)."""
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the dataset's four original .gz files, or Keras's mnist.npz "
        f"(the file, or a folder holding it) (else ${DATA_DIR_ENV}, else "
        "tensorflow-datasets downloads them)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Options default to "not given" so a resumed run can tell what the user changed."""
    defaults = TrainConfig()
    parser = OneLineParser(
        prog=program_name("train.py"),
        argument_default=argparse.SUPPRESS,
        description="Train a source tutorial's network on MNIST with hand-written "
        "backpropagation (TensorFlow convolutions, NumPy gradients). Unset "
        "options take the chosen model's source settings; the defaults shown "
        "are the article's (seed-cnn).",
    )
    parser.add_argument(
        "--model", metavar="|".join(MODEL_NAMES), help=f"the network, default {defaults.model}"
    )
    parser.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    parser.add_argument(
        "--iterations",
        type=int,
        metavar="N",
        help="count N updates instead of epochs (two-layer-net's default)",
    )
    parser.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    parser.add_argument(
        "--optimizer",
        metavar="|".join(optimizer_names()),
        help=f"default: the model's source optimizer ({defaults.optimizer} for seed-cnn)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        help="learning rate; default: the source's rate for the source's "
        f"optimizer ({defaults.lr} for seed-cnn); momentum: the model's "
        "SGD rate / 10; else the optimizer's conventional rate ("
        + ", ".join(f"{k} {v:g}" for k, v in CONVENTIONAL_LR.items())
        + ")",
    )
    parser.add_argument(
        "--lr-schedule",
        metavar="|".join(SCHEDULES),
        help="how the rate moves over the run: constant (the sources'), or cosine: from "
        "--lr down to 0 at the last update; default: the model's (cosine for resnet-mnist)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help=f"seeds the initial weights and the per-epoch shuffles, default {defaults.seed}",
    )
    for option in OPTIONS:
        models = [name for name, spec in MODELS.items() if option in spec.options]
        parser.add_argument(
            option.flag,
            metavar="|".join(option.choices),
            help=f"{option.help}; for {', '.join(models)}",
        )
    parser.add_argument(
        "--dataset",
        metavar="|".join(DATASETS),
        help="default mnist; all three come as the same four IDX files",
    )
    add_data_dir_option(parser)
    parser.add_argument(
        "--out",
        help="output folder for metrics.json, params.npz and checkpoint.npz "
        "(default: a new folder under runs/)",
    )
    add_limit_options(parser)
    parser.add_argument(
        "--plot",
        action="store_true",
        help="write curves.png (loss, accuracy per epoch) and filters.png "
        "(learned first-layer filters) into the run folder",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="log scalars, filters and gradient histograms to RUN/tensorboard",
    )
    parser.add_argument(
        "--audit-every",
        type=int,
        metavar="N",
        help="audit the hand-written gradients after every N-th epoch on the "
        "first 8 validation images; per-tensor verdicts go into "
        "metrics.json (and TensorBoard), a changed verdict is printed",
    )
    parser.add_argument(
        "--resume", metavar="DIR", help="continue the run saved in DIR from its last checkpoint"
    )
    parser.add_argument(
        "--force", action="store_true", help="let a new run overwrite the run already in --out"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, dict]:
    """-> (validated config, run control {"workdir", "resume", "force"})."""
    given = vars(build_parser().parse_args(argv))
    resume_dir = given.pop("resume", None)
    force = given.pop("force", False)
    if resume_dir is not None:
        if force:
            raise ConfigError("--resume and --force contradict each other; pass one of them")
        if given.get("out", resume_dir) != resume_dir:
            raise ConfigError(
                f"--out {given['out']} differs from --resume {resume_dir}; "
                "a resumed run writes into its own folder"
            )
        from tfhybrid.checkpoint import read_checkpoint

        saved, _ = read_checkpoint(resume_dir)
        trained = saved.get("config", {}).get("model")
        if "model" in given and given["model"] != trained:
            # First: the saved options of another model would be blamed instead.
            raise ConfigError(
                f"--model {given['model']} contradicts the run in {resume_dir}, which trained "
                f"--model {trained}; resume it with its own model (leave out --model)"
            )
        config = saved_config(saved.get("config", {}), **given, out=resume_dir)
        return config.validated(), {"workdir": resume_dir, "resume": True, "force": False}
    if "epochs" in given and "iterations" in given:
        raise ConfigError(
            f"--epochs {given['epochs']} and --iterations {given['iterations']} contradict each "
            "other: a run counts epochs or updates; pass one of them"
        )
    config = TrainConfig.for_model(given.pop("model", "seed-cnn"), **given).validated()
    config.check_limits()
    workdir = config.out or default_workdir(config)
    return config, {"workdir": workdir, "resume": False, "force": force}


def default_workdir(config: TrainConfig) -> str:
    return f"runs/{time.strftime('%Y%m%d-%H%M%S')}-seed{config.seed}"


def run(main: Callable[[], object], resume_hint: Callable[[str], str] = resume_command) -> int:
    """Call ``main``; turn user-fixable errors and Ctrl-C into one line and an exit code.

    ``resume_hint(run_dir)``: how this command resumes an interrupted run (default: the
    training command with --resume)."""
    try:
        main()
    except Interrupted as err:
        print(f"error: {err.with_hint(resume_hint(err.run_dir))}", file=sys.stderr)
        return err.exit_code
    except TfhybridError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    def job():
        config, control = parse_args(argv)
        from tfhybrid.training import train_and_evaluate  # imports TensorFlow

        train_and_evaluate(
            config, control["workdir"], resume=control["resume"], force=control["force"]
        )

    return run(job)
