"""Bad options and damaged files as a new user meets them: one `error:` line that names
the problem and the fix, exit code 2, before any work, and no NumPy advice passed on."""

from __future__ import annotations

import pytest

from tests.conftest import run_train_script
from tests.test_audit_cli import run_check
from tests.test_cli import assert_one_line_error
from tfhybrid.checkpoint import CHECKPOINT_NAME


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--epochs", "2", "--iterations", "30"], ["--epochs 2 and --iterations 30 contradict"]),
        (["--train-limit", "60000"], ["--train-limit must be at most 55000", "got 60000"]),
        (["--test-limit", "20000"], ["--test-limit must be at most 10000", "got 20000"]),
    ],
)
def test_contradicting_or_out_of_range_options(args, needles, tmp_path):
    result = run_train_script(*args, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "run").exists(), "nothing is made before the options are checked"


def test_a_damaged_checkpoint_is_named_without_numpys_pickle_advice(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_text("not a checkpoint")
    result = run_train_script("--resume", str(tmp_path))
    assert_one_line_error(result, "not a NumPy .npz archive", "start a new run")
    assert "allow_pickle" not in result.stderr


def test_resume_and_out_name_a_file_where_a_folder_belongs(tmp_path):
    given = tmp_path / "metrics.json"
    given.write_text("{}")
    assert_one_line_error(run_train_script("--resume", str(given)), "is a file", "run's folder")
    result = run_train_script("--out", str(given), "--force", "--epochs", "1")
    assert_one_line_error(result, "is a file, not a folder", "--out")


@pytest.mark.parametrize("flag,name", [("--json", "x.json"), ("--plot", "x.png")])
def test_an_unwritable_audit_output_is_refused_before_the_audit(flag, name):
    result = run_check("--model", "two-layer-net", flag, f"/proc/{name}")
    assert_one_line_error(result, f"{flag}: cannot write", "choose another place")
    assert "gradient audit" not in result.stdout


NETWORK_OF_ONES_OWN = """
import numpy as np
from tfhybrid import Sequential
from tfhybrid._tf import tf
from tfhybrid.layers import Dense, Flatten, Layer


class WrongShape(Layer):
    def forward(self, params, x):
        return np.maximum(x, 0), x > 0

    def backward(self, dout, cache, need_dx=True):
        return dout[:, :3], {}

    def reference(self, params, x):
        return tf.nn.relu(x)


class Raises(WrongShape):
    def backward(self, dout, cache, need_dx=True):
        raise RuntimeError("a bug of mine")


def wrong_shape():
    return Sequential([Flatten(), Dense(8), WrongShape(), Dense(10)])


def raises():
    return Sequential([Flatten(), Dense(8), Raises(), Dense(10)])
"""


@pytest.mark.parametrize(
    "name,needles",
    [("wrong_shape", ["returned dx of shape [2, 3]"]), ("raises", ["RuntimeError: a bug of mine"])],
)
def test_a_broken_network_of_ones_own_gets_one_line(name, needles, tmp_path, mnist_like_dir):
    (tmp_path / "mine.py").write_text(NETWORK_OF_ONES_OWN)
    result = run_check(
        "--model",
        f"{tmp_path / 'mine.py'}:{name}",
        "--batch",
        "2",
        "--data-dir",
        str(mnist_like_dir),
    )
    assert_one_line_error(result, "the network's own code failed", *needles)


def test_a_run_folder_that_stops_taking_writes_is_one_line_and_resumable(
    mnist_like_dir, tmp_path, monkeypatch
):
    from tfhybrid import training
    from tfhybrid.config import TrainConfig
    from tfhybrid.errors import CheckpointError

    config = TrainConfig.for_model(
        "two-layer-net",
        epochs=3,
        train_limit=200,
        test_limit=50,
        batch_size=50,
        data_dir=str(mnist_like_dir),
    )
    saves = []
    real_save = training.save_checkpoint

    def full_disk_after_one(folder, state):
        saves.append(state.epoch)
        if len(saves) > 1:
            raise PermissionError(13, "Permission denied")
        return real_save(folder, state)

    monkeypatch.setattr(training, "save_checkpoint", full_disk_after_one)
    out = tmp_path / "run"
    with pytest.raises(CheckpointError) as caught:
        training.train_and_evaluate(config, out, log=lambda *_: None)
    message = str(caught.value)
    assert "at the end of epoch 2 (Permission denied)" in message
    assert "the last checkpoint written is kept" in message and f"--resume {out}" in message
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    metrics = training.train_and_evaluate(config, out, log=lambda *_: None, resume=True)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]


def test_a_rate_the_source_never_gave_is_called_the_default():
    from tfhybrid.config import TrainConfig

    assert TrainConfig.for_model("lenet5").lr_origin() == "lenet5's default rate for adam"
    assert TrainConfig.for_model("seed-cnn").lr_origin() == "seed-cnn's source rate for sgd"
