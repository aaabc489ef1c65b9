"""Damaged MNIST folders, crafted in a temporary folder from the synthetic MNIST: one clear
line, exit 2, no traceback. What only the original files show (their checksums, another
dataset's files recognised) reads the real MNIST."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from tests.conftest import MNIST_LIKE_TEST, MNIST_LIKE_TRAIN, run_train_script
from tests.test_cli import assert_one_line_error, link_originals
from tfhybrid.data import (
    MNIST_FILES,
    SPLIT_FILES,
    SYNTHETIC_KIND,
    SYNTHETIC_MARKER,
    identify_dataset,
    load_mnist,
    read_mnist_folder,
    registered_mismatches,
    synthetic_counts,
    write_synthetic_mnist,
)

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def original_raw(data_dir, name) -> bytes:
    with gzip.open(data_dir / name) as handle:
        return handle.read()


def write_gz(path, raw: bytes) -> None:
    with gzip.open(path, "wb") as handle:
        handle.write(raw)


def damage(kind: str, data_dir, folder):
    """Make one kind of damage in ``folder`` (the other files link to the originals)."""
    target = {"wrong image size": TRAIN_IMAGES}.get(kind, TRAIN_LABELS)
    link_originals(data_dir, folder, skip={target})
    path = folder / target
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes((data_dir / target).read_bytes()[:3000])
    elif kind == "not gzip":
        path.write_bytes(original_raw(data_dir, target))
    elif kind == "wrong magic":
        raw = original_raw(data_dir, target)
        write_gz(path, struct.pack(">I", 0x00000802) + raw[4:])
    elif kind == "wrong image size":
        write_gz(path, idx_bytes(np.zeros((60000, 27, 27)), 0x00000803))
    elif kind == "counts disagree":
        raw = original_raw(data_dir, target)
        labels = np.frombuffer(raw, np.uint8, offset=8)[:-1]
        write_gz(path, idx_bytes(labels, 0x00000801))
    elif kind == "label outside 0-9":
        labels = np.frombuffer(original_raw(data_dir, target), np.uint8, offset=8).copy()
        labels[123] = 10
        write_gz(path, idx_bytes(labels, 0x00000801))
    elif kind == "a folder":
        path.mkdir()
    elif kind == "missing":
        pass
    return target


CASES = {  # kind -> words the message must contain
    "missing": ["missing"],
    "empty": ["empty"],
    "truncated": ["truncated"],
    "not gzip": ["not gzip"],
    "wrong magic": ["magic number 0x00000802", "0x00000801"],
    "wrong image size": ["27x27", "28x28"],
    "counts disagree": [f"{MNIST_LIKE_TRAIN} images", f"{MNIST_LIKE_TRAIN - 1} labels"],
    "label outside 0-9": ["10", "outside 0-9"],
    "a folder": ["is a folder", "not the MNIST file"],
}


@pytest.mark.parametrize("kind", CASES)
def test_damaged_file_gives_one_clear_line(kind, mnist_like_dir, tmp_path):
    folder = tmp_path / "mnist"
    target = damage(kind, mnist_like_dir, folder)
    result = run_train_script("--data-dir", str(folder), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, target, str(folder), *CASES[kind])
    assert "replace" in result.stderr or "put the four" in result.stderr  # names the fix


def test_recompressed_files_load_with_a_notice(data_dir, tmp_path):
    """Valid MNIST that is not byte-identical to the registered download: notice, then load."""
    folder = tmp_path / "mnist"
    link_originals(data_dir, folder, skip={TRAIN_LABELS, "t10k-images-idx3-ubyte.gz"})
    with gzip.open(folder / TRAIN_LABELS, "wb", compresslevel=1) as handle:
        handle.write(original_raw(data_dir, TRAIN_LABELS))
    # and one file in plain, uncompressed IDX form
    (folder / "t10k-images-idx3-ubyte").write_bytes(
        original_raw(data_dir, "t10k-images-idx3-ubyte.gz")
    )
    notices = []
    splits = load_mnist(str(folder), train_limit=500, notice=notices.append)
    assert len(notices) == 1 and "SHA-256" in notices[0] and TRAIN_LABELS in notices[0]
    assert "t10k-images-idx3-ubyte" in notices[0]
    parsed = read_mnist_folder(data_dir)
    train_images, train_labels = parsed["train"]
    assert splits.x_train.shape == (500, 28, 28, 1) and splits.x_train.dtype == np.float32
    np.testing.assert_array_equal(splits.y_train, train_labels[5000:5500])
    np.testing.assert_array_equal(splits.y_val, train_labels[:5000])
    assert float(splits.x_test.max()) == 1.0 and splits.x_test.shape == (10000, 28, 28, 1)
    np.testing.assert_allclose(splits.x_train[0, :, :, 0], train_images[5000] / 255.0, rtol=1e-6)


def test_original_folder_validates(data_dir):
    """The originals pass every check: parsed whole, and recognised byte for byte."""
    parsed = read_mnist_folder(data_dir)
    assert {k: (v[0].shape, v[1].shape) for k, v in parsed.items()} == {
        "train": ((60000, 28, 28), (60000,)),
        "test": ((10000, 28, 28), (10000,)),
    }
    for images, labels in parsed.values():
        assert images.dtype == labels.dtype == np.uint8 and int(labels.max()) == 9
    assert registered_mismatches(data_dir) == [] and identify_dataset(data_dir) == "mnist"
    assert len(MNIST_FILES) == 4


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path):
    afile = tmp_path / "mnist.gz"
    afile.write_bytes(b"x")
    result = run_train_script("--data-dir", str(afile), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, str(afile), "is a file, not a folder", "--data-dir")


def test_offline_without_a_data_dir_fails_in_seconds(monkeypatch):
    """tfds would retry a failing download for minutes; the probe answers in seconds."""
    import time

    from tfhybrid import data
    from tfhybrid.errors import DataError

    monkeypatch.setattr(data, "_is_prepared", lambda tfds, dataset: False)
    monkeypatch.setattr(data, "_download_url", lambda dataset: "http://127.0.0.1:9/mnist.gz")
    started = time.perf_counter()
    with pytest.raises(DataError, match="download cannot start .* pass --data-dir"):
        load_mnist(None)
    assert time.perf_counter() - started < 2 * data.DOWNLOAD_PROBE_SECONDS + 5


def test_download_probe_reports_why():
    from tfhybrid.data import download_reachable

    assert download_reachable("http://127.0.0.1:9/", timeout=2) is not None  # nothing listens
    assert "gaierror" in (download_reachable("https://no-such-host.invalid/x", timeout=2) or "")


def test_folder_of_another_dataset_is_named(data_dir, tmp_path):
    result = run_train_script(
        "--dataset", "kmnist", "--data-dir", str(data_dir), "--out", str(tmp_path / "run")
    )
    assert_one_line_error(result, "holds the mnist files, not kmnist", "--dataset mnist")


def test_the_synthetic_set_is_four_idx_files_with_a_declaration(mnist_like_dir):
    """write_synthetic_mnist writes MNIST's format byte for byte: gzip, magic, big-endian sizes."""
    sizes = {"train": MNIST_LIKE_TRAIN, "test": MNIST_LIKE_TEST}
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        images = original_raw(mnist_like_dir, images_name)
        labels = original_raw(mnist_like_dir, labels_name)
        assert struct.unpack(">4I", images[:16]) == (0x00000803, sizes[split], 28, 28)
        assert struct.unpack(">2I", labels[:8]) == (0x00000801, sizes[split])
        assert len(images) == 16 + sizes[split] * 784 and len(labels) == 8 + sizes[split]
    assert synthetic_counts(mnist_like_dir) == sizes
    parsed = read_mnist_folder(mnist_like_dir)
    for images, labels in parsed.values():
        assert images.dtype == labels.dtype == np.uint8 and set(np.unique(labels)) == set(range(10))
        assert images.max() == 255 and (images == 0).mean() > 0.5  # MNIST's black background
    notices = []
    splits = load_mnist(str(mnist_like_dir), train_limit=500, notice=notices.append)
    assert notices == []  # declared synthetic: nothing to compare with the registered files
    assert splits.x_train.shape == (500, 28, 28, 1) and splits.x_val.shape == (5000, 28, 28, 1)
    assert splits.x_test.shape == (MNIST_LIKE_TEST, 28, 28, 1) and splits.x_test.dtype == np.float32
    np.testing.assert_array_equal(splits.y_train, parsed["train"][1][5000:5500])
    np.testing.assert_array_equal(splits.y_test, parsed["test"][1])


def test_without_its_declaration_a_small_set_is_refused_as_mnist(mnist_like_dir, tmp_path):
    """The synthetic counts hold only where synthetic-mnist.json declares them."""
    folder = tmp_path / "mnist"
    link_originals(mnist_like_dir, folder, skip={SYNTHETIC_MARKER})
    result = run_train_script("--data-dir", str(folder), "--out", str(tmp_path / "run"))
    assert_one_line_error(
        result, f"hold {MNIST_LIKE_TRAIN} examples", "MNIST's train split has 60000", "original"
    )


@pytest.mark.parametrize(
    "marker,needles",
    [
        ("{not json", ["cannot be read"]),
        ('{"kind": "something else", "train": 6000, "test": 10}', ["not describe"]),
        (f'{{"kind": "{SYNTHETIC_KIND}", "train": 5000, "test": 10}}', ["more than 5000"]),
        (f'{{"kind": "{SYNTHETIC_KIND}", "train": 6000, "test": 10}}', ["declares 6000"]),
    ],
)
def test_a_wrong_declaration_gives_one_clear_line(marker, needles, mnist_like_dir, tmp_path):
    folder = tmp_path / "mnist"
    link_originals(mnist_like_dir, folder, skip={SYNTHETIC_MARKER})
    (folder / SYNTHETIC_MARKER).write_text(marker)
    result = run_train_script("--data-dir", str(folder), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, SYNTHETIC_MARKER, str(folder), *needles)


def test_write_synthetic_mnist_refuses_sizes_that_leave_nothing_to_train(tmp_path):
    with pytest.raises(ValueError, match="5000"):
        write_synthetic_mnist(tmp_path, train=5000, test=10)
    with pytest.raises(ValueError, match="test"):
        write_synthetic_mnist(tmp_path, train=6000, test=0)
    assert not list(tmp_path.iterdir())
