"""The audit through forks: every layer inside a composite checked on its own (nested two
deep, a projection shortcut of stride 2, a layer used twice), each composite's join, and
the likely causes of the fork's slips planted here: a path not added, a path counted
twice, a shared layer's gradient of one use only. Float64, 4x4 images, two of them."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfhybrid
from tests.test_audit_cli import random_images  # noqa: F401 (a fixture)
from tfhybrid.audit import audit, check_layer, cli
from tfhybrid.audit.forks import NOT_ADDED, ONE_USE, TWICE
from tfhybrid.audit.judge import INPUT, judge_tensor
from tfhybrid.audit.layer_check import check_layer_at
from tfhybrid.audit.layers import AT_FAULT, HOLDS, INHERITS, OK
from tfhybrid.layers import Branches, Conv2D, Dense, Flatten, ReLU, Residual
from tfhybrid.layers.composite import add_grads

FD = 4  # finite-difference coordinates per tensor: the tape decides, the differences confirm


# --- planted bugs ---------------------------------------------------------------------------
class Forgetful(Residual):
    """Its backward returns the block's dx alone: the shortcut's is not added at the fork."""

    def backward(self, dout, cache, need_dx=True):
        dx_block, grads = self.path_backward("block", dout, cache[0])
        _, shortcut_grads = self.path_backward("shortcut", dout, cache[1])
        return dx_block, add_grads(grads, shortcut_grads)


class Twice(Residual):
    """Its backward adds the shortcut's dx once more."""

    def backward(self, dout, cache, need_dx=True):
        dx, grads = super().backward(dout, cache, need_dx)
        dx_shortcut, _ = self.path_backward("shortcut", dout, cache[1])
        return dx + dx_shortcut, grads


class Overwriting(Residual):
    """A layer in both paths: the shortcut's gradients overwrite the block's (``=`` where
    ``add_grads`` belongs)."""

    def backward(self, dout, cache, need_dx=True):
        dx_block, grads = self.path_backward("block", dout, cache[0])
        dx_shortcut, shortcut_grads = self.path_backward("shortcut", dout, cache[1])
        grads.update(shortcut_grads)
        return dx_block + dx_shortcut, grads


class DoubledReLU(ReLU):
    """A layer's own bug: dx twice the true one."""

    def backward(self, dout, cache, need_dx=True):
        dx, grads = super().backward(dout, cache, need_dx)
        return 2 * dx, grads


# --- helpers ---------------------------------------------------------------------------------
def net(*middle, classes: int = 3) -> tfhybrid.Sequential:
    """images [N,4,4,1] -> a convolution, ``middle``, logits [N,classes], in float64."""
    return tfhybrid.Sequential(
        [Conv2D(2, 3, padding=1), *middle, Flatten(), Dense(classes)],
        input_shape=(4, 4, 1),
        dtype=np.float64,
        seed=1,
    )


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 4, 4, 1)), np.eye(3)[[0, 2]]


def fault_lines(report) -> list[str]:
    return [line.strip() for line in str(report).splitlines() if "fault" in line or "cause" in line]


# --- everything right ------------------------------------------------------------------------
def test_every_layer_inside_the_forks_matches_the_tape(batch):
    x, y = batch
    shared = Conv2D(2, 3, padding=1)
    network = net(
        ReLU(),
        Residual([shared, ReLU(), Residual([Conv2D(2, 3, padding=1), ReLU()])], shortcut=[shared]),
        Residual([Conv2D(3, 3, stride=2, padding=1), ReLU()], shortcut=[Conv2D(3, 1, stride=2)]),
        Branches({"a": [Conv2D(2, 1)], "b": []}),
    )
    report = audit(network, x, y, fd_samples=FD)
    assert report.ok, str(report)
    where = {v.describe(): v.status for v in report.layers}
    assert set(where.values()) == {OK}
    assert {
        "2 (Residual, output res3)",
        "2 (Residual, output res3) > shortcut > 0 (Conv2D)",  # the shared convolution
        "2 (Residual, output res3) > block > 0 (Conv2D)",
        "2 (Residual, output res3) > block > 2 (Residual) > block > 0 (Conv2D)",
        "3 (Residual, output res5) > shortcut > 0 (Conv2D)",  # 1x1, stride 2
        "4 (Branches, output br6) > a > 0 (Conv2D)",
    } <= set(where)
    joins = [v.describe() for v in report.layers if v.joins]
    assert joins == [
        "4 (Branches, output br6)",
        "3 (Residual, output res5)",
        "2 (Residual, output res3)",
        "2 (Residual, output res3) > block > 2 (Residual)",
    ]
    assert "inside composites too, and so does each composite's join" in str(report)
    record = json.loads(json.dumps(report.to_dict()))
    assert record["layer_at_fault"] is None and record["layer_at_fault_where"] is None
    inner = [item for item in record["layers"] if item["inside"]]
    assert inner[0]["inside"][0] == {"path": "a", "position": 0, "layer": "Conv2D"}


# --- the fork's slips ------------------------------------------------------------------------
def test_a_residual_that_forgets_the_shortcut_is_its_join_at_fault_two_deep(batch):
    from tfhybrid.keras import summarise

    x, y = batch
    network = net(Residual([ReLU(), Forgetful([Conv2D(2, 3, padding=1)])]))
    report = audit(network, x, y, fd_samples=FD)
    fault = report.layer_at_fault
    assert fault.describe() == "1 (Residual, output res2) > block > 1 (Forgetful)"
    assert fault.joins
    assert fault.own_verdicts == {"x": "wrong", "block.0.w": "match", "block.0.b": "match"}
    statuses = {v.describe(): v.status for v in report.layers}
    assert statuses["1 (Residual, output res2)"] == HOLDS
    assert statuses["1 (Residual, output res2) > block > 1 (Forgetful) > block > 0 (Conv2D)"] == OK
    assert statuses["0 (Conv2D, output z1)"] == INHERITS
    lines = fault_lines(report)
    assert lines[0].startswith(
        "layer at fault: 1 (Residual, output res2) > block > 1 (Forgetful): its own backward "
        "gives dx wrong; every layer inside matches on its own, so the fault is in its join"
    )
    cause = (
        "likely cause: layer 1 > block > 1 (Forgetful) dx equals path block's gradient alone: "
        f"{NOT_ADDED} (the identity path shortcut's)"
    )
    assert cause in lines, lines
    assert report.to_dict()["layer_at_fault_where"] == fault.describe()
    assert f"layer at fault: {fault.describe()}" in summarise(report)  # AuditCallback's line


def test_a_path_counted_twice_at_a_projection_shortcut_of_stride_2(batch):
    x, y = batch
    block = Twice([Conv2D(3, 3, stride=2, padding=1), ReLU()], shortcut=[Conv2D(3, 1, stride=2)])
    report = audit(net(block), x, y, fd_samples=FD)
    assert report.layer_at_fault.describe() == "1 (Twice, output res3)"
    assert (
        "likely cause: layer 1 dx equals the true gradient plus path shortcut's once more: "
        f"{TWICE} (path shortcut's)"
    ) in fault_lines(report)


def test_a_shared_layer_whose_gradient_keeps_one_use(batch):
    x, y = batch
    shared = Conv2D(2, 3, padding=1)
    report = audit(net(Overwriting([shared, ReLU()], shortcut=[shared])), x, y, fd_samples=FD)
    fault = report.layer_at_fault
    assert fault.describe() == "1 (Overwriting, output res2)" and fault.joins
    assert fault.own_verdicts["block.0.w"] == "wrong" and fault.own_verdicts["x"] == "match"
    lines = fault_lines(report)
    assert (
        f"likely cause: layer 1 dblock.0.w equals the gradient of its use at shortcut > 0 "
        f"(Conv2D) alone: {ONE_USE}"
    ) in lines, lines
    # The network's own table names it too, by the use's full path.
    assert report.tensor("dw2").cause == (
        f"the gradient of its use at layer 1 (Overwriting, output res2) > shortcut > 0 "
        f"(Conv2D) alone: {ONE_USE}"
    )


# --- check_layer: a composite on its own -------------------------------------------------------
def test_check_layer_names_the_layer_inside_or_the_join():
    right = check_layer(Residual([Conv2D(2, 3, padding=1), ReLU()], [Conv2D(2, 1)]), (4, 4, 2))
    assert right.ok and {p.status for p in right.parts} == {OK} and len(right.parts) == 3
    assert "block.0.w @ integer-valued x" in str(right)  # its parameters under their paths

    inner = Residual([Conv2D(2, 3, padding=1), DoubledReLU()])
    wrong = check_layer(Residual([ReLU(), inner]), (4, 4, 2), ties=False)
    assert not wrong.ok
    where = "Residual > block > 1 (Residual) > block > 1 (DoubledReLU)"
    assert f"layer at fault: {where}: its own backward gives dx off by a constant factor 2" in (
        str(wrong)
    )
    assert {p.describe(): p.status for p in wrong.parts}[where] == AT_FAULT
    assert wrong.to_dict()["layer_at_fault"] == where

    join = check_layer(Forgetful([Conv2D(2, 3, padding=1)]), (4, 4, 2), ties=False)
    text = str(join)
    assert "layer at fault: Forgetful: its own backward gives dx wrong; every layer" in text
    assert f"likely cause: x equals path block's gradient alone: {NOT_ADDED}" in text


def test_check_layer_at_a_given_input_checks_the_inside_too():
    layer = Twice([Conv2D(2, 1)])
    rng = np.random.default_rng(2)
    params = layer.init_params(rng, (3, 3, 2))
    report = check_layer_at(layer, rng.standard_normal((2, 3, 3, 2)), params, fd_samples=FD)
    assert report.verdicts["x"] == "wrong" and [p.status for p in report.parts] == [OK]
    assert TWICE in report.input("x").cause


# --- the judge's candidates ------------------------------------------------------------------
def test_a_candidate_is_the_cause_only_where_nothing_else_fits():
    rng = np.random.default_rng(3)
    true, part = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))

    def cause(manual, candidates):
        return judge_tensor(
            "x", INPUT, manual, tape64=true, tape32=true, candidates=candidates
        ).cause

    assert cause(true - part, {"one path alone": true - part}) == "one path alone"
    assert cause(true - part, {"the truth itself": true}) is None
    # A transform of the true gradient is named first; the candidate is the fallback.
    assert "rotated 180" in cause(true[::-1, ::-1], {"other": true[::-1, ::-1]})


# --- the command line ---------------------------------------------------------------------------
OUTSIDE = """
import numpy as np

import tfhybrid
from tfhybrid.layers import Conv2D, Dense, Flatten, ReLU, Residual


class Forgetful(Residual):
    def backward(self, dout, cache, need_dx=True):
        dx_block, grads = self.path_backward("block", dout, cache[0])
        return dx_block, grads


def build():
    return tfhybrid.Sequential(
        [Conv2D(2, 4, stride=4), ReLU(), Forgetful([Conv2D(2, 3, padding=1)]), Flatten(),
         Dense(10)],
        dtype=np.float64,
    )
"""


def test_the_command_line_names_the_join_at_fault(random_images, tmp_path, capsys):  # noqa: F811
    path = tmp_path / "forked.py"
    path.write_text(OUTSIDE)
    report = tmp_path / "audit.json"
    assert cli.main(["--model", f"{path}:build", "--batch", "2", "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert "layer at fault: 2 (Forgetful, output res2): its own backward gives dx wrong" in out
    assert f"likely cause: layer 2 dx equals path block's gradient alone: {NOT_ADDED}" in out
    record = json.loads(report.read_text())
    assert record["layer_at_fault"] == 2
    assert record["layer_at_fault_where"] == "2 (Forgetful, output res2)"
