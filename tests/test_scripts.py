"""The experiment scripts run end to end on a little data and reject bad options in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_script(name, *args, env_extra=None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


def test_compare_optimizers_writes_png_and_json(mnist_like_dir, tmp_path):
    done = run_script(
        "compare_optimizers.py",
        "--iterations",
        "30",
        "--train-limit",
        "500",
        "--batch-size",
        "32",
        "--hidden",
        "20",
        "--data-dir",
        str(mnist_like_dir),
        "--optimizers",
        "sgd,adam,rmsprop",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "optimizers.json").read_text())
    assert set(result["final_smoothed_loss"]) == {"sgd", "adam", "rmsprop"}
    assert all(len(v) == 30 for v in result["losses"].values())
    assert (tmp_path / "optimizers.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_optimizers_rejects_bad_options_in_one_line(tmp_path):
    for args in (["--optimizers", "sgd,lbfgs"], ["--iterations", "0"], ["--batch-size", "x"]):
        done = run_script("compare_optimizers.py", *args, "--out", str(tmp_path))
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow  # loads all of MNIST and evaluates on 10,000 images: about 12 s
def test_measure_pool_ties_quick_run(mnist_like_dir, tmp_path):
    out = tmp_path / "ties.json"
    done = run_script(
        "measure_pool_ties.py",
        "--images",
        "128",
        "--train-steps",
        "2",
        "--data-dir",
        str(mnist_like_dir),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["conv8"]["init"]["w1"]["norm_ratio"] > 1.5  # the flat -0.5 background
    assert "w1" in results["numpy-cnn"]["init"] and "b1" in results["numpy-cnn"]["init"]


def test_benchmark_times_every_method_of_a_network(tmp_path):
    """A smoke run of scripts/benchmark.py: figures are written, none is judged (no timing
    assertion: the benchmark measures, the tests do not)."""
    out = tmp_path / "bench.json"
    done = run_script(
        "benchmark.py",
        "--model",
        "two-layer-net",
        "--per-example",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--no-memory",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    assert {(r["model"], r["method"]) for r in results} == {
        ("two-layer-net", "hybrid"),
        ("two-layer-net", "per-example"),
        ("two-layer-net", "autodiff"),
        ("two-layer-net", "autodiff-xla"),
        ("two-layer-net", "per-example-peer"),
    }
    assert all(r["steps"] == 2 and r["median_ms"] > 0 for r in results)
    assert "× autodiff" in done.stdout and "× XLA autodiff" in done.stdout
