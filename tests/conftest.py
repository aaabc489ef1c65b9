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
NEEDS_REAL_DATA = pytest.StashKey[list]()  # the test files that use data_dir


@pytest.fixture(scope="session")
def mnist_like_dir(tmp_path_factory) -> Path:
    """A synthetic MNIST: the four IDX .gz files under MNIST's names (MNIST_LIKE_TRAIN
    training images, MNIST_LIKE_TEST test images) and the synthetic-mnist.json that declares
    them. --data-dir takes it as it takes MNIST's folder; its accuracies mean nothing."""
    from tfhybrid.data import write_synthetic_mnist

    folder = tmp_path_factory.mktemp("mnist-like")
    return write_synthetic_mnist(folder, train=MNIST_LIKE_TRAIN, test=MNIST_LIKE_TEST)


def pytest_collection_modifyitems(config, items) -> None:
    files = sorted({item.path.name for item in items if "data_dir" in item.fixturenames})
    config.stash[NEEDS_REAL_DATA] = files


@pytest.fixture(scope="session")
def data_dir(request) -> Path:
    """The folder of the four original MNIST files, for the tests that need the real images;
    CI must have it, so never skip there. The skip's reason is the same for every test, so
    -ra (pytest's default here) names them all in one line."""
    path = mnist_dir()
    if path is None:
        configured = os.environ.get("TFHYBRID_DATA_DIR")
        where = (
            f"TFHYBRID_DATA_DIR={configured}"
            if configured
            else f"{DEFAULT_DATA_DIR} (TFHYBRID_DATA_DIR unset)"
        )
        files = ", ".join(request.config.stash.get(NEEDS_REAL_DATA, [])) or "some files"
        fix = "set TFHYBRID_DATA_DIR to the folder holding the four original .gz files"
        if os.environ.get("CI"):
            pytest.fail(f"MNIST files not found in {where}: CI runs every test on them; {fix}")
        pytest.skip(
            f"real MNIST files not found in {where}: skipped the tests that need the real "
            f"images (accuracy, the reproduction, checksums, the notebook) in {files}; "
            f"{fix} to run them"
        )
    return path


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
