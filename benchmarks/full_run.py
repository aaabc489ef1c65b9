"""``scripts/train.py --model NAME`` end to end (imports, data loading, training at the
model's source settings, evaluation): its wall time, peak RSS and the metrics it wrote."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.memory import REPO, run_subprocess


def full_run(model: str, data_dir: str) -> dict:
    """Run training in a subprocess, into a temporary folder deleted afterwards.

    Reads ``metrics.json``: "test_accuracy", "epochs" [{"seconds"}], "total_seconds",
    "data_seconds" (None where the run wrote none of it).
    """
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as log:
        out = Path(tmp) / "run"
        args = [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            "--model",
            model,
            "--data-dir",
            data_dir,
            "--out",
            str(out),
        ]
        start = time.perf_counter()
        code, peak = run_subprocess(args, log)
        wall = time.perf_counter() - start
        log.seek(0)
        text = log.read()
        try:
            metrics = json.loads((out / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
    epochs = metrics.get("epochs") or []
    return {
        "model": model,
        "command": f"python scripts/train.py --model {model} --data-dir {data_dir}",
        "exit_code": code,
        "wall_seconds": wall,
        "peak_rss_mb": peak,
        "data_seconds": metrics.get("data_seconds"),
        "total_seconds": metrics.get("total_seconds"),
        "epoch_seconds": [row.get("seconds") for row in epochs if isinstance(row, dict)],
        "test_accuracy": metrics.get("test_accuracy"),
        "log_tail": text.strip().splitlines()[-3:],
    }
