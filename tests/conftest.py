"""Shared fixtures: a synthetic MNIST for most tests, the real files for the few that need
them, and float64 reference helpers.

``mnist_like_dir`` is a small synthetic MNIST (tfhybrid.data.write_synthetic_mnist), written
once per session into a temporary folder: the command line, resume, damaged files, the audit
and training smoke tests run on it anywhere. ``data_dir`` is the real MNIST
(TFHYBRID_DATA_DIR, default ../shared/mnist), for what only real images show: accuracy
figures, the reproduction, checksums, the notebook. Without it those tests are skipped, named
in one line of the summary; under CI they fail.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO.parent / "shared" / "mnist"  # ../shared/mnist beside the clone


def mnist_dir() -> Path | None:
    configured = os.environ.get("TFHYBRID_DATA_DIR")
    path = Path(configured) if configured else DEFAULT_DATA_DIR
    return path if (path / "train-images-idx3-ubyte.gz").is_file() else None


# The synthetic set's sizes: the first 5,000 training images validate, as MNIST's, and
# test_reliability.py trains on 10,000 more; a few hundred test images are plenty.
MNIST_LIKE_TRAIN = 15_000
MNIST_LIKE_TEST = 1_000
NOT_FOUND = "real MNIST files not found"  # starts the reason of every data_dir skip
FIX = "set TFHYBRID_DATA_DIR to the folder holding the four original .gz files"


@pytest.fixture(scope="session")
def mnist_like_dir(tmp_path_factory) -> Path:
    """A synthetic MNIST: the four IDX .gz files under MNIST's names (MNIST_LIKE_TRAIN
    training images, MNIST_LIKE_TEST test images) and the synthetic-mnist.json that declares
    them. --data-dir takes it as it takes MNIST's folder; its accuracies mean nothing."""
    from tfhybrid.data import write_synthetic_mnist

    folder = tmp_path_factory.mktemp("mnist-like")
    return write_synthetic_mnist(folder, train=MNIST_LIKE_TRAIN, test=MNIST_LIKE_TEST)


def data_dir_unset() -> str:
    configured = os.environ.get("TFHYBRID_DATA_DIR")
    if configured:
        return f"TFHYBRID_DATA_DIR={configured}"
    return f"{DEFAULT_DATA_DIR} (TFHYBRID_DATA_DIR unset)"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of the four original MNIST files, for the tests that need the real images
    (accuracy, the reproduction, checksums, the notebook); CI must have it, so never skip
    there. Elsewhere the tests skipped for want of it are named in one line of the summary."""
    path = mnist_dir()
    if path is None:
        message = f"{NOT_FOUND} in {data_dir_unset()}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI runs every test on them; {FIX}")
        pytest.skip(f"{message}; {FIX} to run the tests that need the real images")
    return path


def _needs_real_data(report) -> bool:
    return isinstance(report.longrepr, tuple) and NOT_FOUND in str(report.longrepr[-1])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """One line for every test skipped for want of the real MNIST, in place of -ra's line
    per test; the count of skipped tests at the end still includes them."""
    skipped = terminalreporter.stats.get("skipped", [])
    ours = [report for report in skipped if _needs_real_data(report)]
    if ours:
        terminalreporter.stats["skipped"] = [r for r in skipped if not _needs_real_data(r)]
    try:
        result = yield
    finally:
        if ours:
            terminalreporter.stats["skipped"] = skipped
    if ours:
        files = Counter(Path(report.location[0]).name for report in ours)
        where = ", ".join(f"{name} ({count})" for name, count in sorted(files.items()))
        terminalreporter.write_line(
            f"SKIPPED [{len(ours)}] the tests that need the real MNIST images (accuracy, the "
            f"reproduction, checksums, the notebook) in {where}: {NOT_FOUND} in "
            f"{data_dir_unset()}; {FIX} to run them"
        )
    return result


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def run_train_script(*args: str, env_extra: dict | None = None, cwd: Path | None = None):
    """Run scripts/train.py in a subprocess, as a user would."""
    import subprocess

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or REPO,
        timeout=600,
    )


@pytest.fixture
def readable_path(monkeypatch):
    """The layers run their definitions in tfhybrid/ops/ (as with TFHYBRID_READABLE=1), so a
    bug a test plants in a definition is what the network runs; networks built after it."""
    from tfhybrid import fast

    monkeypatch.setattr(fast, "_readable", True)
