"""Bad input on the command line: one clear line, exit code 2, no traceback."""

from __future__ import annotations

import gzip
import shutil

import pytest

from tests.conftest import run_train_script
from tfhybrid.data import MNIST_FILES, SYNTHETIC_MARKER


def assert_one_line_error(result, *needles: str, code: int = 2) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, f"expected one error line, got: {result.stderr!r}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--lr", "0"], ["--lr", "0.0"]),
        (["--lr", "-0.5"], ["--lr", "-0.5"]),
        (["--lr", "nan"], ["--lr", "nan"]),
        (["--lr", "inf"], ["--lr", "inf"]),
        (["--lr", "fast"], ["--lr", "fast"]),
        (["--batch-size", "0"], ["--batch-size", "0"]),
        (["--batch-size", "60000"], ["--batch-size", "55000", "60000"]),
        (["--batch-size", "200", "--train-limit", "100"], ["--batch-size", "100", "200"]),
        (["--epochs", "0"], ["--epochs", "0"]),
        (["--epochs", "2.5"], ["--epochs", "2.5"]),
        (["--dw-mode", "fancy"], ["--dw-mode", "fancy", "batched"]),
        (["--bias-grad", "half"], ["--bias-grad", "half", "exact"]),
        (["--train-limit", "-3"], ["--train-limit", "-3"]),
        (["--dataset", "cifar10"], ["--dataset", "cifar10", "fashion_mnist"]),
        (["--model", "resnet"], ["--model", "resnet", "lenet5"]),
        (["--optimizer", "lion"], ["--optimizer", "lion", "adam"]),
        (["--iterations", "0"], ["--iterations", "0"]),
        (["--pool-ties", "all"], ["--pool-ties", "seed-cnn"]),
        (["--model", "two-layer-net", "--dw-mode", "batched"], ["--dw-mode", "two-layer-net"]),
        (["--model", "lenet5", "--bias-grad", "exact"], ["--bias-grad", "lenet5", "--pool-ties"]),
        (["--no-such-option"], ["--no-such-option"]),
    ],
)
def test_bad_option_gives_one_line_and_exit_2(args, needles, tmp_path):
    result = run_train_script(*args, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "run").exists(), "nothing may be written for a rejected option"


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_train_script("--data-dir", str(missing), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, str(missing), "MNIST")


def link_originals(data_dir, target, skip=()):
    """Link the four files of ``data_dir`` (and a synthetic set's marker) into ``target``."""
    target.mkdir()
    for name in (*MNIST_FILES, SYNTHETIC_MARKER):
        if name not in skip and (data_dir / name).exists():
            (target / name).symlink_to(data_dir / name)


def test_missing_data_file_is_named(mnist_like_dir, tmp_path):
    folder = tmp_path / "mnist"
    link_originals(mnist_like_dir, folder, skip={"t10k-labels-idx1-ubyte.gz"})
    result = run_train_script("--data-dir", str(folder), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "missing", "t10k-labels-idx1-ubyte.gz", str(folder))


def test_truncated_data_file_is_named(mnist_like_dir, tmp_path):
    folder = tmp_path / "mnist"
    name = "train-labels-idx1-ubyte.gz"
    link_originals(mnist_like_dir, folder, skip={name})
    (folder / name).write_bytes((mnist_like_dir / name).read_bytes()[:5000])
    result = run_train_script("--data-dir", str(folder), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "truncated", name)


def test_env_variable_names_the_data_folder(mnist_like_dir, tmp_path):
    folder = tmp_path / "mnist"
    name = "t10k-images-idx3-ubyte.gz"
    link_originals(mnist_like_dir, folder, skip={name})
    with gzip.open(mnist_like_dir / name) as src, open(folder / name, "wb") as dst:
        shutil.copyfileobj(src, dst)  # plain IDX under a .gz name
    result = run_train_script(
        "--out", str(tmp_path / "run"), env_extra={"TFHYBRID_DATA_DIR": str(folder)}
    )
    assert_one_line_error(result, "not gzip", name)
