"""Runs with dropout, batch norm and residual blocks: Ctrl-C and kill -9 in the middle of
an epoch, then --resume, give the uninterrupted run bit for bit (weights, running
statistics, history); a checkpoint whose layer state or structure does not fit the
network is refused in one line."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.conftest import run_train_script
from tests.test_cli import assert_one_line_error
from tests.test_reliability import assert_same_run, params_of, wait_for_checkpoint
from tfhybrid.checkpoint import CHECKPOINT_NAME, read_checkpoint, save_checkpoint

# Three epochs of 60 small steps: a signal sent after the first checkpoint lands mid-epoch.
ARGS = ["--train-limit", "600", "--batch-size", "10", "--epochs", "3", "--test-limit", "100"]


def start(model: str, out, data_dir):
    import subprocess
    import sys

    from tests.conftest import REPO

    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--model", model, *ARGS]
    command += ["--data-dir", str(data_dir), "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(mnist_like_dir, tmp_path_factory):
    """model -> the folder of its uninterrupted run."""
    runs = {}
    for model in ("dlfs-deep", "bn-cnn", "resnet-mnist"):
        out = tmp_path_factory.mktemp(model) / "run"
        result = run_train_script(
            "--model", model, *ARGS, "--data-dir", str(mnist_like_dir), "--out", str(out)
        )
        assert result.returncode == 0, result.stderr
        runs[model] = out
    return runs


@pytest.mark.parametrize(
    "model,sig",
    [
        ("dlfs-deep", signal.SIGINT),
        ("bn-cnn", signal.SIGINT),
        ("bn-cnn", signal.SIGKILL),
        ("resnet-mnist", signal.SIGKILL),
    ],
)
def test_interrupted_then_resumed_is_bit_identical(model, sig, mnist_like_dir, tmp_path, reference):
    import time

    out = tmp_path / "run"
    proc = start(model, out, mnist_like_dir)
    wait_for_checkpoint(out, proc)
    time.sleep(0.5)  # into the next epoch
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGKILL), stderr
    meta, arrays = read_checkpoint(out)
    if sig == signal.SIGINT:
        assert meta["step"] > 0, "the interrupt should land in the middle of an epoch"
    if model == "bn-cnn":
        assert {"state/running_mean2", "state/running_var4"} <= set(arrays)
    resumed = run_train_script("--resume", str(out), "--data-dir", str(mnist_like_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(out, reference[model])


def test_the_running_statistics_are_saved_with_the_weights(reference):
    saved = params_of(reference["bn-cnn"])
    assert saved["state/running_var2"].shape == (32,)
    assert not np.array_equal(saved["state/running_var2"], np.ones(32)), "never updated"


def test_a_checkpoint_whose_state_does_not_fit_is_refused(mnist_like_dir, tmp_path, reference):
    out = tmp_path / "run"
    result = run_train_script(
        "--model",
        "bn-cnn",
        *ARGS[:-4],
        "--epochs",
        "1",
        "--test-limit",
        "100",
        "--data-dir",
        str(mnist_like_dir),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    (out / "metrics.json").unlink()
    meta, arrays = read_checkpoint(out)
    from tfhybrid.checkpoint import load_checkpoint

    state = load_checkpoint(
        out,
        "bn-cnn",
        {k.removeprefix("param/"): v.shape for k, v in arrays.items() if k.startswith("param/")},
        state_shapes={
            k.removeprefix("state/"): v.shape for k, v in arrays.items() if k.startswith("state/")
        },
    )
    state.layer_state["running_mean2"] = np.zeros(5)  # another network's statistics
    save_checkpoint(out, state)
    resumed = run_train_script(
        "--resume", str(out), "--epochs", "2", "--data-dir", str(mnist_like_dir)
    )
    assert_one_line_error(resumed, "running_mean2")
    assert (out / CHECKPOINT_NAME).exists(), "nothing saved is lost"


def test_a_checkpoint_of_another_structure_is_refused(mnist_like_dir, tmp_path, reference):
    """Names and shapes can agree while the layers connect otherwise: the structure the
    checkpoint keeps is compared, and a mismatch is refused in one line."""
    out = tmp_path / "run"
    result = run_train_script(
        "--model", "resnet-mnist", "--train-limit", "20", "--batch-size", "10", "--epochs", "1",
        "--test-limit", "10", "--data-dir", str(mnist_like_dir), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (out / "metrics.json").unlink()
    meta, arrays = read_checkpoint(out)
    assert meta["structure"].count("Residual(") == 3
    from tfhybrid.checkpoint import TrainingState

    params = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
    state = {k.removeprefix("state/"): v for k, v in arrays.items() if k.startswith("state/")}
    fields = {k: v for k, v in meta.items() if k != "format_version"}
    fields["structure"] = meta["structure"].replace("Residual(", "Branches(", 1)
    save_checkpoint(out, TrainingState(params=params, layer_state=state, **fields))
    resumed = run_train_script(
        "--resume", str(out), "--epochs", "2", "--data-dir", str(mnist_like_dir)
    )
    assert_one_line_error(resumed, "another structure")
    assert "Branches(" in resumed.stderr and "Residual(" in resumed.stderr
    assert (out / CHECKPOINT_NAME).exists(), "nothing saved is lost"


def test_resuming_with_a_copy_in_another_order_is_refused(data_dir, tmp_path):
    """The original .gz files come through tensorflow-datasets, in its order; a copy that is
    not byte-identical (here one file recompressed) is read in file order: the same images,
    other batches. Resuming across the two is refused in one line."""
    import gzip

    from tests.test_data_validation import TRAIN_LABELS, link_originals, original_raw

    out = tmp_path / "run"
    small = ["--model", "two-layer-net", "--epochs", "1", "--train-limit", "300"]
    result = run_train_script(*small, "--test-limit", "10", "--data-dir", str(data_dir),
                              "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_checkpoint(out)[0]["data_order"] == "tensorflow-datasets"
    copy = tmp_path / "copy"
    link_originals(data_dir, copy, skip={TRAIN_LABELS})
    with gzip.open(copy / TRAIN_LABELS, "wb", compresslevel=1) as handle:
        handle.write(original_raw(data_dir, TRAIN_LABELS))
    resumed = run_train_script("--resume", str(out), "--epochs", "2", "--data-dir", str(copy))
    # The loader's notice (why the copy is read in file order), then the one error line.
    notice, error = resumed.stderr.strip().splitlines()
    assert resumed.returncode == 2 and notice.startswith("notice:") and "SHA-256" in notice
    assert error.startswith("error: the run in") and "tensorflow-datasets' order" in error
    assert "the files' own order" in error and "resume with the copy" in error
    assert (out / CHECKPOINT_NAME).exists(), "nothing saved is lost"
