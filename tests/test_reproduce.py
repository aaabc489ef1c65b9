"""scripts/reproduce.py: the article's program over seeds, its report, and picking up a
reproduction where a kill stopped it."""

from __future__ import annotations

import json

import pytest

from tfhybrid.errors import ConfigError
from tfhybrid.reproduce import parse_seeds, reproduce

QUICK = dict(epochs=1, train_limit=300, test_limit=200)


def test_seed_lists_and_ranges():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,0-1,3") == [0, 1, 3]
    for bad in ("", "4-1", "a", "-2"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_report_over_seeds_and_resume_after_a_kill(mnist_like_dir, tmp_path):
    lines = []
    report = reproduce(
        [0, 1],
        tmp_path,
        ["article", "exact-bias"],
        log=lines.append,
        data_dir=str(mnist_like_dir),
        **QUICK,
    )
    article = report["variants"]["article"]
    assert article["seeds"] == [0, 1] and len(article["test_accuracy"]) == 2
    assert len(article["cost_mean"]) == 1 and article["test_accuracy_sd"] >= 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert (
        saved["variants"]["exact-bias"]["test_accuracy"]
        == report["variants"]["exact-bias"]["test_accuracy"]
    )
    text = (tmp_path / "report.md").read_text()
    assert "0.9695" in text and "mean ± sd" in text
    assert (tmp_path / "report.png").stat().st_size > 0

    # As if killed: one run never finished (checkpoint only), one never started.
    (tmp_path / "article" / "seed-1" / "metrics.json").unlink()
    for name in ("metrics.json", "params.npz", "checkpoint.npz"):
        (tmp_path / "exact-bias" / "seed-0" / name).unlink()
    lines.clear()
    again = reproduce(
        [0, 1],
        tmp_path,
        ["article", "exact-bias"],
        log=lines.append,
        data_dir=str(mnist_like_dir),
        **QUICK,
    )
    assert sum("done, read back" in line for line in lines) == 2
    assert any("article/seed-1: resuming" in line for line in lines)
    assert any("exact-bias/seed-0: training" in line for line in lines)
    assert (
        again["variants"]["exact-bias"]["test_accuracy"]
        == report["variants"]["exact-bias"]["test_accuracy"]
    )  # the same seed, the same run
