"""scripts/check_gradients.py as a user runs it: exit codes 0, 1 and 2, JSON and plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from tests.test_cli import assert_one_line_error
from tfhybrid.audit import cli
from tfhybrid.data import one_hot


def run_check(*args: str, env_extra: dict | None = None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_gradients.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--batch", "0"], ["--batch", "0"]),
        (["--batch", "20000"], ["--batch", "10000", "20000"]),
        (["--seed", "-1"], ["--seed", "-1"]),
        (["--bias-grad", "half"], ["--bias-grad", "half", "exact"]),
        (["--model", "resnet"], ["--model", "resnet", "seed-cnn"]),
        (["--expect", "dw9"], ["--expect", "dw9", "db1"]),
        (["--plot", "errors.jpg"], ["--plot", "errors.jpg", ".png"]),
        (["--json", "/no/such/folder/report.json"], ["--json", "/no/such/folder"]),
        (["--batch", "many"], ["--batch", "many"]),
    ],
)
def test_bad_option_gives_one_line_and_exit_2(args, needles):
    assert_one_line_error(run_check(*args), *needles)


def test_default_run_fails_on_the_seed_bias_rule_only(mnist_like_dir):
    result = run_check("--batch", "2", "--data-dir", str(mnist_like_dir))
    assert result.returncode == 1, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line[:1] == "d"}
    assert "off by a constant factor 1/400" in rows["db1"]
    assert all(rows[name].endswith("match") for name in ("dw1", "dw2", "db2", "dz2", "dz1"))
    assert "UNEXPECTED mismatch: db1" in result.stdout


def test_expected_mismatch_exits_0_and_writes_json_and_plot(mnist_like_dir, tmp_path):
    report, plot = tmp_path / "audit.json", tmp_path / "audit.png"
    result = run_check(
        "--batch",
        "2",
        "--expect",
        "db1",
        "--json",
        str(report),
        "--plot",
        str(plot),
        env_extra={"TFHYBRID_DATA_DIR": str(mnist_like_dir)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(report.read_text())
    assert record["ok"] and record["mismatches"] == ["db1"] and record["expected"] == ["db1"]
    assert record["update"]["passed"] and record["update"]["settings"]["bias_grad"] == "exact"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def random_images(monkeypatch):
    """In-process runs on random images instead of MNIST: the exit-code logic only."""

    def fake_batch(_data_dir, size):
        rng = np.random.default_rng(size)
        return rng.random((size, 28, 28, 1)).astype(np.float32), one_hot(rng.integers(0, 10, size))

    monkeypatch.setattr(cli, "mnist_batch", fake_batch)


@pytest.mark.parametrize(
    "args,code",
    [
        (["--bias-grad", "exact"], 0),
        (["--bias-grad", "exact", "--expect", "dw1"], 0),  # expecting what matches is harmless
        ([], 1),
        (["--expect", "dw1"], 1),  # the wrong name expected: db1 still fails
        (["--expect", "db1"], 0),
    ],
)
def test_exit_code_follows_expect(random_images, capsys, args, code):
    assert cli.main(["--batch", "2", *args]) == code
    assert "update check" in capsys.readouterr().out


def test_per_example_and_dw_mode_from_the_command_line(mnist_like_dir, tmp_path):
    report = tmp_path / "audit.json"
    result = run_check(
        "--batch", "2", "--dw-mode", "per-sample", "--per-example", "--expect", "db1",
        "--json", str(report), "--data-dir", str(mnist_like_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dw_mode per-sample" in result.stdout
    assert "dw1:per-example" in result.stdout and "per-example gradient norms" in result.stdout
    assert "layer at fault: 0 (Conv2D, output z1)" in result.stdout
    assert "1/400 = 1/Ho*Wo (20x20 output positions)" in result.stdout
    record = json.loads(report.read_text())
    assert record["layer_at_fault"] == 0 and len(record["per_example_norms"]["w1"]) == 2
    assert "db1:per-example" in record["mismatches"] and record["unexpected"] == []
    refused = run_check("--model", "two-layer-net", "--dw-mode", "per-sample")
    assert_one_line_error(refused, "--dw-mode", "two-layer-net")
