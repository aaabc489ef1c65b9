"""MNIST through tensorflow-datasets, with the original files checked first.

Online, tfds downloads MNIST itself. Offline, a folder holding the four original
``.gz`` files (``--data-dir`` or ``$TFHYBRID_DATA_DIR``) is handed to tfds as its
manual download folder. Before tfds sees that folder, every file is opened and its
IDX header, sizes, counts and labels are checked, so a damaged file is reported by
name with a fix, instead of as a stack trace from deep inside tfds.

``--data-dir`` also takes Keras's ``mnist.npz`` (the ``keras.datasets.mnist`` cache file),
as the file itself or in the folder given when the ``.gz`` files are not there. It is read
with ``allow_pickle=False`` and checked like the IDX files (its four arrays, their dtype,
shapes, counts and labels), then used directly, in file order.

A *synthetic* MNIST (:func:`write_synthetic_mnist`) is the four IDX files of made-up
digits, of any size, beside a ``synthetic-mnist.json`` that declares the counts. It lets
the command line, resume and the audit run without MNIST (the tests use one): its files
pass every check above except that their counts are the declared ones, and it is read
directly. A folder without that file is checked against MNIST's counts as before.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from tfhybrid.config import DATASETS  # the same four IDX files, other pictures
from tfhybrid.errors import DataError

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
VALIDATION_SIZE = 5_000
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

# name -> (kind, expected count). Fashion-MNIST and KMNIST use the same names and sizes.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("images", 60_000),
    "train-labels-idx1-ubyte.gz": ("labels", 60_000),
    "t10k-images-idx3-ubyte.gz": ("images", 10_000),
    "t10k-labels-idx1-ubyte.gz": ("labels", 10_000),
}
FIX_HINT = (
    "put the four original MNIST .gz files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) there"
)


ORDER_TFDS = "tensorflow-datasets"  # tfds shuffles the examples as it prepares them
ORDER_FILE = "file"


@dataclasses.dataclass(frozen=True)
class Splits:
    """Images as float32 [N, 28, 28, 1] in [0, 1]; labels as int64 [N] in 0..9.

    ``order``: the order of the training images, ORDER_TFDS (tensorflow-datasets', from
    the original files) or ORDER_FILE (the files' own: Keras's mnist.npz, a recompressed or
    synthetic copy). The same images in another order are another run's data order."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    order: str = ORDER_TFDS


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read one IDX file (gzip-compressed when named .gz), raising :class:`DataError` on damage.

    Returns uint8 [N, 28, 28] for ``kind="images"`` and uint8 [N] for ``"labels"``.
    """
    where = f"{path.name} in {path.parent}"
    if path.is_dir():
        raise DataError(
            f"{where} is a folder, not the MNIST file of that name; remove or "
            f"rename the folder and {FIX_HINT}"
        )
    if not path.is_file():
        raise DataError(f"MNIST file missing: {where}; {FIX_HINT}")
    if path.stat().st_size == 0:
        raise DataError(f"MNIST file is empty: {where}; replace it with the original file")
    if path.suffix != ".gz":
        raw = path.read_bytes()
    else:
        with open(path, "rb") as handle:
            if handle.read(2) != b"\x1f\x8b":
                raise DataError(
                    f"MNIST file is not gzip-compressed although named .gz: {where}; "
                    "replace it with the original file"
                )
        try:
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        except (EOFError, OSError, zlib.error) as err:
            raise DataError(
                f"MNIST file is truncated or corrupt ({err}): {where}; "
                "replace it with the original file"
            ) from None
    expect_magic, ndim = (IDX_IMAGES_MAGIC, 3) if kind == "images" else (IDX_LABELS_MAGIC, 1)
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(
            f"MNIST file is too short to hold an IDX header: {where}; "
            "replace it with the original file"
        )
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expect_magic:
        raise DataError(
            f"MNIST file has magic number 0x{magic:08x}, expected 0x{expect_magic:08x} "
            f"for {kind}: {where}; replace it with the original file"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    if kind == "images" and tuple(dims[1:]) != IMAGE_SHAPE:
        raise DataError(
            f"MNIST images are {dims[1]}x{dims[2]}, expected 28x28: {where}; "
            "replace it with the original file"
        )
    payload = len(raw) - header_size
    expected = int(np.prod(dims))
    if payload != expected:
        raise DataError(
            f"MNIST file holds {payload} bytes of data, its header announces {expected} "
            f"(truncated?): {where}; replace it with the original file"
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)
    if kind == "labels" and array.size and int(array.max()) >= NUM_CLASSES:
        raise DataError(
            f"MNIST labels contain {int(array.max())}, outside 0-9: {where}; "
            "replace it with the original file"
        )
    return array


KERAS_NPZ = "mnist.npz"  # keras.datasets.mnist's cache file (~/.keras/datasets/mnist.npz)
# array name -> (shape; dtype uint8 throughout), as keras.datasets.mnist.load_data returns them
NPZ_ARRAYS = {
    "x_train": (60_000, *IMAGE_SHAPE),
    "y_train": (60_000,),
    "x_test": (10_000, *IMAGE_SHAPE),
    "y_test": (10_000,),
}
NPZ_FIX = "replace it with Keras's original mnist.npz, or use the four original MNIST .gz files"


def read_mnist_npz(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and check Keras's ``mnist.npz``: split -> (images uint8 [N,28,28], labels uint8 [N]).

    Read with ``allow_pickle=False`` (an .npz can hold pickled objects, which would run
    code on loading); a damaged file, a foreign one or one with other arrays gets a
    :class:`DataError` with one line that names it.
    """
    path = Path(path)
    where = f"{path.name} in {path.parent}"
    if not path.is_file():
        raise DataError(f"MNIST file missing: {where}; {NPZ_FIX}")
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise DataError(
                f"{where} is not an .npz file (no zip header), so not Keras's mnist.npz; {NPZ_FIX}"
            )
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = sorted(npz.files)
            if names != sorted(NPZ_ARRAYS):
                raise DataError(
                    f"{where} holds arrays {names}, not Keras's MNIST arrays "
                    f"{sorted(NPZ_ARRAYS)}; {NPZ_FIX}"
                )
            for name in NPZ_ARRAYS:
                arrays[name] = npz[name]
    except DataError:
        raise
    except ValueError as err:  # pickled (object) arrays, refused by allow_pickle=False
        raise DataError(
            f"{where} holds data that only unpickling could read ({err}); it is not "
            f"Keras's mnist.npz and is not loaded; {NPZ_FIX}"
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, KeyError) as err:
        raise DataError(f"{where} is truncated or corrupt ({err}); {NPZ_FIX}") from None
    for name, shape in NPZ_ARRAYS.items():
        array = arrays[name]
        if array.dtype != np.uint8 or array.shape != shape:
            raise DataError(
                f"{where}: array {name} is {array.dtype} {list(array.shape)}, Keras's MNIST "
                f"has uint8 {list(shape)}; {NPZ_FIX}"
            )
        if name.startswith("y") and int(array.max()) >= NUM_CLASSES:
            raise DataError(
                f"{where}: labels {name} contain {int(array.max())}, outside 0-9; {NPZ_FIX}"
            )
    return {
        "train": (arrays["x_train"], arrays["y_train"]),
        "test": (arrays["x_test"], arrays["y_test"]),
    }


def npz_source(data_dir: str | os.PathLike) -> Path | None:
    """The mnist.npz that ``data_dir`` names: the .npz file itself, or the folder's
    mnist.npz when the folder holds none of the four .gz files (nor their IDX twins)."""
    path = Path(data_dir)
    if path.suffix == ".npz" and not path.is_dir():
        return path
    if path.is_dir() and (path / KERAS_NPZ).is_file():
        if not any(mnist_file(path, name).exists() for name in MNIST_FILES):
            return path / KERAS_NPZ
    return None


SPLIT_FILES = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_mnist_folder(folder: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and check the four files in ``folder``: split -> (images uint8 [N,28,28], labels).

    Checks presence, gzip, IDX header, image size, byte counts, labels 0-9, that images
    and labels agree in number, and the number MNIST has.
    """
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise DataError(
            f"data folder {root} is a file, not a folder; point --data-dir / "
            "TFHYBRID_DATA_DIR at the folder holding the four original MNIST .gz "
            "files"
        )
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; {FIX_HINT}, "
            "or point --data-dir / TFHYBRID_DATA_DIR at the folder that has them"
        )
    counts = synthetic_counts(root)
    splits = {}
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        images = read_idx(mnist_file(root, images_name), "images")
        labels = read_idx(mnist_file(root, labels_name), "labels")
        if len(images) != len(labels):
            raise DataError(
                f"{images_name} holds {len(images)} images but {labels_name} holds "
                f"{len(labels)} labels in {root}; replace them with the original files"
            )
        if counts is not None:
            if len(images) != counts[split]:
                raise DataError(
                    f"{images_name} and {labels_name} in {root} hold {len(images)} examples, "
                    f"its {SYNTHETIC_MARKER} declares {counts[split]} for the {split} split; "
                    "write the synthetic set again (tfhybrid.data.write_synthetic_mnist)"
                )
            splits[split] = (images, labels)
            continue
        expected = MNIST_FILES[images_name][1]
        if len(images) != expected:
            raise DataError(
                f"{images_name} and {labels_name} in {root} hold {len(images)} examples, "
                f"MNIST's {split} split has {expected}; replace them with the original files"
            )
        splits[split] = (images, labels)
    return splits


SYNTHETIC_MARKER = "synthetic-mnist.json"  # beside the four files: "made up, these counts"
SYNTHETIC_KIND = "tfhybrid synthetic MNIST"


def synthetic_counts(folder: str | os.PathLike) -> dict[str, int] | None:
    """The counts a synthetic set's marker declares (``{"train": N, "test": M}``), or None
    when ``folder`` holds no marker (then its files must be MNIST's)."""
    marker = Path(folder) / SYNTHETIC_MARKER
    if not marker.exists():
        return None
    where = f"{SYNTHETIC_MARKER} in {Path(folder)}"
    fix = (
        "remove it (a folder of the original MNIST files has none) or write the synthetic "
        "set again (tfhybrid.data.write_synthetic_mnist)"
    )
    try:
        declared = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{where} cannot be read ({err}); {fix}") from None
    if not isinstance(declared, dict) or declared.get("kind") != SYNTHETIC_KIND:
        raise DataError(f"{where} does not describe a synthetic MNIST; {fix}")
    counts = {split: declared.get(split) for split in SPLIT_FILES}
    if not all(type(n) is int for n in counts.values()) or not (
        counts["train"] > VALIDATION_SIZE and counts["test"] >= 1
    ):
        raise DataError(
            f"{where} declares counts {counts}; a synthetic set needs more than "
            f"{VALIDATION_SIZE} training images (the first {VALIDATION_SIZE} validate) and "
            f"at least one test image; {fix}"
        )
    return counts


def write_idx(path: str | os.PathLike, array: np.ndarray, compresslevel: int = 6) -> Path:
    """Write uint8 images [N,28,28] or labels [N] as one gzip-compressed IDX file, as MNIST's
    are: the magic number (0x00000803 or 0x00000801), then each size, big-endian."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IDX_IMAGES_MAGIC if array.ndim == 3 else IDX_LABELS_MAGIC
    if array.ndim not in (1, 3):
        raise ValueError(f"IDX images are [N,28,28] and labels [N], got shape {array.shape}")
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb", compresslevel=compresslevel) as handle:
        handle.write(header)
        handle.write(array.tobytes())
    return Path(path)


def _glyphs() -> np.ndarray:
    """uint8 [10 digits, 2 stroke widths, 3, 3 shifts of -1..1 px, 28, 28]: seven-segment
    digits with soft edges on a black background, like MNIST's strokes."""
    segments = {  # name -> (rows, cols) of the bar, 3 px wide, in a 20x14 box at (4, 7)
        "a": (slice(4, 7), slice(7, 21)),
        "b": (slice(4, 15), slice(18, 21)),
        "c": (slice(13, 24), slice(18, 21)),
        "d": (slice(21, 24), slice(7, 21)),
        "e": (slice(13, 24), slice(7, 10)),
        "f": (slice(4, 15), slice(7, 10)),
        "g": (slice(13, 16), slice(7, 21)),
    }
    digits = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg",
              "abcdfg"]  # fmt: skip
    out = np.zeros((10, 2, 3, 3, 28, 28), np.uint8)
    for digit, names in enumerate(digits):
        for width in range(2):
            canvas = np.zeros((28, 28), np.float32)
            for name in names:
                rows, cols = segments[name]
                canvas[rows, cols] = 1.0
            if width:  # a bolder pen: one more pixel to the right and below
                canvas[1:, 1:] = np.maximum(canvas[1:, 1:], canvas[:-1, :-1])
            soft = np.pad(canvas, 1)  # a 3x3 box blur gives grey edges
            soft = sum(soft[i : i + 28, j : j + 28] for i in range(3) for j in range(3)) / 9
            glyph = np.round(255 * np.minimum(1.0, 1.6 * soft)).astype(np.uint8)
            for dy in range(3):
                for dx in range(3):
                    out[digit, width, dy, dx] = np.roll(glyph, (dy - 1, dx - 1), axis=(0, 1))
    return out


def synthetic_mnist(
    train: int, test: int, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Made-up MNIST-shaped data: split -> (images uint8 [N,28,28], labels uint8 [N]).

    Each image is a seven-segment digit of its label, in one of two stroke widths,
    shifted by up to a pixel and dimmed at random, on an exactly black background (as
    MNIST's, so pooling windows hold ties); every network here learns it at least as fast
    as MNIST.
    """
    rng = np.random.default_rng(seed)
    glyphs = _glyphs()
    splits = {}
    for split, count in (("train", train), ("test", test)):
        labels = rng.integers(0, NUM_CLASSES, count, dtype=np.uint8)
        pick = rng.integers(0, (2, 3, 3), (count, 3))
        images = glyphs[labels, pick[:, 0], pick[:, 1], pick[:, 2]]
        scale = rng.integers(160, 257, (count, 1, 1), dtype=np.uint16)
        images = ((images * scale) >> 8).astype(np.uint8)
        splits[split] = (images, labels)
    return splits


def write_synthetic_mnist(
    folder: str | os.PathLike, train: int = 15_000, test: int = 1_000, seed: int = 0
) -> Path:
    """Write a synthetic MNIST into ``folder``: the four IDX ``.gz`` files under MNIST's
    names, ``train`` training images (the first 5,000 of them validate) and ``test`` test
    images, and the ``synthetic-mnist.json`` that declares them. ``--data-dir`` and
    :func:`load_mnist` take the folder in place of MNIST's; accuracies on it mean nothing.
    """
    root = Path(folder)
    if not isinstance(train, int) or train <= VALIDATION_SIZE or not isinstance(test, int):
        raise ValueError(f"train must exceed {VALIDATION_SIZE} (the validation images)")
    if test < 1:
        raise ValueError("test must be at least 1")
    root.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in synthetic_mnist(train, test, seed).items():
        images_name, labels_name = SPLIT_FILES[split]
        write_idx(root / images_name, images, compresslevel=1)
        write_idx(root / labels_name, labels)
    marker = {"kind": SYNTHETIC_KIND, "train": train, "test": test, "seed": seed}
    (root / SYNTHETIC_MARKER).write_text(json.dumps(marker) + "\n")
    return root


def mnist_file(root: Path, name: str) -> Path:
    """The .gz file, or its uncompressed IDX twin (same name without .gz) when only that exists."""
    plain = root / name.removesuffix(".gz")
    return plain if not (root / name).exists() and plain.is_file() else root / name


def download_table(dataset: str) -> Path:
    """tensorflow-datasets' own table of ``dataset``'s downloads (address, size, SHA-256,
    file name per line), located without importing tfds (which would import TensorFlow)."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("tensorflow-datasets is not installed; run pip install -r requirements.txt")
    return Path(spec.submodule_search_locations[0]) / "url_checksums" / f"{dataset}.txt"


def registered_checksums(dataset: str) -> dict[str, str]:
    """file name -> SHA-256 that tensorflow-datasets registers for ``dataset``'s downloads."""
    table = download_table(dataset)
    sums = {}
    for line in table.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 4:
            sums[fields[3]] = fields[2]
    return sums


def file_digests(folder: str | os.PathLike) -> dict[str, str]:
    """expected file name -> SHA-256 of the file that stands for it in ``folder``."""
    root = Path(folder)
    return {
        name: hashlib.sha256(mnist_file(root, name).read_bytes()).hexdigest()
        for name in MNIST_FILES
    }


def registered_mismatches(folder: str | os.PathLike, dataset: str = "mnist") -> list[str]:
    """Names of the files that are not byte-identical to what tensorflow-datasets registers."""
    root = Path(folder)
    sums = registered_checksums(dataset)
    return [
        mnist_file(root, name).name
        for name, digest in file_digests(root).items()
        if sums.get(name) != digest
    ]


def identify_dataset(folder: str | os.PathLike) -> str | None:
    """The dataset whose registered downloads ``folder`` holds byte for byte, if any."""
    digests = file_digests(folder)
    for dataset in DATASETS:
        sums = registered_checksums(dataset)
        if all(sums.get(name) == digest for name, digest in digests.items()):
            return dataset
    return None


DOWNLOAD_PROBE_SECONDS = 5.0  # how long to wait for the download server before giving up


def download_reachable(url: str, timeout: float = DOWNLOAD_PROBE_SECONDS) -> str | None:
    """None if a TCP connection to ``url``'s host opens within ``timeout`` seconds, else why not.

    tensorflow-datasets retries a failing download for minutes; this answers in seconds.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _download_url(dataset: str) -> str:
    """The first download address tensorflow-datasets registers for ``dataset``."""
    return download_table(dataset).read_text().split("\t", 1)[0].strip()


def load_mnist(
    data_dir: str | None, train_limit: int | None = None, notice=None, dataset: str = "mnist"
) -> Splits:
    """Load train (tfds ``train[5000:]``), validation (``train[:5000]``) and test splits.

    ``dataset`` is one of DATASETS (all three come as the same four IDX files).
    ``data_dir`` is the manual download folder (None: let tfds download), or Keras's
    ``mnist.npz`` (or a folder holding it), read directly in file order.
    ``train_limit`` keeps only the first N training images. A synthetic set
    (:func:`write_synthetic_mnist`) stands in for any of DATASETS and is read directly,
    in file order. Files that are valid
    MNIST but not byte-identical to the registered originals (recompressed, say)
    cannot go through tfds, whose checksums would refuse them: they are read
    directly, in file order, and ``notice`` (default: stderr) is told so.
    """
    if dataset not in DATASETS:
        raise DataError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if data_dir is None:
        return _load_with_tfds(None, train_limit, dataset)
    npz = npz_source(data_dir)
    if npz is not None:
        if dataset != "mnist":
            raise DataError(
                f"{npz} is Keras's MNIST file; --dataset {dataset} needs that dataset's "
                "four .gz files"
            )
        parsed = read_mnist_npz(npz)
        (notice or _stderr)(
            f"notice: reading Keras's {npz.name} ({npz}) directly, in file order "
            "(tensorflow-datasets orders the training images differently)"
        )
        return _splits_from_arrays(parsed, train_limit)
    parsed = read_mnist_folder(data_dir)
    if synthetic_counts(data_dir) is not None:  # declared made up: no original to compare with
        return _splits_from_arrays(parsed, train_limit)
    differing = registered_mismatches(data_dir, dataset)
    if not differing:
        return _load_with_tfds(data_dir, train_limit, dataset)
    other = identify_dataset(data_dir)
    if other is not None:
        raise DataError(
            f"{data_dir} holds the {other} files, not {dataset}; "
            f"pass --dataset {other} or point --data-dir at the {dataset} files"
        )
    (notice or _stderr)(
        f"notice: {', '.join(differing)} in {data_dir}: valid MNIST data but not the "
        "original files tensorflow-datasets registers (SHA-256 differs); reading them "
        "directly, in file order, instead of through tfds"
    )
    return _splits_from_arrays(parsed, train_limit)


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def _as_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28(,1)] -> contiguous float32 [N,28,28,1] in [0,1]."""
    out = np.asarray(images, dtype=np.float32).reshape(len(images), *IMAGE_SHAPE, 1)
    out *= np.float32(1 / 255)
    return out


def _splits_from_arrays(parsed: dict, train_limit: int | None) -> Splits:
    train_images, train_labels = parsed["train"]
    test_images, test_labels = parsed["test"]
    end = None if train_limit is None else VALIDATION_SIZE + train_limit
    return Splits(
        _as_float_images(train_images[VALIDATION_SIZE:end]),
        train_labels[VALIDATION_SIZE:end].astype(np.int64),
        _as_float_images(train_images[:VALIDATION_SIZE]),
        train_labels[:VALIDATION_SIZE].astype(np.int64),
        _as_float_images(test_images),
        test_labels.astype(np.int64),
        ORDER_FILE,
    )


def _load_with_tfds(data_dir: str | None, train_limit: int | None, dataset: str) -> Splits:
    # Deferred: TensorFlow takes seconds to import; _tf imports it without its log noise.
    from tfhybrid import _tf  # noqa: F401, I001
    import tensorflow_datasets as tfds

    end = "" if train_limit is None else str(VALIDATION_SIZE + train_limit)
    splits = [f"train[{VALIDATION_SIZE}:{end}]", f"train[:{VALIDATION_SIZE}]", "test"]
    kwargs = {}
    if data_dir is not None:
        config = tfds.download.DownloadConfig(manual_dir=os.fspath(data_dir))
        kwargs["download_and_prepare_kwargs"] = {"download_config": config}
    elif not _is_prepared(tfds, dataset):
        url = _download_url(dataset)
        problem = download_reachable(url)
        if problem is not None:
            raise DataError(
                f"{dataset} is not prepared on this machine and its download cannot start "
                f"({problem} for {url}); pass --data-dir (or set TFHYBRID_DATA_DIR) to a folder "
                "holding the four original MNIST .gz files"
            )
    try:
        loaded = tfds.load(dataset, split=splits, batch_size=-1, as_supervised=True, **kwargs)
    except Exception as err:  # tfds raises many types; the user needs the one-line reason
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (
            (
                "pass --data-dir (or set TFHYBRID_DATA_DIR) to a folder holding the four "
                "original MNIST .gz files"
            )
            if data_dir is None
            else FIX_HINT
        )
        raise DataError(
            f"tensorflow-datasets could not prepare {dataset} ({reason}); {hint}"
        ) from None
    arrays = []
    for images, labels in tfds.as_numpy(loaded):
        arrays.append(_as_float_images(images))
        arrays.append(labels.astype(np.int64))
    return Splits(*arrays, ORDER_TFDS)


def _is_prepared(tfds, dataset: str) -> bool:
    """Whether tfds already holds ``dataset`` (then nothing needs the network). Quietly:
    tfds logs a warning about a half-made folder a failed download leaves behind."""
    import logging

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        return tfds.builder(dataset).is_prepared()
    finally:
        absl.setLevel(level)


def one_hot(labels: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """int [N] -> one-hot [N, 10]."""
    out = np.zeros((len(labels), NUM_CLASSES), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out
