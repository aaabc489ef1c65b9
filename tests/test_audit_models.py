"""The audit on every source network, on real MNIST test images: the true rules pass, the
sources' max-pool tie rule is caught in the right tensors, and the command line's
per-model options, --expect and exit codes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_audit_cli import run_check
from tests.test_cli import assert_one_line_error
from tfhybrid.audit import audit, cli, registry
from tfhybrid.audit.compare import MATCH, WRONG
from tfhybrid.catalog import MODEL_NAMES

FD_SAMPLES = 6  # a few coordinates per parameter keep each audit near a second


@pytest.fixture(scope="module")
def mnist_images(data_dir):
    """The first 8 MNIST test images (float32 in [0, 1]) and one-hot labels."""
    return cli.mnist_batch(str(data_dir), 8)


def run_audit(name, images, batch, dtype=np.float32, seed=0, **rules):
    x, y = images
    model = registry.build(name, seed=seed, dtype=dtype, **rules)
    return audit(
        model,
        x[:batch].astype(dtype),
        y[:batch].astype(dtype),
        seed=seed,
        fd_samples=FD_SAMPLES,
        update_model=registry.exact_twin(name, model),
    )


@pytest.mark.parametrize(
    "name,batch,dtype",
    [
        ("lenet5", 2, np.float32),
        ("numpy-cnn", 2, np.float32),
        ("conv8", 3, np.float32),
        ("two-layer-net", 3, np.float32),
        ("conv8", 2, np.float64),
        ("two-layer-net", 2, np.float64),
        ("numpy-cnn", 1, np.float64),
        ("bn-cnn", 4, np.float32),  # float32 batch norm: the sums accumulate in float64
        ("dlfs-deep", 2, np.float32),  # one step's dropout masks, replayed
        ("resnet-mnist", 2, np.float32),  # through the forks: each layer inside, each join
    ],
)
def test_true_rules_pass_on_real_images(mnist_images, name, batch, dtype):
    report = run_audit(name, mnist_images, batch, dtype)
    assert report.ok and report.mismatches == [], report.mismatches
    assert report.settings["dtype"] == np.dtype(dtype).name
    assert [t.name for t in report.tensors] == list(registry.gradient_names(registry.build(name)))
    assert report.loss.matches and report.update.passed


def test_two_layer_net_reports_no_gradient_below_its_first_layer():
    names = registry.gradient_names(registry.build("two-layer-net"))
    assert names == ("dw1", "db1", "dw2", "db2", "dz1", "da1", "dz2")


def test_tie_rule_caught_in_conv8_filters(mnist_images):
    report = run_audit("conv8", mnist_images, 2, pool_ties="all")
    verdicts = {t.name: t.manual.verdict for t in report.tensors}
    assert verdicts == {
        "dw1": WRONG,
        "dw2": MATCH,
        "db2": MATCH,
        "dz1": WRONG,
        "dp1": MATCH,
        "dflat": MATCH,
        "dz2": MATCH,
    }
    dw1 = report.tensor("dw1")
    assert dw1.vote.odd_one_out == "manual" and dw1.manual.scale > 1.5  # too large
    assert report.mismatches == ["dw1", "dz1"]  # the update check steps the true twin
    assert report.update.passed and report.update.settings["pool_ties"] == "first"


def test_tie_rule_caught_in_numpy_cnn_convolutions(mnist_images):
    report = run_audit("numpy-cnn", mnist_images, 2, pool_ties="all")
    assert report.mismatches == ["dw1", "db1", "db2", "dz1", "dp1", "dz2"]
    for name in ("dw1", "db1", "db2"):
        assert report.tensor(name).manual.verdict == WRONG, name
        assert report.tensor(name).vote.odd_one_out == "manual", name
    for name in ("dw2", "dw3", "db3", "dw5", "dp2", "dflat", "dz5"):  # dw2: ties at zero inputs
        assert report.tensor(name).manual.verdict == MATCH, name


def test_exact_twin_takes_the_true_rule():
    model = registry.build("numpy-cnn", seed=3, pool_ties="all", dtype=np.float64)
    twin = registry.exact_twin("numpy-cnn", model)
    assert twin.pool_ties == "first" and twin.dtype == np.float64
    assert all(np.array_equal(twin.params[k], v) for k, v in model.params.items())
    assert registry.exact_twin("seed-cnn", registry.build("seed-cnn")).bias_grad == "exact"
    assert {rule.flag for name in MODEL_NAMES for rule in registry.rules_for(name)} == {
        "--bias-grad",
        "--pool-ties",
    }


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--model", "conv8", "--bias-grad", "exact"], ["--bias-grad", "seed-cnn", "conv8"]),
        (["--pool-ties", "all"], ["--pool-ties", "lenet5", "seed-cnn"]),
        (["--model", "two-layer-net", "--pool-ties", "first"], ["--pool-ties", "two-layer-net"]),
        (["--model", "conv8", "--pool-ties", "some"], ["--pool-ties", "some", "first, all"]),
    ],
)
def test_rule_for_another_model_is_rejected(args, needles):
    assert_one_line_error(run_check(*args), *needles)


def test_expect_for_a_non_seed_model(mnist_like_dir, capsys):
    data = ["--data-dir", str(mnist_like_dir)]
    base = ["--model", "conv8", "--pool-ties", "all", "--batch", "2", *data]
    assert cli.main(base) == 1
    assert "UNEXPECTED mismatch: dw1, dz1" in capsys.readouterr().out
    assert cli.main([*base, "--expect", "dw1"]) == 1  # dz1 is still unexpected
    assert cli.main([*base, "--expect", "dw1", "--expect", "dz1"]) == 0
    capsys.readouterr()
    assert cli.main([*base, "--expect", "db1"]) == 2  # conv8's first conv has no bias
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--expect" in error[0] and "dflat" in error[0], error
    assert cli.main(["--model", "conv8", "--batch", "2", *data]) == 0
