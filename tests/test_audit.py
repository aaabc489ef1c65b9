"""The audit on the article's network: the correct code passes, and deliberately broken
backward functions (monkeypatched into the model's module) are caught with the right kind."""

from __future__ import annotations

import numpy as np
import pytest

from tfhybrid.audit import audit
from tfhybrid.audit.compare import FACTOR, MATCH, SIGN, WRONG
from tfhybrid.data import one_hot
from tfhybrid.layers import conv as conv_layer
from tfhybrid.layers import dense as dense_layer
from tfhybrid.layers import pooling as pooling_layer
from tfhybrid.models import sequential
from tfhybrid.models.seed_cnn import seed_cnn

PARAMETERS = ("dw1", "db1", "dw2", "db2")
ALL = PARAMETERS + ("dz1", "ds1", "dL1", "dz2")  # the layer outputs in layer order
FD_SAMPLES = 6  # a few coordinates per parameter keep each audit under a second


def random_batch(seed: int, n: int):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1)).astype(np.float32), one_hot(rng.integers(0, 10, n))


def run_audit(seed=0, batch=3, bias_grad="exact", dtype=np.float32, **options):
    x, y = random_batch(seed, batch)
    model = seed_cnn(seed=seed, bias_grad=bias_grad, dtype=dtype)
    return audit(
        model, x.astype(dtype), y.astype(dtype), seed=seed, fd_samples=FD_SAMPLES, **options
    )


def verdicts(report) -> dict[str, str]:
    return {t.name: t.manual.verdict for t in report.tensors}


@pytest.mark.parametrize(
    "seed,batch,dtype",
    [(0, 1, np.float32), (1, 4, np.float32), (2, 9, np.float32), (3, 2, np.float64)],
)
def test_correct_code_passes(seed, batch, dtype):
    report = run_audit(seed, batch, dtype=dtype)
    assert report.ok and report.mismatches == [], report.mismatches
    assert [t.name for t in report.tensors] == list(ALL)
    for item in report.tensors:
        assert item.vote.unanimous, (item.name, item.vote.summary)
        assert item.manual.cosine == pytest.approx(1, abs=1e-6)
    for name in PARAMETERS:
        item = report.tensor(name)
        assert item.fd_not_comparable == 0 and item.fd_tape.count == item.fd_count > 0
    assert report.loss.matches and report.update.passed


def test_seed_bias_rule_is_exactly_one_four_hundredth():
    report = run_audit(seed=4, batch=3, bias_grad="seed")
    db1 = report.tensor("db1")
    assert db1.manual.description == f"{FACTOR} 1/400"
    assert db1.manual.scale == pytest.approx(1 / 400, rel=1e-5)
    assert db1.vote.odd_one_out == "manual"
    assert report.mismatches == ["db1", "update"]  # the library steps the seed-rule model
    assert not report.ok
    assert run_audit(seed=4, batch=3, bias_grad="seed", expect=("db1",)).ok
    assert verdicts(report) == {name: FACTOR if name == "db1" else MATCH for name in ALL}


def test_update_check_under_the_exact_rule_passes_for_a_seed_rule_model():
    x, y = random_batch(5, 2)
    model = seed_cnn(seed=5)
    twin = seed_cnn(params={k: v.copy() for k, v in model.params.items()}, bias_grad="exact")
    report = audit(model, x, y, fd_samples=FD_SAMPLES, update_model=twin, expect=("db1",))
    assert report.update.passed and report.update.settings["bias_grad"] == "exact"
    assert report.ok and report.mismatches == ["db1"]


def test_missing_quarter_in_pool_backward(monkeypatch, readable_path):
    real = pooling_layer.avg_pool_backward
    monkeypatch.setattr(
        pooling_layer, "avg_pool_backward", lambda dout, cache: 4 * real(dout, cache)
    )
    report = run_audit(seed=1)
    below_pool = ("ds1", "dz1", "dw1", "db1")
    for name in ALL:
        item = report.tensor(name)
        if name in below_pool:
            assert item.manual.description == f"{FACTOR} 4", (name, item.manual.description)
            assert item.vote.odd_one_out == "manual"
        else:
            assert item.manual.verdict == MATCH, name


def test_filter_gradient_with_rotated_kernel(monkeypatch, readable_path):
    real = conv_layer.conv2d_backward

    def rotated(*args, **kwargs):
        grads = real(*args, **kwargs)
        return {**grads, "dw": grads["dw"][::-1, ::-1].copy()}

    monkeypatch.setattr(conv_layer, "conv2d_backward", rotated)
    report = run_audit(seed=2)
    assert verdicts(report) == {name: WRONG if name == "dw1" else MATCH for name in ALL}
    assert report.tensor("dw1").vote.odd_one_out == "manual"
    assert report.mismatches == ["dw1", "update"]


def test_sign_of_dz2_flipped(monkeypatch):
    real = sequential.sigmoid_cross_entropy

    def flipped(z, y):
        loss, dz = real(z, y)
        return loss, -dz

    monkeypatch.setattr(sequential, "sigmoid_cross_entropy", flipped)
    report = run_audit(seed=3)
    assert report.tensor("dz2").manual.verdict == SIGN
    assert set(verdicts(report).values()) == {SIGN}  # everything below inherits the sign
    assert report.loss.matches  # the loss value itself is right


def test_db2_summed_instead_of_averaged(monkeypatch):
    real = dense_layer.dense_backward

    def summed(dout, cache, *args):
        grads = real(dout, cache, *args)
        return {**grads, "db": grads["db"] * len(dout)}  # the loss's 1/N undone

    monkeypatch.setattr(dense_layer, "dense_backward", summed)
    batch = 5
    report = run_audit(seed=4, batch=batch)
    assert report.tensor("db2").manual.description == f"{FACTOR} {batch}"
    assert verdicts(report) == {name: FACTOR if name == "db2" else MATCH for name in ALL}


def test_pool_gradient_sent_to_the_wrong_cell(monkeypatch, readable_path):
    def top_left_only(dout, cache):
        x_shape, size, stride = cache
        dx = np.zeros(x_shape, dtype=dout.dtype)
        dx[:, ::stride, ::stride, :] = dout  # the whole window's gradient on one cell
        return dx

    monkeypatch.setattr(pooling_layer, "avg_pool_backward", top_left_only)
    report = run_audit(seed=5)
    found = verdicts(report)
    for name in ("ds1", "dz1", "dw1"):
        assert found[name] == WRONG, (name, found[name])
    for name in ("dz2", "dL1", "dw2", "db2"):
        assert found[name] == MATCH, name
    assert report.tensor("ds1").vote.odd_one_out == "manual"


def test_report_to_dict_holds_every_figure():
    import json

    record = json.loads(json.dumps(run_audit(seed=6, batch=2, bias_grad="seed").to_dict()))
    assert record["mismatches"] == ["db1", "update"] and not record["ok"]
    db1 = next(t for t in record["tensors"] if t["name"] == "db1")
    assert db1["verdict"] == f"{FACTOR} 1/400"
    assert db1["manual_vs_tape64"]["scale_readable"] == "1/400"
    for key in ("max_abs_error", "rel_error", "cosine", "scale", "worst_index"):
        assert key in db1["manual_vs_tape64"]
    assert db1["finite_differences"]["sampled"] == 6
    assert record["tensors"][-1]["finite_differences"] is None
    assert set(record["tolerances"]) >= {"float32", "float64", "finite_differences"}


def test_mismatched_interface_is_reported():
    renamed = seed_cnn()
    original = renamed.reference_forward

    def with_extra(params, x, y):
        loss, inter = original(params, x, y)
        return loss, {**inter, "extra": inter["z2"] * 2}

    renamed.reference_forward = with_extra
    x, y = random_batch(0, 1)
    with pytest.raises(ValueError, match="dextra"):
        audit(renamed, x, y, fd_samples=2)
