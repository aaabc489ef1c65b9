"""Time the hybrid training step against TensorFlow autodiff, Keras and a FLOP floor.

    python scripts/benchmark.py                          # the table, the batch-size scaling
    python scripts/benchmark.py --json bench.json        # also write every figure to a file
    python scripts/benchmark.py --full-run --data-dir ../shared/mnist   # + the real 10 epochs

Figures only, never a pass/fail: see tfhybrid/benchmark.py for what is measured and how.
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone, no install

from tfhybrid import benchmark as bench  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="benchmark.py", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=60,
                        help="timed steps per method (the median is reported; at least 50)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--methods", default=",".join(bench.METHODS),
                        help=f"comma-separated subset of {','.join(bench.METHODS)}")
    parser.add_argument("--scaling", default="100,1000,10000",
                        help="batch sizes of the scaling table ('' for none)")
    parser.add_argument("--full-run", action="store_true",
                        help="also run scripts/train.py (10 epochs) and report wall time and "
                             "peak memory; needs --data-dir or $TFHYBRID_DATA_DIR")
    parser.add_argument("--data-dir", default=os.environ.get("TFHYBRID_DATA_DIR"))
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one method, one process
    args = parser.parse_args(argv)
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(bench.METHODS)
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {bench.METHODS}")
    if args.full_run and not args.data_dir:
        parser.error("--full-run needs --data-dir (or TFHYBRID_DATA_DIR)")
    args.methods = methods
    args.scaling = tuple(int(s) for s in args.scaling.split(",") if s)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(bench.worker(args.worker, args.batch, args.steps, args.warmup)))
        return 0
    report = bench.benchmark(args.batch, args.steps, args.warmup, args.methods, args.scaling,
                             args.data_dir if args.full_run else None,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    report["command"] = " ".join(["python", "scripts/benchmark.py", *sys.argv[1:]])
    print(bench.format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
