"""Command line of ``scripts/train.py``: arguments -> TrainConfig -> train_and_evaluate.

Every option is checked before TensorFlow is imported. Errors a user can fix are
printed as one line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from tfhybrid.config import BIAS_GRAD_RULES, DATA_DIR_ENV, DW_MODES, TrainConfig
from tfhybrid.errors import EXIT_INTERRUPTED, EXIT_USAGE, TfhybridError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option yields one line (no usage block) and exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = OneLineParser(
        prog="train.py",
        description="Train the source article's CNN on MNIST with hand-written "
                    "backpropagation (TensorFlow convolutions, NumPy gradients).")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="SGD learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seeds the initial weights and the per-epoch shuffles")
    parser.add_argument("--dw-mode", default=defaults.dw_mode, metavar="|".join(DW_MODES),
                        help="filter gradient: one TF call per batch, or each sample's "
                             "own convolution as the article")
    parser.add_argument("--bias-grad", default=defaults.bias_grad,
                        metavar="|".join(BIAS_GRAD_RULES),
                        help="seed: the article's db1 (1/400 of the true gradient); "
                             "exact: the true gradient")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the four original MNIST .gz files "
                             f"(else ${DATA_DIR_ENV}, else tensorflow-datasets downloads them)")
    parser.add_argument("--out", default=None,
                        help="output folder for metrics.json and params.npz "
                             "(default: a new folder under runs/)")
    parser.add_argument("--train-limit", type=int, default=None, metavar="N",
                        help="use only the first N training images (quick runs)")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse and validate; raises ConfigError (or exits 2 for unparsable values)."""
    args = build_parser().parse_args(argv)
    return TrainConfig(**{k: v for k, v in vars(args).items()}).validated()


def default_workdir(config: TrainConfig) -> str:
    return f"runs/{time.strftime('%Y%m%d-%H%M%S')}-seed{config.seed}"


def run(main: Callable[[], object]) -> int:
    """Call ``main``; turn user-fixable errors and Ctrl-C into one line and an exit code."""
    try:
        main()
    except TfhybridError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    def job():
        config = parse_config(argv)
        from tfhybrid.training import train_and_evaluate  # imports TensorFlow

        train_and_evaluate(config, config.out or default_workdir(config))

    return run(job)
