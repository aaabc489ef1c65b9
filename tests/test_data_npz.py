"""Keras's mnist.npz as --data-dir: read with allow_pickle=False, checked like the IDX files.

The .npz files are written in a temporary folder from a synthetic MNIST of MNIST's sizes
(Keras's mnist.npz holds the same arrays as the original .gz files, in the same order).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_train_script
from tests.test_cli import assert_one_line_error
from tfhybrid.data import load_mnist, read_mnist_npz, synthetic_mnist
from tfhybrid.errors import DataError


@pytest.fixture(scope="module")
def arrays():
    parsed = synthetic_mnist(train=60_000, test=10_000)
    return {
        "x_train": parsed["train"][0],
        "y_train": parsed["train"][1],
        "x_test": parsed["test"][0],
        "y_test": parsed["test"][1],
    }


def write_npz(path, arrays, **changes):
    np.savez(path, **{**arrays, **changes})
    return path


def test_mnist_npz_file_or_folder_loads_as_the_idx_files_read_directly(arrays, tmp_path):
    npz = write_npz(tmp_path / "mnist.npz", arrays)
    notices = []
    splits = load_mnist(str(npz), train_limit=100, notice=notices.append)
    assert splits.x_train.shape == (100, 28, 28, 1) and splits.x_train.dtype == np.float32
    assert splits.x_val.shape == (5_000, 28, 28, 1) and len(splits.y_test) == 10_000
    np.testing.assert_array_equal(
        splits.x_val[0, ..., 0], arrays["x_train"][0] * np.float32(1 / 255)
    )
    np.testing.assert_array_equal(splits.y_train, arrays["y_train"][5_000:5_100])
    assert "mnist.npz" in notices[0] and "file order" in notices[0]
    # a folder holding only mnist.npz
    again = load_mnist(str(tmp_path), train_limit=10, notice=notices.append)
    np.testing.assert_array_equal(again.x_test, splits.x_test)


def damaged(kind, arrays, path):
    if kind == "truncated":
        write_npz(path, arrays)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "not zip":
        path.write_bytes(b"\x93NUMPY" + b"\0" * 100)
    elif kind == "foreign":
        np.savez(path, images=np.zeros((3, 28, 28), np.uint8))
    elif kind == "pickled":
        np.savez(path, **{**arrays, "y_test": np.array([{"a": 1}] * 10_000, dtype=object)})
    elif kind == "dtype":
        write_npz(path, arrays, x_test=arrays["x_test"].astype(np.float32))
    elif kind == "count":
        write_npz(path, arrays, y_test=arrays["y_test"][:-1])
    elif kind == "labels":
        labels = arrays["y_train"].copy()
        labels[7] = 12
        write_npz(path, arrays, y_train=labels)
    return path


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("truncated", "truncated or corrupt"),
        ("not zip", "not an .npz file"),
        ("foreign", "holds arrays ['images'], not Keras's MNIST arrays"),
        ("pickled", "only unpickling could read"),
        ("dtype", "array x_test is float32 [10000, 28, 28], Keras's MNIST has uint8"),
        ("count", "array y_test is uint8 [9999]"),
        ("labels", "labels y_train contain 12, outside 0-9"),
    ],
)
def test_a_damaged_or_foreign_npz_gets_one_clear_line(kind, needle, arrays, tmp_path):
    path = damaged(kind, arrays, tmp_path / "mnist.npz")
    with pytest.raises(DataError) as caught:
        read_mnist_npz(path)
    message = str(caught.value)
    assert needle in message and "mnist.npz" in message and "\n" not in message
    assert "replace it with Keras's original mnist.npz" in message


def test_train_script_names_a_foreign_npz_in_one_line(arrays, tmp_path):
    path = damaged("foreign", arrays, tmp_path / "other.npz")
    result = run_train_script("--data-dir", str(path), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "other.npz", "not Keras's MNIST arrays")
