"""MNIST through tensorflow-datasets, with the original files checked first.

Online, tfds downloads MNIST itself. Offline, a folder holding the four original
``.gz`` files (``--data-dir`` or ``$TFHYBRID_DATA_DIR``) is handed to tfds as its
manual download folder. Before tfds sees that folder, every file is opened and its
IDX header, sizes, counts and labels are checked, so a damaged file is reported by
name with a fix, instead of as a stack trace from deep inside tfds.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from tfhybrid.errors import DataError

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
VALIDATION_SIZE = 5_000
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

# name -> (kind, expected count, SHA-256 that tensorflow-datasets registers for mnist 3.0.1)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        "images", 60_000, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": (
        "labels", 60_000, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": (
        "images", 10_000, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": (
        "labels", 10_000, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
FIX_HINT = (
    "put the four original MNIST .gz files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) there"
)


@dataclasses.dataclass(frozen=True)
class Splits:
    """Images as float32 [N, 28, 28, 1] in [0, 1]; labels as int64 [N] in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read one gzip-compressed IDX file, raising :class:`DataError` on any damage.

    Returns uint8 [N, 28, 28] for ``kind="images"`` and uint8 [N] for ``"labels"``.
    """
    where = f"{path.name} in {path.parent}"
    if not path.is_file():
        raise DataError(f"MNIST file missing: {where}; {FIX_HINT}")
    if path.stat().st_size == 0:
        raise DataError(f"MNIST file is empty: {where}; replace it with the original file")
    with open(path, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            raise DataError(
                f"MNIST file is not gzip-compressed although named .gz: {where}; "
                "replace it with the original file")
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"MNIST file is truncated or corrupt ({err}): {where}; "
            "replace it with the original file") from None
    expect_magic, ndim = (IDX_IMAGES_MAGIC, 3) if kind == "images" else (IDX_LABELS_MAGIC, 1)
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"MNIST file is too short to hold an IDX header: {where}; "
                        "replace it with the original file")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expect_magic:
        raise DataError(
            f"MNIST file has magic number 0x{magic:08x}, expected 0x{expect_magic:08x} "
            f"for {kind}: {where}; replace it with the original file")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    if kind == "images" and tuple(dims[1:]) != IMAGE_SHAPE:
        raise DataError(
            f"MNIST images are {dims[1]}x{dims[2]}, expected 28x28: {where}; "
            "replace it with the original file")
    payload = len(raw) - header_size
    expected = int(np.prod(dims))
    if payload != expected:
        raise DataError(
            f"MNIST file holds {payload} bytes of data, its header announces {expected} "
            f"(truncated?): {where}; replace it with the original file")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)
    if kind == "labels" and array.size and int(array.max()) >= NUM_CLASSES:
        raise DataError(
            f"MNIST labels contain {int(array.max())}, outside 0-9: {where}; "
            "replace it with the original file")
    return array


def validate_mnist_folder(folder: str | os.PathLike) -> None:
    """Check the four original files in ``folder``: presence, format, counts, checksums."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; {FIX_HINT}, "
                        "or point --data-dir / TFHYBRID_DATA_DIR at the folder that has them")
    counts = {}
    for name, (kind, expected_count, _sha) in MNIST_FILES.items():
        array = read_idx(root / name, kind)
        if len(array) != expected_count:
            raise DataError(
                f"MNIST file holds {len(array)} {kind}, expected {expected_count}: "
                f"{name} in {root}; replace it with the original file")
        counts[name] = len(array)
    for name, (_kind, _count, sha) in MNIST_FILES.items():
        digest = hashlib.sha256((root / name).read_bytes()).hexdigest()
        if digest != sha:
            raise DataError(
                f"{name} in {root} is valid MNIST data but not the original file that "
                "tensorflow-datasets registers (its SHA-256 differs, e.g. it was recompressed); "
                "replace it with the original download")


def load_mnist(data_dir: str | None, train_limit: int | None = None) -> Splits:
    """Load train (tfds ``train[5000:]``), validation (``train[:5000]``) and test splits.

    ``data_dir`` is the manual download folder (None: let tfds download).
    ``train_limit`` keeps only the first N training images.
    """
    if data_dir is not None:
        validate_mnist_folder(data_dir)
    # Deferred: TensorFlow takes seconds to import; _tf imports it without its log noise.
    from tfhybrid import _tf  # noqa: F401, I001
    import tensorflow_datasets as tfds

    end = "" if train_limit is None else str(VALIDATION_SIZE + train_limit)
    splits = [f"train[{VALIDATION_SIZE}:{end}]", f"train[:{VALIDATION_SIZE}]", "test"]
    kwargs = {}
    if data_dir is not None:
        config = tfds.download.DownloadConfig(manual_dir=os.fspath(data_dir))
        kwargs["download_and_prepare_kwargs"] = {"download_config": config}
    try:
        loaded = tfds.load("mnist", split=splits, batch_size=-1, as_supervised=True, **kwargs)
    except Exception as err:  # tfds raises many types; the user needs the one-line reason
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = ("pass --data-dir (or set TFHYBRID_DATA_DIR) to a folder holding the four "
                "original MNIST .gz files") if data_dir is None else FIX_HINT
        raise DataError(f"tensorflow-datasets could not prepare MNIST ({reason}); {hint}") from None
    arrays = []
    for images, labels in tfds.as_numpy(loaded):
        arrays.append(np.ascontiguousarray(images, dtype=np.float32) / np.float32(255.0))
        arrays.append(labels.astype(np.int64))
    return Splits(*arrays)


def one_hot(labels: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """int [N] -> one-hot [N, 10]."""
    out = np.zeros((len(labels), NUM_CLASSES), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out
