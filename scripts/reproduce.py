"""The article's program once per seed, and a report of the spread beside the article's run.

    python scripts/reproduce.py --seeds 0-4 --data-dir ../shared/mnist
    python scripts/reproduce.py --seeds 0-2 --epochs 2 --train-limit 5000 --out runs/quick

Runs the article's network (seed-cnn) in three variants (the article's program,
--dw-mode per-sample, --bias-grad exact) for every seed, each in OUT/VARIANT/seed-N, then
writes OUT/report.md, report.json and report.png. Run again after a kill: finished runs are
read back, interrupted ones resumed from their checkpoint.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone, no install

from tfhybrid.cli import OneLineParser, add_data_dir_option, add_limit_options, run  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    from tfhybrid.reproduce import VARIANT_HELP

    parser = OneLineParser(prog="reproduce.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", default="0-4", help="a range or list, e.g. 0-4 or 0,3,7 (default 0-4)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANT_HELP),
        help="comma-separated: " + "; ".join(f"{k}: {v}" for k, v in VARIANT_HELP.items()),
    )
    parser.add_argument("--epochs", type=int, default=10, help="default 10, as the article")
    add_limit_options(parser)
    add_data_dir_option(parser)
    parser.add_argument(
        "--out",
        default="runs/reproduce",
        help="folder of the runs and the report (default runs/reproduce)",
    )
    return parser


def main(argv=None) -> int:
    def job():
        args = build_parser().parse_args(argv)
        from tfhybrid.reproduce import parse_seeds, reproduce

        seeds = parse_seeds(args.seeds)
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        reproduce(
            seeds,
            args.out,
            variants,
            epochs=args.epochs,
            train_limit=args.train_limit,
            test_limit=args.test_limit,
            data_dir=args.data_dir,
            log=lambda line: print(line, flush=True),
        )

    # An interrupted reproduction resumes when the same command runs again.
    return run(job, resume_hint=lambda run_dir: "the same reproduce command again")


if __name__ == "__main__":
    sys.exit(main())
