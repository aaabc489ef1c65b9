"""Checkpoints, resume after SIGKILL and Ctrl-C, determinism, divergence, bad checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, run_train_script
from tests.test_cli import assert_one_line_error
from tfhybrid.checkpoint import CHECKPOINT_NAME, TrainingState, read_checkpoint, save_checkpoint
from tfhybrid.config import TrainConfig
from tfhybrid.errors import DivergenceError
from tfhybrid.training import train_and_evaluate

# Long enough (5 epochs of 100 steps) that a kill lands inside the run, short enough for CI.
RUN_ARGS = ["--train-limit", "10000", "--epochs", "5", "--seed", "7"]


def quiet(*_):
    pass


def start_run(out, mnist_like_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            *RUN_ARGS,
            "--data-dir",
            str(mnist_like_dir),
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def wait_for_checkpoint(out, proc, timeout=300.0) -> None:
    deadline = time.monotonic() + timeout
    while not (out / CHECKPOINT_NAME).exists():
        assert proc.poll() is None, f"run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def params_of(folder) -> dict:
    with np.load(folder / "params.npz", allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def comparable(metrics: dict) -> list:
    """Per-epoch figures without wall times, which no two runs share."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in metrics["epochs"]]


def assert_same_run(a, b) -> None:
    pa, pb = params_of(a), params_of(b)
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key], err_msg=f"param {key} differs")
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert comparable(ma) == comparable(mb)
    assert ma["test_accuracy"] == mb["test_accuracy"]


@pytest.fixture(scope="module")
def reference_run(mnist_like_dir, tmp_path_factory):
    """The same run, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = run_train_script(*RUN_ARGS, "--data-dir", str(mnist_like_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_sigkill_mid_epoch_then_resume_is_bit_identical(mnist_like_dir, tmp_path, reference_run):
    out = tmp_path / "run"
    proc = start_run(out, mnist_like_dir)
    wait_for_checkpoint(out, proc)
    time.sleep(0.4)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    meta, _ = read_checkpoint(out)
    assert meta["step"] == 0 and 2 <= meta["epoch"] <= 5  # an end-of-epoch checkpoint survived
    # A kill in the middle of a write leaves a half-written temporary file beside the
    # checkpoint: resuming must neither read it nor trip over it.
    (out / (CHECKPOINT_NAME + ".tmp")).write_bytes(b"PK\x03\x04 half a zip")

    resumed = run_train_script("--resume", str(out), "--data-dir", str(mnist_like_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} at epoch {meta['epoch']}" in resumed.stdout
    assert_same_run(out, reference_run)
    assert not list(out.glob("*.tmp")), "the next save replaces the temporary file"


def test_ctrl_c_saves_prints_resume_command_and_exits_130(mnist_like_dir, tmp_path, reference_run):
    out = tmp_path / "run"
    proc = start_run(out, mnist_like_dir)
    wait_for_checkpoint(out, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert f"--resume {out}" in stderr and "interrupted at epoch" in stderr
    resumed = run_train_script("--resume", str(out), "--data-dir", str(mnist_like_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(out, reference_run)


@pytest.mark.parametrize("dw_mode", ["batched", "per-sample"])
def test_same_seed_gives_bit_identical_runs(mnist_like_dir, tmp_path, dw_mode):
    config = TrainConfig(
        epochs=2, train_limit=1500, seed=11, dw_mode=dw_mode, data_dir=str(mnist_like_dir)
    )
    train_and_evaluate(config, tmp_path / "a", log=quiet)
    train_and_evaluate(config, tmp_path / "b", log=quiet)
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_huge_learning_rate_stops_with_exit_3(mnist_like_dir, tmp_path):
    out = tmp_path / "run"
    result = run_train_script(
        "--lr",
        "1000",
        "--train-limit",
        "2000",
        "--data-dir",
        str(mnist_like_dir),
        "--out",
        str(out),
    )
    assert_one_line_error(
        result, "diverged at epoch 1, step", "--lr", "no checkpoint had been written yet", code=3
    )
    assert not (out / "params.npz").exists()


def test_divergence_keeps_the_last_good_checkpoint(mnist_like_dir, tmp_path, monkeypatch):
    from tfhybrid.models.sequential import Sequential

    config = TrainConfig(epochs=3, train_limit=1000, data_dir=str(mnist_like_dir))
    calls = {"n": 0}
    original = Sequential.loss_and_gradients

    def poisoned(self, x, y, **kwargs):  # the 15th step of epoch 2 (10 per epoch) goes NaN
        calls["n"] += 1
        result = original(self, x, y, **kwargs)
        if calls["n"] == 15:
            result["grads"]["w2"] = result["grads"]["w2"] * np.nan
        return result

    monkeypatch.setattr(Sequential, "loss_and_gradients", poisoned)
    with pytest.raises(
        DivergenceError, match="epoch 2, step 5: parameter w2 .*the last good checkpoint is kept"
    ):
        train_and_evaluate(config, tmp_path, log=quiet)
    meta, arrays = read_checkpoint(tmp_path)
    assert (meta["epoch"], meta["step"]) == (2, 0)
    assert all(np.isfinite(v).all() for v in arrays.values() if v.dtype.kind == "f")


def test_refuses_to_overwrite_a_run(mnist_like_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    result = run_train_script("--out", str(out), "--data-dir", str(mnist_like_dir))
    assert_one_line_error(result, "already holds a run", "--resume", "--force")
    assert (out / "metrics.json").read_text() == "{}"


def test_unwritable_output_is_reported_before_training(mnist_like_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_train_script("--out", str(blocker / "run"), "--data-dir", str(mnist_like_dir))
    assert_one_line_error(result, "cannot write to output folder", str(blocker / "run"))


def test_resume_refuses_changed_settings(mnist_like_dir, tmp_path):
    write_checkpoint(tmp_path)  # saved with the default lr 0.1
    result = run_train_script(
        "--resume", str(tmp_path), "--lr", "0.5", "--data-dir", str(mnist_like_dir)
    )
    assert_one_line_error(result, "lr=0.1", "0.5", "its own settings")


def write_checkpoint(folder, model="seed-cnn", **shapes):
    params = {
        k: np.zeros(s, np.float32)
        for k, s in {
            "w1": (9, 9, 1, 20),
            "b1": (1, 20),
            "w2": (2000, 10),
            "b2": (1, 10),
            **shapes,
        }.items()
        if s is not None
    }
    save_checkpoint(
        folder, TrainingState(model=model, config=TrainConfig().to_dict(), params=params)
    )


@pytest.mark.parametrize(
    "make,needles",
    [
        (lambda d: (d / CHECKPOINT_NAME).write_bytes(b"not a zip at all"), ["damaged"]),
        (lambda d: (d / CHECKPOINT_NAME).write_bytes(b""), ["damaged"]),
        (lambda d: None, ["no checkpoint"]),
        (lambda d: write_checkpoint(d, model="lenet5"), ["'lenet5'", "'seed-cnn'"]),
        (lambda d: write_checkpoint(d, b2=None), ["missing ['b2']"]),
        (lambda d: write_checkpoint(d, w2=(784, 10)), ["w2", "(784, 10)", "(2000, 10)"]),
    ],
)
def test_bad_checkpoint_gives_clear_error(mnist_like_dir, tmp_path, make, needles):
    make(tmp_path)
    result = run_train_script("--resume", str(tmp_path), "--data-dir", str(mnist_like_dir))
    assert_one_line_error(result, *needles)


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    np.savez(tmp_path / CHECKPOINT_NAME, meta=np.array([{"a": 1}], dtype=object))
    result = run_train_script("--resume", str(tmp_path))
    assert_one_line_error(result, "damaged")
    assert os.path.exists(tmp_path / CHECKPOINT_NAME)


def test_checkpoint_of_the_previous_layout_resumes(mnist_like_dir, tmp_path):
    """Checkpoints written before the layer framework kept convolution biases as [F]; they
    load as [1,F] with the same values, and the run continues."""
    from tfhybrid.catalog import build_model

    config = TrainConfig.for_model(
        "lenet5",
        epochs=2,
        train_limit=200,
        batch_size=50,
        test_limit=100,
        data_dir=str(mnist_like_dir),
    )
    params = build_model("lenet5", seed=0).params
    old = {k: (v.reshape(-1) if k in ("b1", "b2") else v) for k, v in params.items()}
    assert old["b1"].shape == (6,) and old["b2"].shape == (16,)
    from tfhybrid.optimizers import build_optimizer

    state = build_optimizer(config.optimizer, config.lr).state_dict()
    save_checkpoint(
        tmp_path,
        TrainingState(
            model="lenet5", config=config.to_dict(), params=old, optimizer_state=state, epoch=2
        ),
    )
    metrics = train_and_evaluate(config, tmp_path, log=quiet, resume=True)
    assert [row["epoch"] for row in metrics["epochs"]] == [2]
    with np.load(tmp_path / "params.npz", allow_pickle=False) as saved:
        assert saved["b1"].shape == (1, 6) and saved["b2"].shape == (1, 16)


def test_ctrl_c_during_tensorflows_import_shows_none_of_its_notices():
    """TensorFlow's start-up notices are held back while it imports (tfhybrid/_tf.py); a
    Ctrl-C landing in that import must not replay them: they would explain nothing."""
    import subprocess
    import sys

    from tests.conftest import REPO

    program = (
        "import os, signal, threading\n"
        "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
        "from tfhybrid import _tf\n"
        "print('imported before the signal')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    if "imported before the signal" in result.stdout:
        pytest.skip("TensorFlow imported within 0.5 s: the signal missed the import")
    assert "KeyboardInterrupt" in result.stderr and "tensorflow" in result.stderr, result.stderr
    for notice in ("oneDNN", "cudart", "absl::InitializeLog"):
        assert notice not in result.stderr, result.stderr


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from tfhybrid.checkpoint import atomic_write

    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"old")

    def full_disk(handle):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, full_disk)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]
