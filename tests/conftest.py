"""Shared fixtures: where the MNIST files are, and float64 reference helpers."""

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


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of the four original MNIST files; CI must have it, so never skip there."""
    path = mnist_dir()
    if path is None:
        message = (
            "MNIST files not found: set TFHYBRID_DATA_DIR to the folder holding the four "
            f"original .gz files (default {DEFAULT_DATA_DIR})"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
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
