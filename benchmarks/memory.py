"""Peak memory of one method: a step run in a fresh Python process, its VmHWM.

A fresh process per method and batch size, so each peak is that method's own and not
the benchmark's or another method's. Run as ``python -m benchmarks.memory MODEL METHOD
BATCH STEPS WARMUP SEED`` (from the repository), the child prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def status_mb(field: str, pid: int | str = "self") -> float | None:
    """A memory field of /proc/PID/status (VmHWM: peak RSS, VmRSS: current), in MB."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    VmHWM where Linux has it: ``ru_maxrss`` of a process started by another counts the
    starter's memory too (the kernel carries it over at exec), which would charge the
    benchmark's own footprint to every method it launches.
    """
    peak = status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS


def current_rss_mb() -> float:
    rss = status_mb("VmRSS")
    return float("nan") if rss is None else rss


def run_subprocess(args: list[str], stdout, timeout: float | None = None) -> tuple[int, float]:
    """Run ``args`` from the repository; return (exit code, the child's peak RSS in MB).

    The peak is the child's VmHWM, read every 20 ms while it runs (it only grows); where
    /proc is missing, ``ru_maxrss`` from wait4, which may include this process's memory.
    """
    proc = subprocess.Popen(args, stdout=stdout, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = None if timeout is None else time.monotonic() + timeout
    watched = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        watched = status_mb("VmHWM", proc.pid) or watched
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if watched is not None:
        return proc.returncode, watched
    return proc.returncode, usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def worker(model: str, method: str, batch: int, steps: int, warmup: int, seed: int) -> dict:
    """In the fresh process: tune, build the step, run it; the memory it took."""
    from benchmarks.steps import make_step
    from benchmarks.timing import summarise, time_calls
    from tfhybrid._tf import tf  # noqa: F401  (imported before the baseline is read)
    from tfhybrid.runtime import tune_for_training

    tune_for_training()
    baseline = current_rss_mb()
    step = make_step(model, method, batch, seed)
    times = time_calls(step, steps, warmup)
    return {
        "model": model,
        "method": method,
        "batch": batch,
        **summarise(times),
        "rss_before_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure(model: str, method: str, batch: int, seed: int, timeout: float = 1800) -> dict:
    """Peak RSS of ``method`` on ``model`` at ``batch``, from :func:`worker` in a fresh
    process: {"peak_rss_mb", "rss_before_mb" (after imports), ...}, or {"error": ...}."""
    steps, warmup = (10, 3) if batch <= 1000 else (3, 1)
    args = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        model,
        method,
        str(batch),
        str(steps),
        str(warmup),
        str(seed),
    ]
    with tempfile.TemporaryFile("w+") as out:
        code, _ = run_subprocess(args, out, timeout=timeout)
        out.seek(0)
        text = out.read()
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        tail = text.strip().splitlines()[-1:] or [f"exit code {code}"]
        return {"error": tail[0]}
    return json.loads(lines[-1])


if __name__ == "__main__":
    name, how, size, count, warm, start = sys.argv[1:7]
    print(json.dumps(worker(name, how, int(size), int(count), int(warm), int(start))))
