"""The audit of networks the catalog does not hold: ``--model MODULE:NAME`` and
``--model path/to/file.py:NAME`` (a network written outside the project), ``--from RUN_DIR``
(a training run at its saved parameters), and ``train.py --audit-every N``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_train_script
from tests.test_audit_cli import random_images, run_check  # noqa: F401 (a fixture)
from tests.test_cli import assert_one_line_error
from tfhybrid.audit import cli, saved_run
from tfhybrid.audit.epoch import EpochAudit
from tfhybrid.config import TrainConfig
from tfhybrid.errors import ConfigError
from tfhybrid.training import train_and_evaluate

NETS = '''
import numpy as np

from tfhybrid import Sequential
from tfhybrid._tf import tf
from tfhybrid.layers import AvgPool2D, Conv2D, Dense, Flatten, Layer


class Tanh(Layer):
    """tanh(x), a layer the project does not have."""

    prefix = "t"

    def forward(self, params, x):
        out = np.tanh(x)
        return out, out

    def backward(self, dout, cache, need_dx=True):
        return dout * (1 - cache * cache), {}

    def reference(self, params, x):
        return tf.tanh(x)


def tanh_net():
    return Sequential([Conv2D(3, 5), Tanh(), AvgPool2D(2), Flatten(), Dense(10)], seed=1)


net = tanh_net()
number = 3


def needs_width(width):
    return Sequential([Flatten(), Dense(width)])


def broken():
    raise RuntimeError("no weights here")


def not_a_net():
    return [net]


def colour_net():
    return Sequential([Conv2D(2, 3), Tanh(), Flatten(), Dense(10)], input_shape=(28, 28, 3))


def five_classes():
    return Sequential([Flatten(), Dense(5)])
'''


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A folder holding outside_nets.py (NETS) and three modules that fail to import."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "outside_nets.py").write_text(NETS)
    (folder / "raises_on_import.py").write_text("import numpy\n\nraise ValueError('half done')\n")
    (folder / "bad_syntax.py").write_text("def net(:\n    pass\n")
    (folder / "needs_dependency.py").write_text("import no_such_dependency_xyz\n")
    return folder


def verdicts(stdout: str) -> dict[str, str]:
    """tensor -> the last column of its row ("match", "wrong", ...)."""
    rows = [line.split("  ") for line in stdout.splitlines() if line[:1] == "d"]
    return {row[0].strip(): row[-1].strip() for row in rows}


def test_file_path_network_with_a_layer_of_its_own(outside, mnist_like_dir):
    path = outside / "outside_nets.py"
    result = run_check(
        "--model", f"{path}:tanh_net", "--batch", "2", "--data-dir", str(mnist_like_dir)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"network: {path}:tanh_net" in result.stdout
    found = verdicts(result.stdout)
    assert list(found) == ["dw1", "db1", "dw2", "db2", "dz1", "dt1", "dp1", "dflat", "dz2"]
    assert set(found.values()) == {"match"}, found
    assert "result: every gradient matches" in result.stdout


def test_module_name_on_pythonpath(outside, mnist_like_dir, tmp_path):
    report = tmp_path / "audit.json"
    result = run_check(
        "--model",
        "outside_nets:net",
        "--batch",
        "2",
        "--expect",
        "dt1",
        "--json",
        str(report),
        "--data-dir",
        str(mnist_like_dir),
        env_extra={"PYTHONPATH": str(outside)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout)["dt1"] == "match"
    record = json.loads(report.read_text())
    assert record["network"] == "outside_nets:net" and record["ok"]
    assert record["update"]["passed"] and record["mismatches"] == []


@pytest.mark.parametrize(
    "model,needles",
    [
        ("outside_nets:missing_name", ["missing_name", "tanh_net", "net", "Sequential"]),
        ("outside_nets:number", ["number is an int", "Sequential"]),
        ("outside_nets:needs_width", ["needs_width()", "TypeError", "width", "no arguments"]),
        ("outside_nets:broken", ["broken()", "RuntimeError: no weights here", "outside_nets.py:"]),
        ("outside_nets:not_a_net", ["not_a_net() returned a list", "Sequential"]),
        ("outside_nets:colour_net", ["(28, 28, 3)", "input_shape=(28, 28, 1)"]),
        ("outside_nets:five_classes", ["5 outputs", "10 classes", "Dense(10)"]),
        ("not_a_module_xyz:net", ["not_a_module_xyz", "PYTHONPATH", "not_a_module_xyz.py:net"]),
        (
            "raises_on_import:net",
            ["importing raises_on_import", "ValueError: half done", "raises_on_import.py:3"],
        ),
        ("needs_dependency:net", ["importing needs_dependency", "no_such_dependency_xyz"]),
        ("FOLDER/bad_syntax.py:net", ["bad_syntax.py", "SyntaxError", "bad_syntax.py:1"]),
        ("FOLDER/no_such_file.py:net", ["no file", "no_such_file.py", "check the path"]),
        ("FOLDER/outside_nets.py", ["after a colon", "outside_nets.py:NAME"]),
        ("FOLDER/outside_nets.txt:net", ["not a .py file", "MODULE:NAME"]),
        ("outside_nets:", ["MODULE:NAME", "after the colon"]),
        ("outside_nets:2net", ["'2net' is not a Python name"]),
        ("resnet", ["--model", "resnet", "seed-cnn", "MODULE:NAME"]),
    ],
)
def test_bad_outside_name_gives_one_line_and_exit_2(outside, model, needles):
    result = run_check(
        "--model",
        model.replace("FOLDER", str(outside)),
        "--batch",
        "1",
        env_extra={"PYTHONPATH": str(outside)},
    )
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize("flag,value", [("--bias-grad", "exact"), ("--pool-ties", "first")])
def test_rule_flags_are_refused_for_an_outside_network(outside, flag, value):
    result = run_check("--model", f"{outside / 'outside_nets.py'}:net", flag, value)
    assert_one_line_error(result, flag, "built-in", "outside_nets.py:net")


# --- --from RUN_DIR -------------------------------------------------------------------------
RUN_ARGS = ("--epochs", "1", "--train-limit", "300", "--test-limit", "100")


@pytest.fixture(scope="module")
def runs(mnist_like_dir, tmp_path_factory):
    """Two one-epoch seed-cnn runs: with the article's db1 rule, and with the true one."""
    folder = tmp_path_factory.mktemp("runs")
    for name, extra in (("seed", ()), ("exact", ("--bias-grad", "exact"))):
        result = run_train_script(
            *RUN_ARGS, *extra, "--out", str(folder / name), "--data-dir", str(mnist_like_dir)
        )
        assert result.returncode == 0, result.stderr
    return folder


def test_from_a_run_with_the_true_rule_passes(runs, mnist_like_dir):
    result = run_check(
        "--from", str(runs / "exact"), "--batch", "2", "--data-dir", str(mnist_like_dir)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"parameters: {runs / 'exact' / 'params.npz'} (seed-cnn after epoch 1)" in result.stdout
    assert "bias_grad exact" in result.stdout.splitlines()[1]
    assert set(verdicts(result.stdout).values()) == {"match"}


def test_from_a_run_with_the_seed_rule_names_db1(runs, mnist_like_dir):
    result = run_check(
        "--from", str(runs / "seed"), "--batch", "2", "--data-dir", str(mnist_like_dir)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert verdicts(result.stdout)["db1"] == "off by a constant factor 1/400"
    assert "UNEXPECTED mismatch: db1" in result.stdout


def test_from_reads_the_saved_weights(runs):
    run = saved_run.read_run(str(runs / "seed"))
    with np.load(runs / "seed" / "params.npz") as saved:
        assert all(np.array_equal(run.params[k], saved[k]) for k in saved.files)
    assert (run.model, run.options, run.seed) == (
        "seed-cnn",
        {"dw_mode": "batched", "conv": "tf", "bias_grad": "seed"},
        0,
    )


def test_from_falls_back_to_the_checkpoint(runs, tmp_path, random_images, capsys):  # noqa: F811
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(runs / "exact" / "checkpoint.npz", folder)  # no params.npz, no metrics.json
    run = saved_run.read_run(str(folder))
    assert run.source == str(folder / "checkpoint.npz") and run.when == "after epoch 1"
    assert run.options["bias_grad"] == "exact"
    assert cli.main(["--from", str(folder), "--batch", "2"]) == 0
    assert f"parameters: {folder / 'checkpoint.npz'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--bias-grad", "exact"], ["--bias-grad exact", "contradicts", "--bias-grad seed"]),
        (["--model", "lenet5"], ["--model lenet5", "contradicts", "seed-cnn"]),
        (["--pool-ties", "all"], ["--pool-ties", "seed-cnn"]),
        (["--model", "nets.py:net"], ["--model nets.py:net", "contradicts"]),
    ],
)
def test_from_with_a_contradicting_option(runs, args, needles):
    assert_one_line_error(run_check("--from", str(runs / "seed"), *args), *needles)


def test_from_with_an_agreeing_option_is_accepted(runs):
    args = cli.parse_options(
        ["--from", str(runs / "seed"), "--model", "seed-cnn", "--bias-grad", "seed"]
    )
    assert (
        args.options == {"dw_mode": "batched", "conv": "tf", "bias_grad": "seed"} and args.seed == 0
    )


def damage(runs, tmp_path, how: str):
    folder = tmp_path / "run"
    shutil.copytree(runs / "seed", folder)
    if how == "params":
        (folder / "params.npz").write_bytes(b"PK\x03\x04 not a zip")
    elif how == "metrics":
        (folder / "metrics.json").write_text("{")
    elif how == "checkpoint":
        for name in ("params.npz", "metrics.json"):
            (folder / name).unlink()
        (folder / "checkpoint.npz").write_bytes(b"")
    elif how == "empty":
        shutil.rmtree(folder)
        folder.mkdir()
    elif how == "shapes":
        np.savez(folder / "params.npz", w1=np.zeros((3, 3), np.float32))
    return folder


@pytest.mark.parametrize(
    "how,needles",
    [
        ("params", ["params.npz", "damaged"]),
        ("metrics", ["metrics.json", "damaged"]),
        ("checkpoint", ["checkpoint.npz", "damaged"]),
        ("empty", ["not a training run"]),
        ("shapes", ["params.npz", "does not fit", "seed-cnn"]),
    ],
)
def test_from_a_damaged_run_gives_one_line(runs, tmp_path, how, needles):
    folder = damage(runs, tmp_path, how)
    assert_one_line_error(run_check("--from", str(folder), "--batch", "1"), "--from", *needles)


def test_from_a_missing_folder(tmp_path):
    result = run_check("--from", str(tmp_path / "nowhere"))
    assert_one_line_error(result, str(tmp_path / "nowhere"), "no such folder")


# --- train.py --audit-every N ---------------------------------------------------------------
TINY = ("--epochs", "2", "--train-limit", "300", "--test-limit", "100")


def test_audit_every_epoch_is_recorded_and_changes_nothing(mnist_like_dir, tmp_path):
    out = tmp_path / "run"
    result = run_train_script(
        *TINY,
        "--audit-every",
        "1",
        "--tensorboard",
        "--out",
        str(out),
        "--data-dir",
        str(mnist_like_dir),
    )
    assert result.returncode == 0, result.stderr
    # db1's factor is the model's own rule, and stays: the line says so, no change named
    assert "as expected: db1 (off by a constant factor 1/400)" in result.stdout
    assert "changed from" not in result.stdout and "unexpected" not in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["audit_every"] == 1
    for row in metrics["epochs"]:
        audit = row["audit"]
        assert list(audit) == ["dw1", "db1", "dw2", "db2", "dz1", "ds1", "dL1", "dz2"]
        assert audit["db1"] == {
            "verdict": "off by a constant factor 1/400",
            "rel_error": pytest.approx(0.995, abs=1e-3),
            "expected": True,
        }
        assert all(
            item["verdict"] == "match" and item["rel_error"] < 1e-3 and not item["expected"]
            for name, item in audit.items()
            if name != "db1"
        )
        assert 0 < row["seconds"]
    tags = tensorboard_tags(out / "tensorboard")
    assert tags["audit/rel_error/db1"] == tags["audit/rel_error/dz2"] == {1, 2}

    # The same run without auditing: the same weights and figures, bit for bit.
    plain = train_and_evaluate(
        TrainConfig(epochs=2, train_limit=300, test_limit=100, data_dir=str(mnist_like_dir)),
        tmp_path / "plain",
        log=lambda *_: None,
    )
    with np.load(out / "params.npz") as a, np.load(tmp_path / "plain" / "params.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    strip = ("seconds", "audit")
    assert [{k: v for k, v in row.items() if k not in strip} for row in metrics["epochs"]] == [
        {k: v for k, v in row.items() if k != "seconds"} for row in plain["epochs"]
    ]

    # A resumed run may change --audit-every: epoch 3 is not a multiple of 2.
    resumed = run_train_script(
        "--resume",
        str(out),
        "--epochs",
        "3",
        "--audit-every",
        "2",
        "--data-dir",
        str(mnist_like_dir),
    )
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [("audit" in row) for row in metrics["epochs"]] == [True, True, False]
    assert metrics["config"]["audit_every"] == 2


def tensorboard_tags(folder) -> dict[str, set]:
    from tfhybrid._tf import tf

    tags: dict[str, set] = {}
    for events in folder.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(events)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, set()).add(event.step)
    return tags


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bad_audit_every_gives_one_line(value, tmp_path):
    result = run_train_script("--audit-every", value, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--audit-every", value)
    assert not (tmp_path / "run").exists()


def test_audit_every_is_checked_in_the_config():
    with pytest.raises(ConfigError, match="--audit-every must be >= 1, got 0"):
        TrainConfig(audit_every=0).validated()
    with pytest.raises(ConfigError, match="--audit-every must be an integer"):
        TrainConfig(audit_every=1.5).validated()
    assert TrainConfig(audit_every=3).validated().audit_every == 3


def item(verdict: str, expected: bool = False) -> dict:
    return {"verdict": verdict, "rel_error": 0.0, "expected": expected}


def test_a_changed_verdict_is_one_line():
    history = [
        {
            "epoch": 2,
            "audit": {
                "dw1": item("match"),
                "db1": item("match"),
                "dz1": item("off by a constant factor 2"),
            },
        },
        {"epoch": 3},
    ]  # not audited: the comparison is with epoch 2
    now = {"dw1": item("match"), "db1": item("wrong"), "dz1": item("off by a constant factor 3")}
    assert EpochAudit.news(4, now, history) == "audit: epoch 4: db1 changed from match to wrong"
    steady = "audit: epoch 4: every gradient matches but those the model's own rules change"
    # nothing changed (a drifting factor is no change): said so, with what stays off
    assert EpochAudit.news(4, {**now, "db1": item("match")}, history) == (
        "audit: epoch 4: no verdict changed; still mismatched: dz1 (off by a constant factor 3)"
    )
    # the model's own rules: expected, so not a change
    well = {"dw1": item("match"), "db1": item("match"), "dz1": item("match")}
    calm = {**well, "db1": item("wrong", expected=True)}
    before = [{"epoch": 3, "audit": well}]
    assert EpochAudit.news(4, calm, before) == f"{steady}, as expected: db1 (wrong)"
    assert EpochAudit.news(4, well, before) == (
        "audit: epoch 4: every gradient matches (3 tensors)"
    )
    both = {**now, "dw1": item("sign flipped")}
    assert EpochAudit.news(4, both, history) == (
        "audit: epoch 4: dw1 changed from match to sign flipped; db1 changed from match to wrong"
    )


def test_the_first_audit_names_unexpected_mismatches_only():
    first = {"dw1": item("wrong"), "db1": item("off by a constant factor 1/400", True)}
    assert EpochAudit.news(1, first, []) == "audit: epoch 1: unexpected mismatch: dw1 (wrong)"
    assert EpochAudit.news(1, {"db1": first["db1"]}, [{"epoch": 0}]) == (
        "audit: epoch 1: every gradient matches but those the model's own rules change, as "
        "expected: db1 (off by a constant factor 1/400)"
    )
